#!/usr/bin/env bash
# Stage 1 of the cslu_kids recipe: data/child_{train,dev,test} from CSLU_KIDS (db.sh) and the LibriSpeech
# source / forgetting sets data/librispeech_<part> from LIBRISPEECH. Rules (layout, transcript normalisation,
# splits): the docstring of espnet_peft/recipe/corpora/cslu_kids.py. Re-running keeps converted audio.
#   local/data.sh [--nj 4] [--librispeech_parts train-clean-100,dev-clean,dev-other,test-clean,test-other]
set -euo pipefail
. ./path.sh
. ./db.sh

nj=2
domain=child
librispeech_parts=dev-clean,dev-other,test-clean,test-other   # comma-separated; part a-b -> data/librispeech_a_b
parts=scripted,spontaneous     # spontaneous files are minutes-long monologues: see README.md
fractions=train=0.8,dev=0.1,test=0.1  # speaker-disjoint shares
keep_labels=1,4                # verification labels kept (1 good, 4 puff)
. utils/parse_options.sh

if [ -z "${CSLU_KIDS}" ]; then
  echo "$0: set CSLU_KIDS in db.sh (see README.md)" >&2; exit 1
fi
if [ -z "${LIBRISPEECH}" ]; then
  echo "$0: set LIBRISPEECH in db.sh (see README.md)" >&2; exit 1
fi
command -v sox >/dev/null || { echo "$0: sox not found: apt-get install sox" >&2; exit 1; }

python3 -m espnet_peft.recipe.corpora.cslu_kids --root "${CSLU_KIDS}" --out data --nj "${nj}" \
  --domain "${domain}" --parts "${parts}" --fractions "${fractions}" --keep_labels "${keep_labels}"
python3 -m espnet_peft.recipe.corpora.librispeech --root "${LIBRISPEECH}" --out data --nj "${nj}" \
  --parts "${librispeech_parts}"
