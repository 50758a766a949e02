"""Drop-in for ``python -m espnet2.bin.s2t_inference_ctc`` that also loads espnet_peft adapter checkpoints."""

from espnet2.bin import s2t_inference_ctc as stock

from espnet_peft.env_hook import patch_module_tasks

Speech2Text = patch_module_tasks(stock).Speech2Text
main = stock.main

if __name__ == "__main__":
    main()
