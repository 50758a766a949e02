#!/usr/bin/env bash
# CMU Kids read speech (NIST SPHERE).
# Target domain "child" (child_{train,dev,test}); LibriSpeech as the source-domain sets (forgetting
# is measured on test-clean and test-other). Corpus paths: db.sh. Data preparation: local/data.sh.
#   ./run.sh --source_model <dir|hub tag> [--stage 1 --stop_stage 12] [--methods "lora ssvd_o"] [--budget N]
# Utterances up to 20 s are kept for training and 30 s for testing, which suits a real OWSM source model (30 s
# inputs); the embedded 6 s source config (conf/train_source.yaml) is for the synthetic recipe.
set -euo pipefail

./peft.sh \
    --target_domains child \
    --source_train_set librispeech_dev_clean \
    --source_dev_set librispeech_dev_other \
    --source_test_sets "librispeech_test_clean librispeech_test_other" \
    --max_sec 20 \
    --speech_length 30 \
    "$@"
