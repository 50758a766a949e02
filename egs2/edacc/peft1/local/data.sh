#!/usr/bin/env bash
# Stage 1 of the edacc recipe: data/accent_{train,dev,test} from EDACC (db.sh) and the LibriSpeech
# source / forgetting sets data/librispeech_<part> from LIBRISPEECH (local/prepare_librispeech.sh).
# Rules (layout, transcript normalisation, splits): the docstring of espnet_peft/recipe/corpora/edacc.py.
# Re-running keeps converted audio.
#   local/data.sh [--nj 4] [--librispeech_parts train-clean-100,dev-clean,dev-other,test-clean,test-other]
set -euo pipefail
. ./path.sh
. ./db.sh
. local/require_db.sh

nj=2
domain=accent
librispeech_parts=             # comma-separated; empty: the default of local/prepare_librispeech.sh
adapt_fractions=train=0.8,dev=0.2   # how the official dev set is divided (by conversation)
. utils/parse_options.sh

require_db EDACC LIBRISPEECH   # both before any conversion
command -v sox >/dev/null || { echo "$0: sox not found: apt-get install sox" >&2; exit 1; }

python3 -m espnet_peft.recipe.corpora.edacc --root "${EDACC}" --out data --nj "${nj}" \
  --domain "${domain}" --adapt_fractions "${adapt_fractions}"
local/prepare_librispeech.sh --nj "${nj}" ${librispeech_parts:+--parts "${librispeech_parts}"}
