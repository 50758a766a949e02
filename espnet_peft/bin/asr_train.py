"""Drop-in for ``python -m espnet2.bin.asr_train`` with the espnet_peft adapters (``--adapter espnet_peft``)."""

from espnet_peft.tasks.asr import ASRTask


def main(cmd=None) -> None:
    ASRTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
