#!/usr/bin/env bash
# Sets up everything espnet-peft needs on a fresh Debian machine: the Debian tools and a pinned Python venv.
# The venv lives outside the clone, keyed by a hash of the dependency files, so repeated runs (and CI) reuse it,
# while any change to setup.py or requirements/ builds a new one. `.venv` in the repo points at it.
#   usage: [STACK=202611|202611-py3.13|202511] tools/setup_env.sh
#     STACK=202611 (default): Python 3.12 + espnet 202611 + torch 2.14.1, what installing ESPnet today gives;
#     STACK=202611-py3.13: the same pins on Python 3.13;
#     STACK=202511: Python 3.11 + espnet 202511 + torch 2.9.1, the stack the committed results were made on.
#   .venv points at the stack set up last; .venv-<stack> at each one.
# One venv per stack serves the recipes and the tests: the test-only packages (pytest, HF peft) are small next to
# torch.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="[test,whisper]"
# espeak-ng + sox: synthetic speech; sctk: sclite; slurm + munge: a real one-node Slurm for the slurm.pl tests;
# shellcheck: the recipe scripts' lint test; libsox-fmt-mp3: Common Voice clips; procps (pgrep) + util-linux (flock):
# the recipe driver stops its jobs when killed and locks each experiment dir.
debian_packages=(espeak-ng sox libsox-fmt-mp3 sctk slurmctld slurmd slurm-client munge shellcheck procps util-linux)
find_python() {  # <X.Y>: the first interpreter of that version that runs: $PYTHON, pythonX.Y, pyenv's
  local version=$1 candidate root
  root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
  for candidate in "${PYTHON:-}" "python${version}" "${root}/versions/${version}".*/bin/"python${version}"; do
    if [[ -n "$candidate" ]] && "$candidate" --version >/dev/null 2>&1; then echo "$candidate"; return 0; fi
  done
  echo "[setup] STACK=$stack needs Python ${version}: install it (e.g. pyenv install ${version}) or set PYTHON" >&2
  return 1
}
stack=${STACK:-202611}
case "$stack" in
  202511) python=$(find_python 3.11); setuptools="setuptools<74" ;;  # espnet 202511 pins setuptools<74
  202611) python=$(find_python 3.12); setuptools="setuptools>=77.0.3,<82" ;;  # espnet 202611's own bounds
  202611-py3.13) python=$(find_python 3.13); setuptools="setuptools>=77.0.3,<82" ;;
  *) echo "[setup] unknown STACK=$stack: use 202611, 202611-py3.13 or 202511" >&2; exit 1 ;;
esac
constraints=requirements/constraints-${stack%-py*}.txt

missing=()
for pkg in "${debian_packages[@]}"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
if ((${#missing[@]})); then
  echo "[setup] apt-get install ${missing[*]}"
  if [[ $(id -u) -eq 0 ]]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

key=$(cat setup.py "$constraints" | sha256sum | cut -c1-16)
venv="${ESPNET_PEFT_VENV_ROOT:-$HOME/.cache/espnet-peft}/venv-${stack}-${key}-test"
if [[ ! -f "$venv/.complete" ]]; then
  echo "[setup] creating $venv (espnet $stack on $("$python" --version): ~5 min, ~7 GB the first time)"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade "pip<25" wheel
  "$venv/bin/pip" install -q -c "$constraints" "$setuptools" ".${extras}"
  touch "$venv/.complete"
fi
# Editable install of this checkout (cheap). The venv is shared by clones with the same dependencies, so it points
# at the clone that ran this last; `make test` also sets PYTHONPATH to its own clone.
"$venv/bin/pip" install -q --no-deps --no-build-isolation -e .
# The start-up hook, explicitly: editable installs on setuptools >= 77 (PEP 660) never run a custom command.
cp espnet_peft_env_hook.pth "$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/"
ln -sfn "$venv" ".venv-${stack}"
ln -sfn "$venv" .venv
echo "[setup] ready: STACK=$stack $(readlink .venv)"
