#!/usr/bin/env bash
# Stage 1 of the edacc recipe: data/accent_{train,dev,test} from EDACC (db.sh) and the LibriSpeech
# source / forgetting sets data/librispeech_<part> from LIBRISPEECH. Rules (layout, transcript normalisation,
# splits): the docstring of espnet_peft/recipe/corpora/edacc.py. Re-running keeps converted audio.
#   local/data.sh [--nj 4] [--librispeech_parts train-clean-100,dev-clean,dev-other,test-clean,test-other]
set -euo pipefail
. ./path.sh
. ./db.sh

nj=2
domain=accent
librispeech_parts=dev-clean,dev-other,test-clean,test-other   # comma-separated; part a-b -> data/librispeech_a_b
adapt_fractions=train=0.8,dev=0.2   # how the official dev set is divided (by conversation)
. utils/parse_options.sh

if [ -z "${EDACC}" ]; then
  echo "$0: set EDACC in db.sh (see README.md)" >&2; exit 1
fi
if [ -z "${LIBRISPEECH}" ]; then
  echo "$0: set LIBRISPEECH in db.sh (see README.md)" >&2; exit 1
fi
command -v sox >/dev/null || { echo "$0: sox not found: apt-get install sox" >&2; exit 1; }

python3 -m espnet_peft.recipe.corpora.edacc --root "${EDACC}" --out data --nj "${nj}" \
  --domain "${domain}" --adapt_fractions "${adapt_fractions}"
python3 -m espnet_peft.recipe.corpora.librispeech --root "${LIBRISPEECH}" --out data --nj "${nj}" \
  --parts "${librispeech_parts}"
