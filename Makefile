# espnet-peft: every target sets up what it needs on a fresh machine (Debian tools + pinned venv) first.
PYTHON := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: setup setup-test demo test benchmark clean-venv

RECIPE ?= egs2/synthetic/peft1
RUN_ARGS ?=

setup:
	tools/setup_env.sh

setup-test: setup

## the embedded default recipe end to end (synthetic corpus, shipped source model, 5 adapters + full FT, the
## SSVD-O outer_share sweep, report, analysis)
demo: setup
	cd $(RECIPE) && PATH=$(CURDIR)/.venv/bin:$$PATH ./run.sh --stage 1 --stop_stage 13 $(RUN_ARGS)

## the README's test command: installs what is missing, then runs the test suite (~10 min on 2 cores)
test: setup-test
	PYTHONPATH=$(CURDIR) $(PYTHON) -m pytest -q tests $(PYTEST_ARGS)

## speed and memory of each adapter against the frozen floor, full fine-tuning and HF peft; writes JSON
benchmark: setup-test
	$(PYTHON) benchmarks/adapter_step.py --output benchmarks/results/adapter_step_cpu.json
	$(PYTHON) benchmarks/adapter_step_flops.py --output benchmarks/results/adapter_step_flops.json

clean-venv:
	rm -rf .venv
