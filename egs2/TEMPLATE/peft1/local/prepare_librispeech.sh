#!/usr/bin/env bash
# The LibriSpeech source / forgetting sets data/librispeech_<part> from LIBRISPEECH (db.sh), for the corpus
# recipes' local/data.sh (symlinked into each recipe's local/). Rules: the docstring of
# espnet_peft/recipe/corpora/librispeech.py. Re-running keeps converted audio.
#   local/prepare_librispeech.sh [--nj 4] [--parts train-clean-100,dev-clean,dev-other,test-clean,test-other]
set -euo pipefail
. ./path.sh
. ./db.sh
. local/require_db.sh

nj=2
# comma-separated; part a-b -> data/librispeech_a_b. The default: the sets peft_librispeech_source.sh uses.
parts=dev-clean,dev-other,test-clean,test-other
. utils/parse_options.sh

require_db LIBRISPEECH
command -v sox >/dev/null || { echo "$0: sox not found: apt-get install sox" >&2; exit 1; }

python3 -m espnet_peft.recipe.corpora.librispeech --root "${LIBRISPEECH}" --out data --nj "${nj}" --parts "${parts}"
