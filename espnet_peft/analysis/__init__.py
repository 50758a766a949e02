"""Analysis tools: how similar are two sets of representations, and which layers did an adapter change?

Kept import-light on purpose (the package's start-up hook imports ``espnet_peft`` in every process): import the
family you need directly.

Similarity family (inputs are torch tensors or numpy arrays of the same ``n`` inputs, computed in float64):

* ``espnet_peft.analysis.cka``: linear / RBF / debiased CKA, exact streaming linear CKA over any number of frames,
  minibatch kernel CKA (Nguyen et al. 2021) for many layer pairs at once, and layer x layer CKA matrices;
* ``espnet_peft.analysis.cca``: SVCCA and PWCCA on an SVD-based CCA;
* ``espnet_peft.analysis.neurons``: neuron-level MaxCorr, MinCorr and LinReg (Wu et al. 2020 style);
* ``espnet_peft.analysis.attention``: Jensen-Shannon similarity of attention maps, per head pair and layer x layer.

The definitions follow ``/work/shared/notes/analysis-methods.md``.
"""
