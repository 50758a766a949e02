#!/usr/bin/env bash
# Embedded default recipe: synthetic source / child / accent English, a small OWSM-like source model shipped in
# source_model/ (trained by this recipe; README.md there is its card), then LoRA, DoRA, PiSSA, SSVD, SSVD-O (and full
# fine-tuning) at a matched budget. No network needed.
#   ./run.sh [--quick] [--stage 1] [--stop_stage 13] [--methods "lora ssvd_o"] [--budget 40000] [--seeds "0 1 2"]
#            [--sweep "ssvd_o:outer_share=0,0.25,0.5,0.75,1"]   (the default; --sweep "" runs none)
#            [--retrain_source true]   (train the source model here instead of using the shipped one: hours on CPU)
# --quick: a tiny model, a small corpus and a few steps, to check the whole pipeline in minutes (it learns little).
# --quick --task s2t_ctc: the same with a tiny OWSM-CTC model (E-Branchformer-CTC encoder, greedy CTC decoding).
set -euo pipefail

# SSVD-O's split of its budget between the two sides, learning against forgetting (conf/peft/ssvd_o.yaml has 0.5)
sweep="ssvd_o:outer_share=0,0.25,0.5,0.75,1"
shipped=source_model/owsm_synth_ebf.zip
mode_opts=(--source_model "${shipped}" --source_sha256 "$(awk -v f="${shipped##*/}" '$2 == f { print $1 }' \
             source_model/SHA256SUMS 2>/dev/null || true)")
task=s2t
args=("$@")
for i in "${!args[@]}"; do
  if [ "${args[${i}]}" = --task ]; then task=${args[$((i + 1))]:-}; fi
done
quick_source=conf/quick/train_source.yaml
if [ "${task}" = s2t_ctc ]; then quick_source=conf/quick/train_source_ctc.yaml; fi
if [ "${1:-}" = --quick ]; then
  shift
  sweep="ssvd_o:outer_share=1"   # one point beside the default: the sweep's plumbing and plot, at little cost
  mode_opts=(--retrain_source true --source_config "${quick_source}"
             --source_continue_config conf/quick/train_source_specaug.yaml
             --finetune_config conf/quick/finetune.yaml --full_finetune_config conf/quick/finetune_full.yaml
             --bpe_vocab_size 60 --budget 8000
             --local_data_opts "--sizes train=12,dev=4,test=6,source.newtext=4 --speakers train=3,dev=2,test=2")
elif [ "${task}" = s2t_ctc ]; then
  mode_opts=()   # the shipped model is an OWSM one
  if [[ " $* " != *" --source_model "* ]]; then
    echo "$0: no OWSM-CTC source model is shipped here: run with --quick, or give one with --source_model" \
         "(e.g. espnet/owsm_ctc_v3.1_1B)" >&2
    exit 1
  fi
fi

exec ./peft.sh \
    --source_train_set source_train \
    --source_dev_set source_dev \
    --source_test_sets source_test \
    --source_model_test_sets source_newtext \
    --target_domains "child accent" \
    --source_config conf/train_source.yaml \
    --source_continue_config conf/train_source_specaug.yaml \
    --finetune_config conf/finetune.yaml \
    --full_finetune_config conf/finetune_full.yaml \
    --speech_length 3.5 \
    --max_sec 3.4 \
    --budget 40000 \
    --decode_word_penalty 1.0 \
    --train_jobs 2 \
    --sweep "${sweep}" \
    "${mode_opts[@]}" \
    "$@"
