"""Drop-in for ``python -m espnet2.bin.asr_inference`` that also loads espnet_peft adapter checkpoints."""

from espnet2.bin import asr_inference as stock

from espnet_peft.env_hook import inference_drop_in

# the task module itself, not only this module's name for it: stock code may import the task inside a function
Speech2Text, main = inference_drop_in(stock, "espnet2.tasks.asr")

if __name__ == "__main__":
    main()
