"""Data preparation of the real corpora: scan a release, normalise its transcripts, split it by speaker, write Kaldi
dirs (through ``espnet_peft.utils.kaldi_data``) that ``egs2/TEMPLATE/peft1/peft.sh`` consumes.

One module per corpus, each importable (``prepare(root, OutputOptions(out), ...)``, ``scan``, its ``normalize_*``
function) and runnable (``python -m espnet_peft.recipe.corpora.<module> --root ... --out data``); each module's
docstring states the layout it expects, its normalisation rules and how it splits. Shared pieces, one per module:
``records`` (Utterance, Drops, ids), ``transcripts`` (numbers spelled out, final normalisation), ``splits``
(speaker-disjoint splits), ``audio`` (sox / SPHERE conversion), ``kaldi_writing`` (OutputOptions, write_sets) and
``cli`` (the shared command line).

=============== ====================== ======================================================================
module          sets                   corpus
=============== ====================== ======================================================================
myst            child_{train,dev,test} MyST children's conversational speech (official splits)
cslu_kids       child_{train,dev,test} CSLU/OGI Kids, scripted + spontaneous (speaker split)
cmu_kids        child_{train,dev,test} CMU Kids read speech, SPHERE (speaker split)
l2_arctic       accent_*               L2-ARCTIC, 24 speakers / 6 L1s (fixed speaker table + prompt split)
edacc           accent_*               EdAcc: adaptation train/dev from the official dev (by conversation), test
common_voice    accent_*               Common Voice English accent subsets (``accent`` / ``accents`` columns)
librispeech     librispeech_<part>     LibriSpeech parts: the source-domain / forgetting sets
=============== ====================== ======================================================================
"""

CORPORA = ("myst", "cslu_kids", "cmu_kids", "l2_arctic", "edacc", "common_voice", "librispeech")
