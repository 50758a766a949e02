#!/usr/bin/env bash
# Stage 1 of the Whisper recipe: the target domains are egs2/synthetic/peft1's espeak-ng child and accent sets (the
# same generator, seed, sizes and speakers, so the same sentences and voices), its adult source_test is a third
# shifted domain, and the forgetting sets are Piper speech (en_US-joe-medium, 9 tempo/pitch variants of one voice)
# reading sentences that none of those sets holds.
set -euo pipefail
. ./path.sh
. ./db.sh

seed=0
nj=2
# peft1's sizes and speakers: its source_train, source_dev and source_newtext are drawn (so every other set keeps
# its sentences) but not synthesised, since Whisper is the source model here
sizes="train=400,dev=60,test=300,child.test=330,source.train=16000,source.dev=200,source.newtext=300"
speakers="train=12,dev=6,test=10,source.train=46"
max_words=6
piper_sizes="dev=60,test=600"
. utils/parse_options.sh

for tool in espeak-ng sox; do
  command -v "${tool}" >/dev/null || { echo "$0: ${tool} not found: apt-get install espeak-ng sox" >&2; exit 1; }
done
python3 -m espnet_peft.bin.synthesize_corpus --out "${SYNTH_CORPUS}" --seed "${seed}" --nj "${nj}" --sizes "${sizes}" \
  --speakers_per_split "${speakers}" --max_words "${max_words}" --skip source_train,source_dev,source_newtext
python3 -m espnet_peft.bin.synthesize_piper --out "${PIPER_CORPUS}" --seed "${seed}" --piper_sizes "${piper_sizes}" \
  --espeak_sizes "${sizes}" --max_words "${max_words}"
mkdir -p data
for dir in "${SYNTH_CORPUS}"/{child,accent}_{train,dev,test} "${SYNTH_CORPUS}/source_test" "${PIPER_CORPUS}"/piper_*; do
  [ -d "${dir}" ] || continue
  rm -rf "data/${dir##*/}"
  cp -r "${dir}" "data/${dir##*/}"
done
