"""Print the experiments of a recipe run, one per line, for the shell stages to loop over (peft.sh stages 7-13).

    python -m espnet_peft.bin.list_experiments --domains "child accent" --methods "lora ssvd_o full" \\
        --seeds "0 1 2" --sweep "ssvd_o:outer_share=0,0.25,0.5,0.75,1" --peft_conf_dir conf/peft --budget 40000

Each line: ``domain method seed name settings label`` (settings: ``field=value,...`` or ``-``; the label may hold
spaces, so it comes last). The sweep syntax and naming are in espnet_peft/recipe/sweep.py. A bad option exits
non-zero with a message naming it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from espnet_peft.recipe import sweep as plan_lib


def main(cmd: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--domains", required=True, help="target domains separated by spaces")
    parser.add_argument("--methods", default="", help="methods separated by spaces (empty: every adapter + full)")
    parser.add_argument("--seeds", default="0", help="training seeds separated by spaces")
    parser.add_argument("--sweep", default="", help="method:field=v1,v2,... specs separated by spaces or ';'")
    parser.add_argument("--peft_conf_dir", type=Path, default=Path("conf/peft"),
                        help="<method>.yaml: each method's default adapter_conf")
    parser.add_argument("--budget", type=int, help="the run's total budget (fields it sets cannot be swept)")
    args = parser.parse_args(cmd)
    try:
        methods = plan_lib.parse_methods(args.methods)
        seeds = plan_lib.parse_seeds(args.seeds)
        sweeps = [plan_lib.check_sweep(s, args.peft_conf_dir, args.budget) for s in plan_lib.parse_sweeps(args.sweep)]
        experiments = plan_lib.plan(args.domains.split(), methods, seeds, sweeps)
    except (plan_lib.SweepError, FileNotFoundError, ValueError) as error:
        raise SystemExit(f"list_experiments: {error}") from None
    for sweep in sweeps:
        if sweep.method not in methods:
            print(f"list_experiments: sweep {sweep.method}:{sweep.field} skipped: {sweep.method} is not in "
                  f"--methods", file=sys.stderr)
    for experiment in experiments:
        print(experiment.line())


if __name__ == "__main__":
    main()
