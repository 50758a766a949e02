"""Low-level helpers that both the recipe (``espnet_peft.recipe``) and the analysis (``espnet_peft.analysis``) use:
Kaldi data dirs, text normalisation, file hashes, the headless pyplot set-up and the environment probe (versions,
CPU, GPUs, git commit). They import neither package, so neither of those imports the other. (The one atomic write
all writers share is ``espnet_peft.atomic``.)"""
