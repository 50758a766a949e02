"""Make the numbers in README.md and docs/ from their sources, and check that none was copied by hand.

Two kinds of marked block:

* ``<!-- generated: KIND ARG ... -->`` ... ``<!-- end generated -->``: the block's body is made by ``KIND`` from
  committed sources (a recipe's ``RESULTS.md``, a model card, a benchmark JSON). ``python tools/render_docs.py``
  rewrites every such body; ``--check`` only says which would change. Kinds:

  - ``table SOURCE HEADING [N]``: the N-th (default 1st) Markdown table under the first heading of SOURCE whose text
    starts with HEADING, copied as it is;
  - ``step-ratios LABEL=JSON ...``: one column per ``benchmarks/adapter_step.py`` JSON, each configuration's step
    time over the frozen floor (the rows are those of the first JSON);
  - ``flop-ratios JSON``: ``benchmarks/adapter_step_flops.py``'s counted multiply-adds over the frozen floor's;
  - ``stage-times JSON``: the table of ``python -m espnet_peft.bin.stage_times LOG --json JSON``;
  - ``faults JSON``: the tally of ``benchmarks/faults.py``;
  - ``whisper-window JSON``: ``benchmarks/whisper_window.py``'s zero-shot WER, loops and step time per window.

* ``<!-- numbers from: SOURCE ... -->`` ... ``<!-- end numbers -->``: prose that quotes results. Every decimal number
  in it (integers are counts and names, and text in backticks is code) must be a rounding of a number in one of the
  sources, at the decimals the prose gives: ``-2.1`` matches a source's ``-2.11`` and, for prose that states a
  direction in words ("2.1 points less"), ``2.1`` does too.

Paths are relative to the repository root. Exit status 1 under ``--check`` when anything differs, with the file and
line of each difference.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Sequence

REPO = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "docs/*.md")

_GENERATED = re.compile(r"^<!-- generated: (?P<spec>.+?) -->\n(?P<body>.*?)^<!-- end generated -->$",
                        re.MULTILINE | re.DOTALL)
_NUMBERS = re.compile(r"^<!-- numbers from: (?P<spec>.+?) -->\n(?P<body>.*?)^<!-- end numbers -->$",
                      re.MULTILINE | re.DOTALL)
_DECIMAL = re.compile(r"(?<![\w.])[-+\u2212]?\d+\.\d+(?![\w.]*\d)")
_ANY_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_CODE = re.compile(r"`[^`]*`")
_LINK_TARGET = re.compile(r"\]\([^)]*\)")


class DocsError(ValueError):
    """A marked block that cannot be made: its source is missing or holds no such table (the message names both)."""


@dataclass(frozen=True)
class Difference:
    """Something in a document that does not follow from its source."""

    path: Path
    line: int
    what: str

    def __str__(self) -> str:
        shown = self.path.relative_to(REPO) if self.path.is_relative_to(REPO) else self.path
        return f"{shown}:{self.line}: {self.what}"


# ---- the generators ----

def _source(name: str) -> Path:
    path = REPO / name
    if not path.is_file():
        raise DocsError(f"source {name} does not exist (relative to the repository root)")
    return path


def markdown_table(text: str, heading: str, index: int = 1, name: str = "") -> str:
    """The ``index``-th table under the first heading whose text starts with ``heading``, before the next heading."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines)
              if line.startswith("#") and line.lstrip("#").strip().startswith(heading)]
    if not starts:
        raise DocsError(f"{name}: no heading starts with {heading!r}")
    level = len(lines[starts[0]]) - len(lines[starts[0]].lstrip("#"))
    tables: List[List[str]] = []
    in_table = False
    for line in lines[starts[0] + 1:]:
        if line.startswith("#") and len(line) - len(line.lstrip("#")) <= level:
            break
        if line.lstrip().startswith("|"):
            if not in_table:
                tables.append([])
            tables[-1].append(line.strip())
            in_table = True
        else:
            in_table = False
    if len(tables) < index:
        raise DocsError(f"{name}: the section {heading!r} has {len(tables)} table(s), not {index}")
    return "\n".join(tables[index - 1])


def _table(args: Sequence[str]) -> str:
    if len(args) not in (2, 3):
        raise DocsError(f"table takes SOURCE HEADING [N], not {list(args)}")
    return markdown_table(_source(args[0]).read_text(encoding="utf-8"), args[1], int(args[2]) if len(args) == 3 else 1,
                          args[0])


def _read_json(name: str) -> Dict[str, Any]:
    return json.loads(_source(name).read_text(encoding="utf-8"))


def _params(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def _step_ratios(args: Sequence[str]) -> str:
    columns = [arg.split("=", 1) for arg in args]
    if not columns or any(len(c) != 2 for c in columns):
        raise DocsError(f"step-ratios takes LABEL=JSON ..., not {list(args)}")
    runs = [(label, _read_json(name)) for label, name in columns]
    first = runs[0][1]
    lines = ["| configuration | trainable | " + " | ".join(label for label, _ in runs) + " |",
             "| --- | ---: | " + " | ".join("---:" for _ in runs) + " |"]
    for config, ratio in first["ratios"]["vs_frozen_floor"].items():
        trainable = first["configs"].get(config, {}).get("trainable_params")
        cells = []
        for _, run in runs:
            value = run["ratios"]["vs_frozen_floor"].get(config)
            cells.append("-" if value is None else f"{value:.3f}")
        lines.append(f"| {config} | {'-' if not trainable else _params(trainable)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _flop_ratios(args: Sequence[str]) -> str:
    flops = _read_json(args[0])["vs_frozen_floor"]
    lines = ["| configuration | counted multiply-adds / frozen floor |", "| --- | ---: |"]
    lines += [f"| {config} | {value:.3f} |" for config, value in flops.items()]
    return "\n".join(lines)


def _stage_times(args: Sequence[str]) -> str:
    sys.path.insert(0, str(REPO))
    from espnet_peft.bin.stage_times import stage_table

    return stage_table(_read_json(args[0]))


def _faults(args: Sequence[str]) -> str:
    tally = _read_json(args[0])
    return "\n".join(["| what | tried | survived / refused by name | at commit |", "| --- | ---: | ---: | --- |",
                      f"| faults injected (kills, cut writes) | {tally['faults_injected']} | "
                      f"{tally['faults_survived_identical']} survived bit-identical | {tally['git_commit'][:7]} |",
                      f"| bad inputs | {tally['bad_inputs_tried']} | {tally['bad_inputs_rejected_by_name']} refused "
                      f"by name | {tally['git_commit'][:7]} |"])


def _whisper_window(args: Sequence[str]) -> str:
    run = _read_json(args[0])
    windows = run["windows"]
    names = [w if w == "none" else f"{w} s" for w in windows]
    rows = [("zero-shot WER %", "zero_shot_wer", "{:.1f}"),
            (f"hypotheses at the {run['cap_tokens']}-token cap (of {run['utterances']})", "hit_cap", "{}"),
            ("LoRA training step, batch 8 (s)", "train_step_s_batch8", "{:.1f}")]
    lines = ["| window | " + " | ".join(names) + " |", "| --- | " + " | ".join("---:" for _ in names) + " |"]
    for label, key, form in rows:
        cells = ["-" if w[key] is None else form.format(w[key]) for w in windows.values()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


GENERATORS: Dict[str, Callable[[Sequence[str]], str]] = {
    "table": _table, "step-ratios": _step_ratios, "flop-ratios": _flop_ratios, "stage-times": _stage_times,
    "faults": _faults, "whisper-window": _whisper_window}


def generate(spec: str) -> str:
    """The body of the block ``<!-- generated: spec -->``."""
    kind, *args = shlex.split(spec)
    if kind not in GENERATORS:
        raise DocsError(f"unknown generated block kind {kind!r}; known: {', '.join(GENERATORS)}")
    return GENERATORS[kind](args) + "\n"


# ---- the prose check ----

def _source_numbers(name: str) -> List[float]:
    path = _source(name)
    if path.suffix == ".json":
        found: List[float] = []

        def walk(value: Any) -> None:
            if isinstance(value, bool):
                return
            if isinstance(value, (int, float)):
                found.append(float(value))
            elif isinstance(value, dict):
                for item in value.values():
                    walk(item)
            elif isinstance(value, list):
                for item in value:
                    walk(item)
            elif isinstance(value, str):
                found.extend(float(x) for x in _ANY_NUMBER.findall(value))

        walk(json.loads(path.read_text(encoding="utf-8")))
        return found
    return [float(x) for x in _ANY_NUMBER.findall(path.read_text(encoding="utf-8").replace("\u2212", "-"))]


def prose_decimals(text: str) -> List[str]:
    """The decimal numbers of prose, code spans and link targets left out."""
    text = _LINK_TARGET.sub("]()", _CODE.sub("", text))
    return [match.group(0).replace("\u2212", "-") for match in _DECIMAL.finditer(text)]


def is_rounding_of(quoted: str, sources: Iterable[float]) -> bool:
    """True when some source number, rounded to ``quoted``'s decimals, is ``quoted`` or its magnitude."""
    decimals = len(quoted.split(".")[1])
    value = float(quoted)
    half = 0.5 * 10 ** -decimals + 1e-9
    return any(abs(source - value) <= half or (not quoted.startswith(("-", "+")) and abs(abs(source) - value) <= half)
               for source in sources if math.isfinite(source))


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def check_prose(path: Path, text: str) -> List[Difference]:
    differences = []
    for block in _NUMBERS.finditer(text):
        sources = [n for name in shlex.split(block.group("spec")) for n in _source_numbers(name)]
        for number in prose_decimals(block.group("body")):
            if not is_rounding_of(number, sources):
                differences.append(Difference(path, _line_of(text, block.start()),
                                              f"{number} is in no source of the block ({block.group('spec')})"))
    return differences


# ---- rendering and checking documents ----

def render(path: Path, text: str) -> tuple[str, List[Difference]]:
    """``text`` with every generated block's body made again, and the blocks that could not be made (left as they
    were)."""
    problems: List[Difference] = []

    def made(match: re.Match) -> str:
        try:
            body = generate(match.group("spec"))
        except DocsError as error:
            problems.append(Difference(path, _line_of(text, match.start()), str(error)))
            body = match.group("body")
        return f"<!-- generated: {match.group('spec')} -->\n{body}<!-- end generated -->"

    return _GENERATED.sub(made, text), problems


def documents(root: Path = REPO) -> List[Path]:
    return sorted({path for pattern in DOCS for path in root.glob(pattern)})


def differences(path: Path) -> List[Difference]:
    """What in ``path`` does not follow from its sources: stale or unmakeable generated blocks, unsourced numbers."""
    text = path.read_text(encoding="utf-8")
    made, found = render(path, text)
    for block, fresh in zip(_GENERATED.finditer(text), _GENERATED.finditer(made)):
        if block.group("body") != fresh.group("body"):
            found.append(Difference(path, _line_of(text, block.start()),
                                    f"generated block '{block.group('spec')}' differs from its source; run "
                                    "`python tools/render_docs.py`"))
    return found + check_prose(path, text)


def _check(path: Path) -> int:
    found = differences(path)
    for difference in found:
        print(difference, file=sys.stderr)
    return int(bool(found))


def _rewrite(path: Path) -> int:
    text = path.read_text(encoding="utf-8")
    made, problems = render(path, text)
    if made != text:
        path.write_text(made, encoding="utf-8")
        print(f"rewrote {path.relative_to(REPO)}")
    problems += check_prose(path, made)
    for problem in problems:
        print(problem, file=sys.stderr)
    return int(bool(problems))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a document would change")
    args = parser.parse_args(argv)
    status = 0
    for path in documents():
        try:
            status |= _check(path) if args.check else _rewrite(path)
        except DocsError as error:
            print(f"{path.relative_to(REPO)}: {error}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
