"""S2T-CTC (OWSM-CTC) task with the espnet_peft adapters.

ESPnet 202511 ships the task (``espnet2/tasks/s2t_ctc.py``, class also named ``S2TTask``) but no training entry
point; ``python -m espnet_peft.bin.s2t_ctc_train`` is that entry point.
"""

from espnet2.tasks.s2t_ctc import S2TTask as StockS2TCTCTask

from espnet_peft.tasks.peft_task import peft_task

S2TTask = peft_task(StockS2TCTCTask, __name__)
S2TCTCTask = S2TTask
