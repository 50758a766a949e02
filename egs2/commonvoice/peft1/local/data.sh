#!/usr/bin/env bash
# Stage 1 of the commonvoice recipe: data/accent_{train,dev,test} from COMMONVOICE (db.sh) and the LibriSpeech
# source / forgetting sets data/librispeech_<part> from LIBRISPEECH (local/prepare_librispeech.sh).
# Rules (layout, transcript normalisation, splits): the docstring of espnet_peft/recipe/corpora/common_voice.py.
# Re-running keeps converted audio.
#   local/data.sh [--nj 4] [--librispeech_parts train-clean-100,dev-clean,dev-other,test-clean,test-other]
set -euo pipefail
. ./path.sh
. ./db.sh
. local/require_db.sh

nj=2
domain=accent
librispeech_parts=             # comma-separated; empty: the default of local/prepare_librispeech.sh
accents=indian,scottish,irish,african,filipino,hongkong,singaporean,malaysian,westindies
accent_map=                    # optional file of "<group> <regex>" lines replacing the built-in map
split=official                 # official: CV train/dev/test; validated: own speaker split of validated.tsv
max_per_speaker=0              # 0: no cap
. utils/parse_options.sh

require_db COMMONVOICE LIBRISPEECH   # both before any conversion
command -v sox >/dev/null || { echo "$0: sox not found: apt-get install sox" >&2; exit 1; }

python3 -m espnet_peft.recipe.corpora.common_voice --root "${COMMONVOICE}" --out data --nj "${nj}" \
  --domain "${domain}" --accents "${accents}" ${accent_map:+--accent_map "${accent_map}"} \
  --split "${split}" --max_per_speaker "${max_per_speaker}"
local/prepare_librispeech.sh --nj "${nj}" ${librispeech_parts:+--parts "${librispeech_parts}"}
