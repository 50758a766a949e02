#!/usr/bin/env bash
# Stage 1 of the commonvoice recipe: data/accent_{train,dev,test} from COMMONVOICE (db.sh) and the LibriSpeech
# source / forgetting sets data/librispeech_<part> from LIBRISPEECH. Rules (layout, transcript normalisation,
# splits): the docstring of espnet_peft/recipe/corpora/common_voice.py. Re-running keeps converted audio.
#   local/data.sh [--nj 4] [--librispeech_parts train-clean-100,dev-clean,dev-other,test-clean,test-other]
set -euo pipefail
. ./path.sh
. ./db.sh

nj=2
domain=accent
librispeech_parts=dev-clean,dev-other,test-clean,test-other   # comma-separated; part a-b -> data/librispeech_a_b
accents=indian,scottish,irish,african,filipino,hongkong,singaporean,malaysian,westindies
accent_map=                    # optional file of "<group> <regex>" lines replacing the built-in map
split=official                 # official: CV train/dev/test; validated: own speaker split of validated.tsv
max_per_speaker=0              # 0: no cap
. utils/parse_options.sh

if [ -z "${COMMONVOICE}" ]; then
  echo "$0: set COMMONVOICE in db.sh (see README.md)" >&2; exit 1
fi
if [ -z "${LIBRISPEECH}" ]; then
  echo "$0: set LIBRISPEECH in db.sh (see README.md)" >&2; exit 1
fi
command -v sox >/dev/null || { echo "$0: sox not found: apt-get install sox" >&2; exit 1; }

python3 -m espnet_peft.recipe.corpora.common_voice --root "${COMMONVOICE}" --out data --nj "${nj}" \
  --domain "${domain}" --accents "${accents}" ${accent_map:+--accent_map "${accent_map}"} \
  --split "${split}" --max_per_speaker "${max_per_speaker}"
python3 -m espnet_peft.recipe.corpora.librispeech --root "${LIBRISPEECH}" --out data --nj "${nj}" \
  --parts "${librispeech_parts}"
