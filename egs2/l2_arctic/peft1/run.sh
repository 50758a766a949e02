#!/usr/bin/env bash
# L2-ARCTIC non-native English (6 L1s).
# Target domain "accent" (accent_{train,dev,test}); LibriSpeech as the source-domain sets, with utterance lengths for a
# real OWSM source model: peft_librispeech_source.sh (shared by the corpus recipes) says which and why.
# Corpus paths: db.sh. Data preparation: local/data.sh.
#   ./run.sh --source_model <dir|hub tag> [--stage 1 --stop_stage 12] [--methods "lora ssvd_o"] [--budget N]
set -euo pipefail

./peft_librispeech_source.sh --target_domains accent "$@"
