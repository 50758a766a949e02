"""Drop-in for ``python -m espnet2.bin.s2t_inference_ctc`` that also loads espnet_peft adapter checkpoints."""

from espnet2.bin import s2t_inference_ctc as stock

from espnet_peft.env_hook import inference_drop_in

# the task module itself, not only this module's name for it: stock code may import the task inside a function
Speech2Text, main = inference_drop_in(stock, "espnet2.tasks.s2t_ctc")

if __name__ == "__main__":
    main()
