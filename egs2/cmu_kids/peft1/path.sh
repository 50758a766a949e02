# shellcheck shell=bash
# The recipe runs from the pip install alone: python3 on PATH must have espnet_peft installed.
# Debian's sctk installs sclite under /usr/lib/sctk/bin (only a dispatcher is on PATH).
export PATH="${PWD}/utils:${PATH}:/usr/lib/sctk/bin"
export PYTHONIOENCODING=UTF-8
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
