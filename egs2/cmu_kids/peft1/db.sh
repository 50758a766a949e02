# shellcheck shell=bash disable=SC2034
# Where the corpora live: set these here or export them before ./run.sh (README.md says where to get them).
CMU_KIDS=${CMU_KIDS:-}         # the CMU Kids release (holding kids/ and tables/; LDC97S63)
SPH2PIPE=${SPH2PIPE:-}         # sph2pipe binary, needed only if the .sph files are shorten-compressed
LIBRISPEECH=${LIBRISPEECH:-}   # directory holding LibriSpeech/ (https://www.openslr.org/12; CC BY 4.0):
                                # the parts in local/data.sh --librispeech_parts (dev-clean, dev-other,
                                # test-clean, test-other by default)
