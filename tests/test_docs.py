"""README.md and docs/: every generated table equals what its source makes, every quoted number is in its source, and
every relative link points at a file (tools/render_docs.py)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


def _render_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render_docs", REPO / "tools" / "render_docs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["render_docs"] = module
    spec.loader.exec_module(module)
    return module


render_docs = _render_docs()
DOCUMENTS = render_docs.documents()


def test_the_readme_is_a_front_door() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move details to docs/"
    for command in ("make demo", "make test", "make demo-whisper", "make test-fast"):
        assert f"`{command}`" in "\n".join(lines)


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_generated_block_and_quoted_number_follows_from_its_source(path: Path) -> None:
    differences = render_docs.differences(path)
    assert not differences, "\n".join(map(str, differences))


def test_the_readme_and_docs_hold_generated_tables() -> None:
    blocks = [m.group("spec") for p in DOCUMENTS for m in render_docs._GENERATED.finditer(p.read_text())]
    kinds = {spec.split()[0] for spec in blocks}
    assert {"table", "step-ratios", "faults", "whisper-window"} <= kinds, kinds


def test_an_edited_copy_of_a_table_is_found(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = next(render_docs._GENERATED.finditer(readme))
    body = block.group("body")
    number = re.search(r"\d+\.\d", body).group(0)
    edited = readme[:block.start("body")] + body.replace(number, number + "9", 1) + readme[block.end("body"):]
    copy = tmp_path / "README.md"
    copy.write_text(edited, encoding="utf-8")
    found = render_docs.differences(copy)
    assert any("differs from its source" in d.what for d in found), found


def test_a_quoted_number_must_be_a_rounding_of_its_source() -> None:
    sources = [-2.11, 0.122, 14.6]
    assert render_docs.is_rounding_of("-2.1", sources)
    assert render_docs.is_rounding_of("2.1", sources), "a magnitude quoted with its direction in words"
    assert render_docs.is_rounding_of("+0.12", sources) and render_docs.is_rounding_of("14.6", sources)
    assert not render_docs.is_rounding_of("-2.2", sources)
    assert not render_docs.is_rounding_of("+2.1", sources), "a signed quote keeps its sign"
    assert not render_docs.is_rounding_of("0.13", sources)
    assert render_docs.prose_decimals("LoRA +3.3 [+2.4, +4.1] (`lr 1e-3`, [link](a/v1.5.md))") == ["+3.3", "+2.4",
                                                                                                  "+4.1"]


def test_an_unsourced_number_in_prose_is_found(tmp_path: Path) -> None:
    text = ("<!-- numbers from: egs2/synthetic/whisper1/RESULTS.md -->\nLoRA forgets 3.31 points more, SSVD 97.53.\n"
            "<!-- end numbers -->\n")
    found = render_docs.check_prose(tmp_path / "x.md", text)
    assert [d.what.split()[0] for d in found] == ["97.53"]


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_point_at_files(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    missing = [t for t in targets if "://" not in t and not (path.parent / t).exists()]
    assert not missing, f"{path.relative_to(REPO)} links to missing files: {missing}"
