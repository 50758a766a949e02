"""Named points where the fault-injection suite kills the process, to prove that every interruption is survivable.

``ESPNET_PEFT_FAULT=<point>:<n>`` sends SIGKILL to the process the ``n``-th time (from 1) it reaches ``<point>``:

* ``write:<file name>``: a file written through ``espnet_peft.atomic`` is complete on disk but not yet renamed into
  place (checkpoints, run info, tables): the write window of a kill;
* ``rename_dir:<dir name>``: a merged model or adapter package is complete in its staging dir, not yet renamed;
* ``train_forward``: a training forward pass (a kill mid-epoch);
* ``decoded_set``: the batch decoder has written one set (a kill between sets).

Without the variable, reaching a point costs one environment lookup.
"""

from __future__ import annotations

import os
import signal
from typing import Dict

ENV = "ESPNET_PEFT_FAULT"
_reached: Dict[str, int] = {}


def reach(point: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    name, _, count = spec.rpartition(":")
    if name != point:
        return
    _reached[point] = _reached.get(point, 0) + 1
    if _reached[point] == int(count):
        os.kill(os.getpid(), signal.SIGKILL)
