"""OWSM-CTC training with the espnet_peft adapters (ESPnet 202511 has no ``espnet2.bin.s2t_ctc_train``)."""

from espnet_peft.tasks.s2t_ctc import S2TCTCTask


def main(cmd=None) -> None:
    S2TCTCTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
