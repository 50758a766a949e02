"""S2T (OWSM) task with the espnet_peft adapters (``espnet2.tasks.s2t.S2TTask`` + :class:`PeftTaskMixin`)."""

from espnet2.tasks.s2t import S2TTask as StockS2TTask

from espnet_peft.tasks.peft_task import peft_task

S2TTask = peft_task(StockS2TTask, __name__)
