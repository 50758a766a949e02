"""espnet-peft: parameter-efficient fine-tuning (LoRA, DoRA, PiSSA, SSVD, SSVD-O) for ESPnet ASR and OWSM models."""

from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.develop import develop

HOOK = "espnet_peft_env_hook.pth"


class BuildWithEnvHook(build_py):
    """Also put the ``.pth`` start-up hook at the top of site-packages (inactive unless ESPNET_PEFT=1)."""

    def run(self) -> None:
        super().run()
        self.copy_file(HOOK, str(Path(self.build_lib) / HOOK))

    def get_outputs(self, include_bytecode: bool = True):
        return super().get_outputs(include_bytecode) + [str(Path(self.build_lib) / HOOK)]


class DevelopWithEnvHook(develop):
    """``pip install -e .`` (legacy develop mode) installs the same start-up hook."""

    def run(self) -> None:
        super().run()
        if not self.uninstall:
            self.copy_file(HOOK, str(Path(self.install_dir) / HOOK))


setup(
    name="espnet-peft",
    version="0.1.0",
    description=__doc__,
    long_description=Path("README.md").read_text(encoding="utf-8") if Path("README.md").exists() else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["espnet_peft", "espnet_peft.*"]),
    python_requires=">=3.11,<3.12",
    # Pinned together: torchaudio must match torch exactly, torch >= 2.10 conflicts with espnet's setuptools pin.
    install_requires=[
        "torch==2.9.1",
        "torchaudio==2.9.1",
        "espnet==202511",
        "tensorboard",
        "matplotlib",
        "tqdm",
        "PyYAML",
        "soundfile",
        "numpy",
        "sentencepiece",
        "jiwer==4.0.0",  # scoring cross-checks sclite against it
        # hub tags (espnet/owsm_*): 0.1.7 is the last release for Python < 3.12 (0.1.8+ require >= 3.12)
        "espnet_model_zoo==0.1.7",
    ],
    extras_require={"test": ["pytest", "peft==0.21.2"]},
    cmdclass={"build_py": BuildWithEnvHook, "develop": DevelopWithEnvHook},
)
