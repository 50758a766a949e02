#!/usr/bin/env bash
# Embedded default recipe: synthetic source / child / accent English, a small OWSM-like source model trained here,
# then LoRA, DoRA, PiSSA, SSVD, SSVD-O (and full fine-tuning) at a matched budget. No network needed.
#   ./run.sh --stage 1 --stop_stage 12 [--methods "lora ssvd_o"] [--budget 20000] [--outer_shares "0 0.25 0.5 0.75 1"]
set -euo pipefail

./peft.sh \
    --source_train_set source_train \
    --source_dev_set source_dev \
    --source_test_sets source_test \
    --target_domains "child accent" \
    --source_config conf/train_source.yaml \
    --finetune_config conf/finetune.yaml \
    --full_finetune_config conf/finetune_full.yaml \
    "$@"
