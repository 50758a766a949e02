# shellcheck shell=bash disable=SC2034
# Where the corpora live: set these here or export them before ./run.sh (README.md says where to get them).
MYST=${MYST:-}                 # directory holding myst_child_conv_speech/ (LDC2021S05)
LIBRISPEECH=${LIBRISPEECH:-}   # directory holding LibriSpeech/ (https://www.openslr.org/12; CC BY 4.0):
                                # the parts in local/data.sh --librispeech_parts (dev-clean, dev-other,
                                # test-clean, test-other by default)
