#!/usr/bin/env bash
# Stage 1 of the cmu_kids recipe: data/child_{train,dev,test} from CMU_KIDS (db.sh) and the LibriSpeech
# source / forgetting sets data/librispeech_<part> from LIBRISPEECH (local/prepare_librispeech.sh).
# Rules (layout, transcript normalisation, splits): the docstring of espnet_peft/recipe/corpora/cmu_kids.py.
# Re-running keeps converted audio.
#   local/data.sh [--nj 4] [--librispeech_parts train-clean-100,dev-clean,dev-other,test-clean,test-other]
set -euo pipefail
. ./path.sh
. ./db.sh
. local/require_db.sh

nj=2
domain=child
librispeech_parts=             # comma-separated; empty: the default of local/prepare_librispeech.sh
text_source=trn                # trn: what the child said (.trn); prompt: the sentence.tbl prompt
fractions=train=0.8,dev=0.1,test=0.1  # speaker-disjoint shares
sph2pipe=${SPH2PIPE:-}
. utils/parse_options.sh

require_db CMU_KIDS LIBRISPEECH   # both before any conversion
command -v sox >/dev/null || { echo "$0: sox not found: apt-get install sox" >&2; exit 1; }

python3 -m espnet_peft.recipe.corpora.cmu_kids --root "${CMU_KIDS}" --out data --nj "${nj}" \
  --domain "${domain}" --text_source "${text_source}" --fractions "${fractions}" ${sph2pipe:+--sph2pipe "${sph2pipe}"}
local/prepare_librispeech.sh --nj "${nj}" ${librispeech_parts:+--parts "${librispeech_parts}"}
