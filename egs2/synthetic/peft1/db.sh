# shellcheck shell=bash
# Where corpora live. The embedded default makes its own corpus here (no download).
SYNTH_CORPUS=${SYNTH_CORPUS:-data/local/synth}
