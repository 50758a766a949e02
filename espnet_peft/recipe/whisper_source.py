"""A recipe's source model from OpenAI Whisper: ESPnet's own Whisper ASR model, built from a converted checkpoint.

A fetched ESPnet model comes as ``config.yaml`` + ``model.pth`` (:mod:`.source_model`); a Whisper one is made here
in the same shape, so fine-tuning, decoding, merging and the analyses treat both alike:

* ``<token_dir>/tokens.txt``: ESPnet's Whisper vocabulary export (``whisper_en`` / ``whisper_multilingual``);
* ``<out>/config.yaml``: the resolved options of ``espnet2.tasks.asr`` for the recipe's config, as ``asr_train``
  writes them;
* ``<out>/model.pth``: the state dict of the model that config builds: ESPnet's ``OpenAIWhisperEncoder`` /
  ``OpenAIWhisperDecoder`` holding the checkpoint that ``whisper.load_model(name)`` resolves to
  (``ESPNET_PEFT_WHISPER_DIR``, :mod:`espnet_peft.whisper.offline`);
* ``<out>/source.json``: what it was made from (the checkpoint's sha256 and where that came from).

It is made again whenever the config, the checkpoint or the token list it was made from changed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

import yaml

from espnet_peft.atomic import atomic_torch_saves, atomic_write_text
from espnet_peft.utils.file_hash import file_sha256
from espnet_peft.whisper import offline

SOURCE_INFO = "source.json"


def whisper_names(config: Dict[str, Any], path: Path) -> str:
    """The one openai-whisper model name of the config's encoder and decoder."""
    if config.get("encoder") != "whisper" or config.get("decoder") != "whisper":
        raise ValueError(f"{path}: expected encoder: whisper and decoder: whisper (ESPnet's Whisper classes), got "
                         f"{config.get('encoder')!r} / {config.get('decoder')!r}")
    names = {(config.get(f"{part}_conf") or {}).get("whisper_model", "small") for part in ("encoder", "decoder")}
    if len(names) != 1:
        raise ValueError(f"{path}: the encoder and decoder name different Whisper models {sorted(names)}")
    return names.pop()


def make_whisper_source(config_path: Path, out: Path, token_dir: Path) -> Path:
    """Write ``out`` and ``token_dir`` as the module docstring says; returns ``out``."""
    from espnet2.bin.whisper_export_vocabulary import export_vocabulary
    from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

    from espnet_peft.tasks.asr import ASRTask

    config_path, out, token_dir = Path(config_path), Path(out), Path(token_dir)
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    name = whisper_names(config, config_path)
    checkpoint = offline.resolve(name)
    if checkpoint is None:
        raise ValueError(f"{config_path}: Whisper model {name!r} has no local checkpoint: set "
                         f"{offline.ENV_VARIABLE} to a folder for converted checkpoints (docs/whisper.md)")
    tokens = token_dir / "tokens.txt"
    token_dir.mkdir(parents=True, exist_ok=True)
    export_vocabulary(str(tokens), config.get("bpemodel", "whisper_en"))
    wanted = {"source": f"whisper:{name}", "task": "asr", "config_sha256": file_sha256(config_path),
              "checkpoint": str(checkpoint), "checkpoint_sha256": file_sha256(checkpoint),
              "tokens_sha256": file_sha256(tokens)}
    info_path = out / SOURCE_INFO
    if (out / "model.pth").is_file() and info_path.is_file() and \
            json.loads(info_path.read_text(encoding="utf-8")).get("made_from") == wanted:
        return out
    out.mkdir(parents=True, exist_ok=True)
    args = ASRTask.get_parser().parse_args(["--config", str(config_path), "--token_list", str(tokens.resolve()),
                                            "--output_dir", str(out)])
    model = ASRTask.build_model(args)
    import torch

    with atomic_torch_saves():
        torch.save(model.state_dict(), out / "model.pth")
    with (out / "config.yaml").open("w", encoding="utf-8") as handle:
        yaml_no_alias_safe_dump(vars(args), handle, indent=4, sort_keys=False)
    provenance = offline.provenance_file(checkpoint)
    record = {"made_from": wanted,
              "checkpoint_record": json.loads(provenance.read_text()) if provenance.is_file() else None,
              "parameters": sum(p.numel() for p in model.parameters())}
    atomic_write_text(info_path, json.dumps(record, indent=1) + "\n")  # last: marks the source complete
    return out
