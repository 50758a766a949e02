#!/usr/bin/env bash
# L2-ARCTIC non-native English (6 L1s).
# Target domain "accent" (accent_{train,dev,test}); LibriSpeech as the source-domain sets, with utterance lengths for a
# real OWSM source model: peft_librispeech_source.sh (shared by the corpus recipes) says which and why.
# Corpus paths: db.sh. Data preparation: local/data.sh.
# Source model: an OWSM model from the hub (peft_owsm.sh), OWSM v3.1 base unless --owsm_model says otherwise.
#   ./run.sh [--owsm_model owsm_v3.1_ebf_base] [--stage 1 --stop_stage 12] [--methods "lora ssvd_o"] [--ngpu 1]
set -euo pipefail

exec ./peft_owsm.sh --target_domains accent "$@"
