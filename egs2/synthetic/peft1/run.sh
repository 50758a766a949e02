#!/usr/bin/env bash
# Embedded default recipe: synthetic source / child / accent English, a small OWSM-like source model trained here,
# then LoRA, DoRA, PiSSA, SSVD, SSVD-O (and full fine-tuning) at a matched budget. No network needed.
#   ./run.sh [--quick] [--stage 1] [--stop_stage 12] [--methods "lora ssvd_o"] [--budget 40000]
#            [--outer_shares "0 0.25 0.5 0.75 1"]
# --quick: a tiny model, a small corpus and a few steps, to check the whole pipeline in minutes (it learns little).
set -euo pipefail

mode_opts=()
if [ "${1:-}" = --quick ]; then
  shift
  mode_opts=(--source_config conf/quick/train_source.yaml --finetune_config conf/quick/finetune.yaml
             --full_finetune_config conf/quick/finetune_full.yaml --bpe_vocab_size 60 --budget 8000
             --local_data_opts "--sizes train=12,dev=4,test=6 --speakers train=3,dev=2,test=2")
fi

./peft.sh \
    --source_train_set source_train \
    --source_dev_set source_dev \
    --source_test_sets source_test \
    --target_domains "child accent" \
    --source_config conf/train_source.yaml \
    --finetune_config conf/finetune.yaml \
    --full_finetune_config conf/finetune_full.yaml \
    --speech_length 3.5 \
    --max_sec 3.4 \
    --budget 40000 \
    "${mode_opts[@]}" \
    "$@"
