#!/usr/bin/env bash
# peft.sh with LibriSpeech as the source domain: shared by the corpus recipes (egs2/<corpus>/peft1/run.sh, which
# add --target_domains), symlinked into each like peft.sh. Options given after these override them.
# Why these values (the sets come from local/prepare_librispeech.sh, run by each recipe's local/data.sh):
# - dev-clean / dev-other are the source train / dev sets: peft.sh validates them, and trains the BPE model and the
#   embedded source model on them when no --source_model is given. They are small, so data preparation stays quick;
#   for a from-scratch source model add train-clean-100 to --librispeech_parts and pass
#   --source_train_set librispeech_train_clean_100.
# - test-clean / test-other are the forgetting sets (what the source model knew, measured after adaptation).
# - Utterances up to 20 s are kept for training (--max_sec 20) and 30 s for testing (--speech_length 30), which
#   suits a real OWSM source model (30 s inputs); the embedded 6 s source config (conf/train_source.yaml) is for the
#   synthetic recipe.
set -euo pipefail

exec ./peft.sh \
    --source_train_set librispeech_dev_clean \
    --source_dev_set librispeech_dev_other \
    --source_test_sets "librispeech_test_clean librispeech_test_other" \
    --max_sec 20 \
    --speech_length 30 \
    "$@"
