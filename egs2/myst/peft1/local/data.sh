#!/usr/bin/env bash
# Stage 1 of the myst recipe: data/child_{train,dev,test} from MYST (db.sh) and the LibriSpeech
# source / forgetting sets data/librispeech_<part> from LIBRISPEECH (local/prepare_librispeech.sh).
# Rules (layout, transcript normalisation, splits): the docstring of espnet_peft/recipe/corpora/myst.py.
# Re-running keeps converted audio.
#   local/data.sh [--nj 4] [--librispeech_parts train-clean-100,dev-clean,dev-other,test-clean,test-other]
set -euo pipefail
. ./path.sh
. ./db.sh
. local/require_db.sh

nj=2
domain=child
librispeech_parts=             # comma-separated; empty: the default of local/prepare_librispeech.sh
min_words=1                    # drop transcripts with fewer words after normalisation (ESPnet lists: 3)
. utils/parse_options.sh

require_db MYST LIBRISPEECH   # both before any conversion
command -v sox >/dev/null || { echo "$0: sox not found: apt-get install sox" >&2; exit 1; }

python3 -m espnet_peft.recipe.corpora.myst --root "${MYST}" --out data --nj "${nj}" \
  --domain "${domain}" --min_words "${min_words}"
local/prepare_librispeech.sh --nj "${nj}" ${librispeech_parts:+--parts "${librispeech_parts}"}
