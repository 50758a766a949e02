"""Export the adapters of an experiment as an adapter-only package (weights, config, base-model fingerprint).

    python -m espnet_peft.bin.export_adapter --task asr --exp_dir exp/asr_lora --output_dir packages/myst_lora
"""

from __future__ import annotations

from typing import Optional, Sequence

from espnet_peft.bin.merge import run_on_experiment
from espnet_peft.export import export_adapter


def main(cmd: Optional[Sequence[str]] = None) -> None:
    run_on_experiment(__doc__, export_adapter, "adapter package", cmd)


if __name__ == "__main__":
    main()
