"""How many aten operators a piece of work dispatches: a CPU-measurable stand-in for GPU kernel launches.

Operators are counted below autograd (``TorchDispatchMode``), so a composite such as ``F.linear`` shows as the
``t`` and ``addmm`` it becomes, and the backward's operators are counted too. An operator that only makes a view
(its result aliases an input without writing to it: ``view``, ``t``, ``transpose``, ``detach``, ...) launches no
kernel on a GPU; ``kernels`` leaves those out, ``all`` keeps them.
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Dict

from torch.utils._python_dispatch import TorchDispatchMode

#: views whose schema does not say so
UNMARKED_VIEWS = {"aten._unsafe_view", "aten.lift_fresh"}


def is_view(func: Any) -> bool:
    """Whether ``func`` only makes a view: its first result aliases an input without writing to it."""
    if str(func.overloadpacket) in UNMARKED_VIEWS:
        return True
    returns = func._schema.returns
    alias = returns[0].alias_info if returns else None
    return alias is not None and not alias.is_write


class AtenOpCounter(TorchDispatchMode):
    """Counts every aten operator dispatched while active, by name."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter = collections.Counter()
        self.views: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = str(func.overloadpacket)
        self.counts[name] += 1
        if is_view(func):
            self.views[name] += 1
        return func(*args, **(kwargs or {}))

    def summary(self, top: int = 15) -> Dict[str, Any]:
        kernels = collections.Counter({n: c - self.views[n] for n, c in self.counts.items() if c > self.views[n]})
        return {"all": sum(self.counts.values()), "kernels": sum(kernels.values()),
                "top_kernels": dict(kernels.most_common(top))}


def count_ops(work: Callable[[], None]) -> Dict[str, Any]:
    """Operator counts of one call of ``work`` (call it once before, so lazy set-up is not counted)."""
    with AtenOpCounter() as counter:
        work()
    return counter.summary()
