#!/usr/bin/env bash
# Stage 1 of the embedded default: a synthetic three-domain English corpus (source adult US English, child-like,
# regional and non-native accents), made offline with espeak-ng + sox, deterministic by seed, speakers disjoint
# across splits.
set -euo pipefail
. ./path.sh
. ./db.sh

# seed, nj, sizes, speakers, max_words: the corpus (egs2/synthetic/whisper1 reads the same file)
# shellcheck source=corpus.conf
. "$(dirname "$0")/corpus.conf"
skip=            # <domain>_<split> dirs drawn but not synthesised (their sentences stay out of every other set)
. utils/parse_options.sh

for tool in espeak-ng sox; do
  command -v "${tool}" >/dev/null || { echo "$0: ${tool} not found: apt-get install espeak-ng sox" >&2; exit 1; }
done
python3 -m espnet_peft.bin.synthesize_corpus --out "${SYNTH_CORPUS}" --seed "${seed}" --nj "${nj}" --sizes "${sizes}" \
  --speakers_per_split "${speakers}" \
  --max_words "${max_words}" --skip "${skip}"
for dir in "${SYNTH_CORPUS}"/*_{train,dev,test,newtext}; do
  [ -d "${dir}" ] || continue
  rm -rf "data/${dir##*/}"
  mkdir -p data
  cp -r "${dir}" "data/${dir##*/}"
done
