#!/usr/bin/env bash
# Stage 1 of the cmu_kids recipe: data/child_{train,dev,test} from CMU_KIDS (db.sh) and the LibriSpeech
# source / forgetting sets data/librispeech_<part> from LIBRISPEECH. Rules (layout, transcript normalisation,
# splits): the docstring of espnet_peft/recipe/corpora/cmu_kids.py. Re-running keeps converted audio.
#   local/data.sh [--nj 4] [--librispeech_parts train-clean-100,dev-clean,dev-other,test-clean,test-other]
set -euo pipefail
. ./path.sh
. ./db.sh

nj=2
domain=child
librispeech_parts=dev-clean,dev-other,test-clean,test-other   # comma-separated; part a-b -> data/librispeech_a_b
text_source=trn                # trn: what the child said (.trn); prompt: the sentence.tbl prompt
fractions=train=0.8,dev=0.1,test=0.1  # speaker-disjoint shares
sph2pipe=${SPH2PIPE:-}
. utils/parse_options.sh

if [ -z "${CMU_KIDS}" ]; then
  echo "$0: set CMU_KIDS in db.sh (see README.md)" >&2; exit 1
fi
if [ -z "${LIBRISPEECH}" ]; then
  echo "$0: set LIBRISPEECH in db.sh (see README.md)" >&2; exit 1
fi
command -v sox >/dev/null || { echo "$0: sox not found: apt-get install sox" >&2; exit 1; }

python3 -m espnet_peft.recipe.corpora.cmu_kids --root "${CMU_KIDS}" --out data --nj "${nj}" \
  --domain "${domain}" --text_source "${text_source}" --fractions "${fractions}" ${sph2pipe:+--sph2pipe "${sph2pipe}"}
python3 -m espnet_peft.recipe.corpora.librispeech --root "${LIBRISPEECH}" --out data --nj "${nj}" \
  --parts "${librispeech_parts}"
