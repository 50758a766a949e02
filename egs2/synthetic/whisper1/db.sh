# shellcheck shell=bash
# Where corpora live. The recipe makes its own (no download): espeak-ng child / accent / adult speech, and Piper.
SYNTH_CORPUS=${SYNTH_CORPUS:-data/local/synth}
PIPER_CORPUS=${PIPER_CORPUS:-data/local/piper}
