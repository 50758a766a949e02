"""Static checks of the recipe scripts under egs2/, one test case per file.

Shell scripts (``*.sh``: run.sh, local/*.sh, path.sh, db.sh, cmd.sh, peft.sh, utils/*.sh, ...): ``bash -n`` and
``shellcheck -x``.  Perl scripts under ``egs2/**/utils/`` (run.pl, slurm.pl and the module they share): ``perl -c``.

Recipes reach the shared files of egs2/TEMPLATE through symlinks (peft.sh, cmd.sh, utils/), so the tree is walked
following symlinks and every file is checked once, under its real path.  shellcheck runs in the recipe directory,
as the scripts do (``. ./path.sh``, ``. utils/parse_options.sh``), and through a recipe that uses the file where
there is one, so that it can follow what the file sources; what it still cannot follow (a TEMPLATE file's
``./path.sh`` exists only in the recipes) is SC1091, which is excluded.  Needs the Debian package shellcheck.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EGS2 = REPO / "egs2"
SHELLCHECK_ARGS = ["--norc", "--external-sources", "--source-path=SCRIPTDIR", "--exclude=SC1091"]


def walk(root: Path) -> list[Path]:
    """Every file under root, through symlinked directories too (but not around a symlink loop)."""
    found: list[Path] = []

    def visit(d: Path, ancestors: frozenset[str]) -> None:
        real = os.path.realpath(d)
        if real in ancestors:
            return
        for entry in sorted(d.iterdir()):
            if entry.is_dir():
                visit(entry, ancestors | {real})
            elif entry.is_file():
                found.append(entry)

    if root.is_dir():
        visit(root, frozenset())
    return found


def recipe_dir(path: Path) -> Path:
    """egs2/<corpus>/<recipe> of a path under egs2 (the directory the recipe's scripts run in)."""
    parts = path.relative_to(EGS2).parts
    return EGS2.joinpath(*parts[:2]) if len(parts) > 2 else path.parent


def by_real_path(paths: list[Path]) -> dict[str, Path]:
    """{real path relative to the repo: one way to reach it}, preferring a path inside a recipe with a run.sh."""
    aliases: dict[str, list[Path]] = {}
    for p in paths:
        real = Path(os.path.realpath(p))
        key = str(real.relative_to(REPO)) if real.is_relative_to(REPO) else str(real)
        aliases.setdefault(key, []).append(p)
    return {key: min(ps, key=lambda p: (not (recipe_dir(p) / "run.sh").is_file(), str(p)))
            for key, ps in sorted(aliases.items())}


def is_perl(path: Path) -> bool:
    if path.suffix in (".pl", ".pm"):
        return True
    with path.open("rb") as f:
        first = f.readline(200)
    return first.startswith(b"#!") and b"perl" in first


FILES = walk(EGS2)
SHELL_SCRIPTS = by_real_path([p for p in FILES if p.name.endswith(".sh")])
PERL_SCRIPTS = by_real_path([p for p in FILES if "utils" in p.relative_to(EGS2).parts[:-1] and is_perl(p)])


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_recipe_scripts_are_found():
    assert {"egs2/synthetic/peft1/run.sh", "egs2/synthetic/peft1/local/data.sh", "egs2/TEMPLATE/peft1/peft.sh",
            "egs2/TEMPLATE/peft1/utils/parse_options.sh"} <= SHELL_SCRIPTS.keys()
    assert {"egs2/TEMPLATE/peft1/utils/run.pl", "egs2/TEMPLATE/peft1/utils/slurm.pl"} <= PERL_SCRIPTS.keys()
    assert "egs2/synthetic/peft1/peft.sh" not in SHELL_SCRIPTS  # a symlink: checked as its target


@pytest.mark.parametrize("name", list(SHELL_SCRIPTS))
def test_bash_syntax(name: str):
    path = SHELL_SCRIPTS[name]
    r = run(["bash", "-n", str(path)], REPO)
    assert r.returncode == 0, f"bash -n {name}:\n{r.stderr}"


@pytest.mark.parametrize("name", list(SHELL_SCRIPTS))
def test_shellcheck(name: str):
    if shutil.which("shellcheck") is None:
        pytest.fail("apt-get install shellcheck")
    path = SHELL_SCRIPTS[name]
    cwd = recipe_dir(path)
    rel = str(path.relative_to(cwd))
    r = run(["shellcheck", *SHELLCHECK_ARGS, rel], cwd)
    assert r.returncode == 0, (f"(cd {cwd.relative_to(REPO)} && shellcheck {' '.join(SHELLCHECK_ARGS)} {rel}) "
                               f"for {name}:\n{r.stdout}{r.stderr}")


@pytest.mark.parametrize("name", list(PERL_SCRIPTS))
def test_perl_compiles(name: str):
    path = PERL_SCRIPTS[name]
    r = run(["perl", "-c", str(path)], REPO)
    assert r.returncode == 0 and "syntax OK" in r.stderr, f"perl -c {name}:\n{r.stderr}"
