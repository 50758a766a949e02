"""Drop-in for ``python -m espnet2.bin.s2t_train`` with the espnet_peft adapters (``--adapter espnet_peft``)."""

from espnet_peft.tasks.s2t import S2TTask


def main(cmd=None) -> None:
    S2TTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
