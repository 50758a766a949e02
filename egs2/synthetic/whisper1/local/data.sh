#!/usr/bin/env bash
# Stage 1 of the Whisper recipe: the target domains are egs2/synthetic/peft1's espeak-ng child and accent sets, made by
# peft1's own stage 1 with its settings (so the same sentences and voices), its adult source_test is a third shifted
# domain, and the forgetting sets are Piper speech (en_US-joe-medium, 9 tempo/pitch variants of one voice) reading
# sentences that none of those sets holds.
set -euo pipefail
. ./path.sh
. ./db.sh

peft1=../peft1/local
# shellcheck source=../../peft1/local/corpus.conf
. "${peft1}/corpus.conf"  # seed, nj, sizes, speakers, max_words
piper_sizes="dev=60,test=600"
. utils/parse_options.sh

# peft1's source_train, source_dev and source_newtext are drawn (so every other set keeps its sentences) but not
# synthesised: Whisper is the source model here
"${peft1}/data.sh" --seed "${seed}" --nj "${nj}" --sizes "${sizes}" --speakers "${speakers}" \
  --max_words "${max_words}" --skip source_train,source_dev,source_newtext
python3 -m espnet_peft.bin.synthesize_piper --out "${PIPER_CORPUS}" --seed "${seed}" --piper_sizes "${piper_sizes}" \
  --espeak_sizes "${sizes}" --max_words "${max_words}"
for dir in "${PIPER_CORPUS}"/piper_*; do
  [ -d "${dir}" ] || continue
  rm -rf "data/${dir##*/}"
  cp -r "${dir}" "data/${dir##*/}"
done
