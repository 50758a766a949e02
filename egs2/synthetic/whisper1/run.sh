#!/usr/bin/env bash
# Whisper recipe: OpenAI Whisper tiny.en (39M parameters, 680k hours) as ESPnet's own ASR model, offline, adapted to
# egs2/synthetic/peft1's espeak-ng child and accent speech with LoRA, DoRA, PiSSA, SSVD, SSVD-O (and full
# fine-tuning) at a matched budget; forgetting measured on Piper neural-TTS speech that Whisper already recognises,
# and on peft1's espeak-ng adult source_test (a third shifted domain). No network needed (path.sh).
#   ./run.sh [--quick] [--stage 1] [--stop_stage 13] [--methods "lora ssvd_o"] [--budget 40000] [--seeds "0 1 2"]
#            [--target_domains "child accent"]
# --quick: a few utterances and steps, to check the whole pipeline in minutes (it learns little).
set -euo pipefail

mode_opts=()
if [ "${1:-}" = --quick ]; then
  shift
  mode_opts=(--finetune_config conf/quick/finetune.yaml --full_finetune_config conf/quick/finetune_full.yaml
             --analysis_max_utts 8
             --local_data_opts "--sizes train=8,dev=4,test=6,source.train=2,source.dev=2,source.newtext=2
                                --speakers train=2,dev=2,test=2,source.train=2 --piper_sizes dev=4,test=9")
fi

# Whisper's encoder has no padding mask, and in windows much shorter than its 30 s it loops; every utterance is
# zero-padded to one 10 s window, for training and decoding: 6 s and shorter loop, 8-15 s gave the same zero-shot WER
# on Piper speech, 30 s a little lower at three times the step cost (benchmarks/whisper_window.py, docs/whisper.md);
# every utterance here is under 3.5 s. Hypotheses are capped at 40 tokens (sentences here have <= 6 words), and the
# report counts those that hit the cap.
# Every seed's models get the encoder and decoder CKA drift (stage 13), for seed intervals of BTS's findings.
exec ./peft.sh \
    --task asr \
    --token_type whisper_en \
    --source_config conf/whisper_source.yaml \
    --source_train_set "" \
    --source_dev_set "" \
    --source_test_sets "piper_test source_test" \
    --source_model_test_sets piper_dev \
    --target_domains "child accent" \
    --finetune_config conf/finetune.yaml \
    --full_finetune_config conf/finetune_full.yaml \
    --speech_length 10 \
    --pad_to_window true \
    --max_sec 10 \
    --budget 40000 \
    --decode_ctc_weight 0 \
    --decode_maxlenratio -40 \
    --decode_batch_size 32 \
    --score_normalizer whisper_english \
    --train_jobs 2 \
    --seed_analyses cka,decoder_drift \
    "${mode_opts[@]}" \
    "$@"
