"""SSVD-O layer: the subspace-rotation layer with both inner and outer rotations."""

from espnet_peft.tuners.ssvd_o.config import SsvdOConfig
from espnet_peft.tuners.subspace_rotation import SubspaceRotationLayer


class SsvdOLayer(SubspaceRotationLayer):
    config_class = SsvdOConfig
