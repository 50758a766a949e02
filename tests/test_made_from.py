"""``made_from.json``: a derived output is current only for exactly the inputs and settings it was made from."""

from __future__ import annotations

from pathlib import Path

from espnet_peft.bin.made_from import main


def test_check_follows_inputs_and_settings(tmp_path: Path) -> None:
    model, out = tmp_path / "model.pth", tmp_path / "decode" / "test"
    model.write_bytes(b"epoch 1")
    args = ["--out", str(out), "--input", f"model={model}", "--setting", "inference=--beam_size,1"]
    assert main(["check", *args]) == 1, "never made: not current"
    assert main(["mark", *args]) == 0
    assert main(["check", *args]) == 0
    assert main(["check", *args[:-1], "inference=--beam_size,5"]) == 1, "other settings"
    model.write_bytes(b"epoch 2")  # retrained: same path, new content
    assert main(["check", *args]) == 1
