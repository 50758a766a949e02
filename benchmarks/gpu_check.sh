#!/usr/bin/env bash
# The checks that need a GPU, in one run: the mixed-precision tests on CUDA (the SSVD/SSVD-O core stays exact, every
# adapter tensor gets its gradient under autocast), and the adapter-step benchmark on
# CUDA in fp32 and under bf16 autocast (the mixed precision that `use_amp: true` trains with).
#
#   benchmarks/gpu_check.sh [OUT_DIR]          # default OUT_DIR: benchmarks/results
#
# Environment: PYTHON (default python), DEVICE (default cuda), BENCH_ARGS (extra benchmark options, e.g. --quick).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results}
python=${PYTHON:-python}
device=${DEVICE:-cuda}
mkdir -p "$out"
export PYTHONPATH="$PWD:$PWD/tests${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

status=0
# --noconftest: these tests need neither the speech fixtures nor Slurm, only torch and the package
ESPNET_PEFT_TEST_DEVICE=$device "$python" -m pytest -q -p no:cacheprovider --noconftest \
    tests/test_ssvd_numerics.py tests/test_adapter_amp.py -k "autocast or amp" --junitxml "$out/amp_tests_$device.xml" \
    || status=1
"$python" benchmarks/adapter_step.py --device "$device" ${BENCH_ARGS:-} --output "$out/adapter_step_$device.json"
"$python" benchmarks/adapter_step.py --device "$device" --autocast bfloat16 ${BENCH_ARGS:-} \
    --output "$out/adapter_step_${device}_amp_bfloat16.json"
exit $status
