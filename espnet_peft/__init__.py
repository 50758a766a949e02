"""espnet-peft: LoRA, DoRA, PiSSA, SSVD and SSVD-O adapters for ESPnet ASR / OWSM models.

Kept import-light on purpose: the start-up hook (``espnet_peft_env_hook.pth``) imports this package in every Python
process of the environment. The API lives in ``espnet_peft.injection``, ``espnet_peft.budget``, ``espnet_peft.export``
and ``espnet_peft.tuners``.
"""

__version__ = "0.1.0"
