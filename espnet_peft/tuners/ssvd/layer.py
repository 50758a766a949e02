"""SSVD layer: the subspace-rotation layer with inner (input-side) rotation only."""

from espnet_peft.tuners.ssvd.config import SsvdConfig
from espnet_peft.tuners.subspace_rotation import SubspaceRotationLayer


class SsvdLayer(SubspaceRotationLayer):
    config_class = SsvdConfig
