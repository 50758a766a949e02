# shellcheck shell=bash disable=SC2034
# Where the corpora live: set these here or export them before ./run.sh (README.md says where to get them).
L2ARCTIC=${L2ARCTIC:-}         # l2arctic_release_v5.0/ with the per-speaker zips unpacked (<SPK>/wav, <SPK>/transcript)
LIBRISPEECH=${LIBRISPEECH:-}   # directory holding LibriSpeech/ (https://www.openslr.org/12; CC BY 4.0):
                                # the parts in local/data.sh --librispeech_parts (dev-clean, dev-other,
                                # test-clean, test-other by default)
