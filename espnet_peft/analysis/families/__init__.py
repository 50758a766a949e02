"""Model families: what the analyses do differently for ESPnet and Hugging Face models, one module each, one
interface (``base.ModelFamily``), one registry (``registry.FAMILIES``, keyed by ``ModelSource.kind``), as the analyses
are in ``espnet_peft.analysis.methods``.

Every module of this package is imported here, so adding a family is adding a file; callers ask
``family_of(source)`` instead of telling the kinds apart.
"""

import importlib
import pkgutil

for _module in sorted({m.name for m in pkgutil.iter_modules(__path__)} - {"base", "registry"}):
    importlib.import_module(f"{__name__}.{_module}")  # each module registers its family

from espnet_peft.analysis.families.base import ModelFamily
from espnet_peft.analysis.families.registry import FAMILIES, family_of, register
from espnet_peft.analysis.loaded_model import LoadedModel
from espnet_peft.analysis.resolve import ModelSource


def load_model(label: str, source: ModelSource, device: str = "cpu", eager_attention: bool = False) -> LoadedModel:
    """Build the model named by ``source`` in eval mode on ``device``, with its family's loader."""
    return family_of(source).load(label, source, device, eager_attention)


__all__ = ["FAMILIES", "ModelFamily", "family_of", "load_model", "register"]
