"""ASR task with the espnet_peft adapters (``espnet2.tasks.asr.ASRTask`` + :class:`PeftTaskMixin`)."""

from espnet2.tasks.asr import ASRTask as StockASRTask

from espnet_peft.tasks.peft_task import peft_task

ASRTask = peft_task(StockASRTask, __name__)
