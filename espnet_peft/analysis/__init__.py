"""Analysis tools: how similar are two sets of representations, and which layers did an adapter change?

Kept import-light on purpose (the package's start-up hook imports ``espnet_peft`` in every process): import the
family you need directly.

Similarity family (inputs are torch tensors or numpy arrays of the same ``n`` inputs, computed in float64):

* ``espnet_peft.analysis.cka``: linear / RBF / debiased CKA, exact streaming linear CKA over any number of frames,
  minibatch kernel CKA (Nguyen et al. 2021) for many layer pairs at once, and layer x layer CKA matrices;
* ``espnet_peft.analysis.cca``: SVCCA and PWCCA on an SVD-based CCA;
* ``espnet_peft.analysis.neurons``: neuron-level MaxCorr, MinCorr and LinReg (Wu et al. 2020 style);
* ``espnet_peft.analysis.attention``: Jensen-Shannon similarity of attention maps, per head pair and layer x layer.

Inside-the-model family (which layers and branches did an adapter change, and did it hurt?):

* ``espnet_peft.analysis.model_access``: one interface to the layers of ESPnet encoders and HF Whisper / wav2vec2 /
  HuBERT (forward hooks);
* ``espnet_peft.analysis.lens``: the CTC head on every encoder layer (per-layer KL and CER), and the
  classification head of ``WhisperForAudioClassification`` on every layer (per-layer KL and accuracy);
* ``espnet_peft.analysis.contribution``: each block's update relative to its input (size and direction);
* ``espnet_peft.analysis.branches``: the same split into the block's branches (FFNs, attention,
  convolution / cgMLP, E-Branchformer's merge; a decoder block's self-attention, source attention and FFN);
* ``espnet_peft.analysis.decoder``: the attention decoder of an ESPnet ASR / S2T model, teacher-forced on an
  encoder output, as a ``ModelAccess`` over its blocks;
* ``espnet_peft.analysis.ablation``: residual erasure of single blocks or blocks ``0..l``, scored by CTC loss and CER;
* ``espnet_peft.analysis.energy``: SVD energy and ``k90`` of every adapter's bottleneck activations and of
  their gradients (trained vs freshly initialised adapters).

A run (``espnet_peft.bin.analyze``): ``resolve`` names the models (``ModelSource``), ``families`` loads them
(``load_model``) and holds everything that differs between model families (ESPnet, Hugging Face), ``utterances``
reads the audio, and ``runner`` runs the registered analyses of ``methods``: ``methods/<name>.py`` registers the
analysis whose implementation is ``<name>.py`` here.

The definitions, written from this code, are in ``docs/analysis-definitions.md`` (one section per analysis).
"""
