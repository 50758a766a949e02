#!/usr/bin/env bash
# Stage 1 of the l2_arctic recipe: data/accent_{train,dev,test} from L2ARCTIC (db.sh) and the LibriSpeech
# source / forgetting sets data/librispeech_<part> from LIBRISPEECH (local/prepare_librispeech.sh).
# Rules (layout, transcript normalisation, splits): the docstring of espnet_peft/recipe/corpora/l2_arctic.py.
# Re-running keeps converted audio.
#   local/data.sh [--nj 4] [--librispeech_parts train-clean-100,dev-clean,dev-other,test-clean,test-other]
set -euo pipefail
. ./path.sh
. ./db.sh
. local/require_db.sh

nj=2
domain=accent
librispeech_parts=             # comma-separated; empty: the default of local/prepare_librispeech.sh
l1s=arabic,hindi,korean,mandarin,spanish,vietnamese
prompts=disjoint               # disjoint: test sentences never seen in training; shared: every reading
. utils/parse_options.sh

require_db L2ARCTIC LIBRISPEECH   # both before any conversion
command -v sox >/dev/null || { echo "$0: sox not found: apt-get install sox" >&2; exit 1; }

python3 -m espnet_peft.recipe.corpora.l2_arctic --root "${L2ARCTIC}" --out data --nj "${nj}" \
  --domain "${domain}" --l1s "${l1s}" --"${prompts}"_prompts
local/prepare_librispeech.sh --nj "${nj}" ${librispeech_parts:+--parts "${librispeech_parts}"}
