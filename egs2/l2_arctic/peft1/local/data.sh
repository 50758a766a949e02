#!/usr/bin/env bash
# Stage 1 of the l2_arctic recipe: data/accent_{train,dev,test} from L2ARCTIC (db.sh) and the LibriSpeech
# source / forgetting sets data/librispeech_<part> from LIBRISPEECH. Rules (layout, transcript normalisation,
# splits): the docstring of espnet_peft/recipe/corpora/l2_arctic.py. Re-running keeps converted audio.
#   local/data.sh [--nj 4] [--librispeech_parts train-clean-100,dev-clean,dev-other,test-clean,test-other]
set -euo pipefail
. ./path.sh
. ./db.sh

nj=2
domain=accent
librispeech_parts=dev-clean,dev-other,test-clean,test-other   # comma-separated; part a-b -> data/librispeech_a_b
l1s=arabic,hindi,korean,mandarin,spanish,vietnamese
prompts=disjoint               # disjoint: test sentences never seen in training; shared: every reading
. utils/parse_options.sh

if [ -z "${L2ARCTIC}" ]; then
  echo "$0: set L2ARCTIC in db.sh (see README.md)" >&2; exit 1
fi
if [ -z "${LIBRISPEECH}" ]; then
  echo "$0: set LIBRISPEECH in db.sh (see README.md)" >&2; exit 1
fi
command -v sox >/dev/null || { echo "$0: sox not found: apt-get install sox" >&2; exit 1; }

python3 -m espnet_peft.recipe.corpora.l2_arctic --root "${L2ARCTIC}" --out data --nj "${nj}" \
  --domain "${domain}" --l1s "${l1s}" --"${prompts}"_prompts
python3 -m espnet_peft.recipe.corpora.librispeech --root "${LIBRISPEECH}" --out data --nj "${nj}" \
  --parts "${librispeech_parts}"
