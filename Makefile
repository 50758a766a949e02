# espnet-peft: every target sets up what it needs on a fresh machine (Debian tools + pinned venv) first.
# Two supported stacks (tools/setup_env.sh): STACK=202611 (Python 3.12, espnet 202611, torch 2.14.1; the newest, the
# default for the tests) and STACK=202511 (Python 3.11, espnet 202511, torch 2.9.1; the committed results' stack, the
# default for the demo).
SHELL := /bin/bash
STACK ?= 202611
DEMO_STACK ?= 202511
PYTEST_ARGS ?=

.PHONY: setup demo demo-whisper test test-fast test-stacks docs benchmark clean-venv

RECIPE ?= egs2/synthetic/peft1
RUN_ARGS ?=

setup:
	STACK=$(STACK) tools/setup_env.sh

## the embedded default recipe end to end (synthetic corpus, shipped source model, 5 adapters + full FT, the
## SSVD-O outer_share sweep, report, analysis)
## The log goes to <recipe>/demo.log and its stage times to <recipe>/exp/stage_times.json (what docs/measurements holds).
demo:
	STACK=$(DEMO_STACK) tools/setup_env.sh
	cd $(RECIPE) && set -o pipefail && PATH=$(CURDIR)/.venv-$(DEMO_STACK)/bin:$$PATH \
		./run.sh --stage 1 --stop_stage 13 $(RUN_ARGS) 2>&1 | tee demo.log
	cd $(RECIPE) && $(CURDIR)/.venv-$(DEMO_STACK)/bin/python -m espnet_peft.bin.stage_times demo.log \
		--json exp/stage_times.json

## the Whisper recipe (egs2/synthetic/whisper1): OpenAI Whisper tiny.en inside ESPnet, offline, adapted to child
## speech by every adapter and full fine-tuning, forgetting on Piper speech. One target domain and one seed by default,
## to stay within an hour on 2 CPU cores; WHISPER_RUN_ARGS='--target_domains "child accent" --seeds "0 1 2"' for all.
WHISPER_RUN_ARGS ?= --target_domains child
demo-whisper:
	STACK=$(DEMO_STACK) tools/setup_env.sh
	cd egs2/synthetic/whisper1 && set -o pipefail && PATH=$(CURDIR)/.venv-$(DEMO_STACK)/bin:$$PATH \
		./run.sh --stage 1 --stop_stage 13 $(WHISPER_RUN_ARGS) 2>&1 | tee demo.log
	cd egs2/synthetic/whisper1 && $(CURDIR)/.venv-$(DEMO_STACK)/bin/python -m espnet_peft.bin.stage_times demo.log \
		--json exp/stage_times.json

## the README's test command: installs what is missing, then runs the test suite on the newest stack
test: setup
	PYTHONPATH=$(CURDIR) .venv-$(STACK)/bin/python -m pytest -q tests $(PYTEST_ARGS)

## the unit layer (math and pieces, no training or pipelines; tests/conftest.py LAYERS), two workers
test-fast: setup
	PYTHONPATH=$(CURDIR) .venv-$(STACK)/bin/python -m pytest -q -m unit -n 2 tests $(PYTEST_ARGS)

## the whole suite on both supported stacks, one after the other (fails if either fails)
test-stacks:
	status=0; for stack in 202611 202511; do $(MAKE) test STACK=$$stack || status=1; done; exit $$status

## every generated table and quoted number of README.md and docs/, from its committed source
docs:
	.venv-$(STACK)/bin/python tools/render_docs.py

## speed and memory of each adapter against the frozen floor, full fine-tuning and HF peft; writes JSON
benchmark: setup
	.venv-$(STACK)/bin/python benchmarks/adapter_step.py --output benchmarks/results/adapter_step_cpu.json
	.venv-$(STACK)/bin/python benchmarks/adapter_step_flops.py --output benchmarks/results/adapter_step_flops.json

clean-venv:
	rm -rf .venv .venv-202511 .venv-202611
