"""The fault suite's tally: every fault injected and every bad input tried, wherever its test lives.

Tests of the fault suite carry the ``fault_case`` marker; ``python benchmarks/faults.py`` runs exactly those
(``pytest -m fault_case tests``) and, through ``FAULTS_JSON``, has the session write this ledger
(``conftest.pytest_sessionfinish``) into ``benchmarks/results/faults.json``. A plain pytest run only asserts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Dict, List

import pytest

LEDGER: Dict[str, List[dict]] = {"faults": [], "bad_inputs": []}


def record_fault(where: str, fault: str, killed: bool, survived: bool, identical: bool) -> None:
    LEDGER["faults"].append({"where": where, "fault": fault, "killed": killed, "survived": survived,
                             "identical": identical})


def record_bad_input(what: str, rejected: bool, named: bool, message: str) -> None:
    """A bad input and its outcome: ``rejected`` (refused, dropped or redone), ``named`` (the message names the file,
    utterance or flag)."""
    LEDGER["bad_inputs"].append({"input": what, "rejected": rejected, "named": named, "message": message[:300]})


def refuse(what: str, action: Callable[[], object], names: str) -> None:
    """``action`` must raise, and its message must contain ``names`` (the file, utterance or tensor)."""
    try:
        action()
    except (Exception, SystemExit) as error:  # noqa: BLE001 (any refusal counts; its message is what is checked)
        message = str(error)
        excerpt = next((line for line in message.splitlines() if names in line), message)
        record_bad_input(what, True, names in message, excerpt)
        assert names in message, f"{what}: the message does not name {names!r}: {message}"
        return
    record_bad_input(what, False, False, "")
    pytest.fail(f"{what} was accepted")


def write_tally() -> None:
    """Write the ledger to ``$FAULTS_JSON`` (when set and anything was recorded)."""
    path = os.environ.get("FAULTS_JSON")
    if not path or not (LEDGER["faults"] or LEDGER["bad_inputs"]):
        return
    faults, bad = LEDGER["faults"], LEDGER["bad_inputs"]
    summary = {
        "faults_injected": len(faults),
        "faults_survived_identical": sum(f["survived"] and f["identical"] for f in faults),
        "bad_inputs_tried": len(bad),
        "bad_inputs_rejected_by_name": sum(b["rejected"] and b["named"] for b in bad),
    }
    Path(path).write_text(json.dumps({**summary, **LEDGER}, indent=2) + "\n")
