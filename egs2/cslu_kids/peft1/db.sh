# shellcheck shell=bash disable=SC2034
# Where the corpora live: set these here or export them before ./run.sh (README.md says where to get them).
CSLU_KIDS=${CSLU_KIDS:-}       # the CSLU Kids release (holding docs/, speech/, trans/, verify/; LDC2007S18)
LIBRISPEECH=${LIBRISPEECH:-}   # directory holding LibriSpeech/ (https://www.openslr.org/12; CC BY 4.0):
                                # the parts in local/data.sh --librispeech_parts (dev-clean, dev-other,
                                # test-clean, test-other by default)
