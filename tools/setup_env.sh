#!/usr/bin/env bash
# Sets up everything espnet-peft needs on a fresh Debian machine: the Debian tools and a pinned Python venv.
# The venv lives outside the clone, keyed by a hash of the dependency files, so repeated runs (and CI) reuse it,
# while any change to setup.py or requirements/ builds a new one. `.venv` in the repo points at it.
#   usage: tools/setup_env.sh
# One venv serves the recipes and the tests: the test-only packages (pytest, HF peft) are small next to torch.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="[test]"
# espeak-ng + sox: synthetic speech; sctk: sclite; slurm + munge: a real one-node Slurm for the slurm.pl tests;
# shellcheck: the recipe scripts' lint test; libsox-fmt-mp3: Common Voice clips; procps (pgrep) + util-linux (flock):
# the recipe driver stops its jobs when killed and locks each experiment dir.
debian_packages=(espeak-ng sox libsox-fmt-mp3 sctk slurmctld slurmd slurm-client munge shellcheck procps util-linux)
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3

missing=()
for pkg in "${debian_packages[@]}"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
if ((${#missing[@]})); then
  echo "[setup] apt-get install ${missing[*]}"
  if [[ $(id -u) -eq 0 ]]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

key=$(cat setup.py requirements/constraints.txt | sha256sum | cut -c1-16)
venv="${ESPNET_PEFT_VENV_ROOT:-$HOME/.cache/espnet-peft}/venv-${key}-test"
if [[ ! -f "$venv/.complete" ]]; then
  echo "[setup] creating $venv (torch 2.9.1 + torchaudio 2.9.1 + espnet 202511: ~5 min, ~7.5 GB the first time)"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade "pip<25" wheel
  # espnet pins setuptools<74; the pinned torch 2.9.1 works with it.
  "$venv/bin/pip" install -q -c requirements/constraints.txt "setuptools<74" ".${extras}"
  touch "$venv/.complete"
fi
# Editable install of this checkout (cheap) with the .pth hook. The venv is shared by clones with the same
# dependencies, so it points at the clone that ran this last; `make test` also sets PYTHONPATH to its own clone.
"$venv/bin/pip" install -q --no-deps --no-build-isolation -e .
ln -sfn "$venv" .venv
echo "[setup] ready: $(readlink .venv)"
