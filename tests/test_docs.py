"""Every fenced ``python`` and ``bash`` block of README.md and docs/*.md runs as written from a fresh checkout.

Each Markdown file gets its own temporary working directory holding a copy of ``studies/`` (as a fresh
checkout has it); its blocks run there in document order, so a later block sees what an earlier one
wrote (``robust-hpo run`` before ``robust-hpo curves``). ``robust-hpo`` is this checkout's CLI.

* ``python`` blocks run whole, each in a fresh interpreter: every name a snippet uses must be defined
  in it. A failure names ``file:line`` of the failing snippet line.
* ``bash`` blocks run command by command (``\\``-continued lines joined, comments dropped); a failure
  names ``file:line`` of the command. Commands the test cannot run here are left out with a reason:
  see :data:`NOT_HERE`.
* A block preceded by ``<!-- not-run: REASON -->`` is skipped with that reason (data to obtain first,
  a server, a GPU); the reason must say how to obtain what is missing.
* Blocks must say what they are: a fence without a language fails (use ``text``/``toml`` for
  what is not meant to run).
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
RUN = {"python": "python", "py": "python", "bash": "bash", "sh": "bash", "shell": "bash"}
"""Languages that run; ``console`` (a transcript: ``$ command`` lines and their output), ``text`` and ``toml``
do not."""
NOT_RUN_MARK = re.compile(r"<!--\s*not-run:\s*(.+?)\s*-->")

NOT_HERE: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^pip install\b"), "installs packages: .ci/run does it on a bare machine"),
    (re.compile(r"^python -m pytest\b"), "the test suite itself (this test is part of it)"),
    (re.compile(r"^robust-hpo dashboard\b|^optuna-dashboard\b"),
     "serves until Ctrl-C: tests/dashboard/test_feasible_front.py starts it and reads its HTTP API"),
    (re.compile(r"^python (-m benchmarks\.|benchmarks/)"),
     "a benchmark (minutes): it prints its own measurements"),
)
"""Commands left out of bash blocks, with the reason (reported when a block had any)."""

TIMEOUT = 900  # a safety net: on a quiet machine the slowest block (docs/networks.md) takes well under a minute


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    not_run: str | None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def _blocks(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        fence = re.match(r"^(\s*)(```+|~~~+)\s*([\w+-]*)", lines[i])
        if not fence:
            i += 1
            continue
        indent, marker, language = fence.group(1), fence.group(2), fence.group(3).lower()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(marker):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        previous = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        mark = NOT_RUN_MARK.search(previous)
        blocks.append(Block(path, start + 1, language, "\n".join(body) + "\n", mark.group(1) if mark else None))
        i += 1
    return blocks


ALL_BLOCKS = [b for path in DOCS for b in _blocks(path)]
RUNNABLE = [b for b in ALL_BLOCKS if b.language in RUN]


def test_every_fence_says_what_it_is() -> None:
    unlabelled = [b.where for b in ALL_BLOCKS if not b.language]
    assert not unlabelled, ("fenced blocks without a language (python/bash run in tests/test_docs.py; "
                            f"text/toml/... do not): {', '.join(unlabelled)}")


def _backticked(pattern: str) -> list[tuple[str, str]]:
    """(``file:line``, match) for each match of ``pattern`` inside `backticks` of the docs' text."""
    found = []
    for path in DOCS:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            for span in re.findall(r"`([^`]+)`", line):
                found += [(f"{path.relative_to(REPO)}:{number}", m) for m in re.findall(pattern, span)]
    return found


def test_documented_files_exist() -> None:
    """Paths of the repository the docs name (tests, benchmarks, studies, docs) exist: a `path` alone, or in
    a `robust-hpo ...` / `python ...` command."""
    path = r"((?:tests|benchmarks|studies|docs|robust_hpo)/[\w./-]*\w\.(?:py|toml|md))"
    found = _backticked(rf"^{path}$") + _backticked(rf"^(?:robust-hpo|python) .*?(?<![\w/.]){path}")
    missing = [f"{where}: {name}" for where, name in found if not (REPO / name).exists()]
    assert not missing, "the docs name files that do not exist:\n" + "\n".join(missing)


def _resolve(dotted: str) -> str | None:
    """None if ``dotted`` (robust_hpo.module[.attribute...]) imports and resolves, else why not."""
    parts = dotted.split(".")
    private = [p for p in parts if p.startswith("_") and not p.startswith("__")]
    if private:
        return f"names the private {'.'.join(parts[:parts.index(private[0]) + 1])} (use the public path)"
    for end in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:end]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[end:]:
            if not hasattr(obj, attribute):
                return f"{'.'.join(parts[:end])} has no {attribute!r}"
            obj = getattr(obj, attribute)
        return None
    return "no such module"


def test_documented_names_exist_and_are_public() -> None:
    """Every `robust_hpo.x.y` the docs name imports, by its public path."""
    wrong = []
    for where, dotted in _backticked(r"(?<![\w.])(robust_hpo(?:\.\w+)+)"):
        why = _resolve(dotted)
        if why is not None:
            wrong.append(f"{where}: `{dotted}` {why}")
    assert not wrong, "\n".join(wrong)


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, Path]:
    return {}


def _workdir(workdirs: dict[Path, Path], tmp_path_factory: pytest.TempPathFactory, doc: Path) -> Path:
    """The fresh-checkout-like working directory of ``doc`` (made on its first block)."""
    if doc not in workdirs:
        folder = tmp_path_factory.mktemp(doc.stem)
        shutil.copytree(REPO / "studies", folder / "studies")
        bin_dir = folder / ".bin"
        bin_dir.mkdir()
        shim = bin_dir / "robust-hpo"
        shim.write_text(f"#!/bin/sh\nexec {sys.executable} -m robust_hpo.cli \"$@\"\n")
        shim.chmod(0o755)
        workdirs[doc] = folder
    return workdirs[doc]


def _env(folder: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": f"{folder / '.bin'}{os.pathsep}{os.environ['PATH']}",
           "PYTHONDONTWRITEBYTECODE": "1"}
    for variable in ("ROBUST_HPO_DATA", "ROBUST_HPO_OUTPUT_ROOT"):  # as on a fresh machine: the defaults
        env.pop(variable, None)
    env["MPLBACKEND"] = "Agg"
    return env


def _commands(block: Block) -> list[tuple[int, str]]:
    """(doc line, command) for each command of a bash block; continuation lines joined."""
    commands: list[tuple[int, str]] = []
    pending: list[str] = []
    first = 0
    for offset, raw in enumerate(block.code.splitlines(), start=1):
        line = raw.rstrip()
        if not pending:
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            first = block.line + offset
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        commands.append((first, " ".join(p.strip() for p in pending)))
        pending = []
    return commands


def _split_left_out(command: str) -> tuple[str, list[str]]:
    """``command`` without its parts listed in NOT_HERE (``a && b`` is split), and the reasons."""
    kept, reasons = [], []
    for part in re.split(r"\s*&&\s*", command):
        stripped = re.sub(r"\s+#.*$", "", part).strip()
        reason = next((why for pattern, why in NOT_HERE if pattern.search(stripped)), None)
        if reason is None:
            kept.append(part)
        else:
            reasons.append(f"`{stripped}`: {reason}")
    return " && ".join(kept), reasons


@pytest.mark.slow
@pytest.mark.parametrize("block", RUNNABLE, ids=[b.where for b in RUNNABLE])
def test_doc_block_runs_as_written(block: Block, workdirs: dict[Path, Path],
                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    if block.not_run is not None:
        pytest.skip(f"{block.where}: not run: {block.not_run}")
    folder = _workdir(workdirs, tmp_path_factory, block.path)
    env = _env(folder)
    if RUN[block.language] == "python":
        script = folder / f"snippet_{block.line}.py"
        script.write_text(block.code, encoding="utf-8")
        result = subprocess.run([sys.executable, script.name], cwd=folder, env=env, capture_output=True,
                                text=True, timeout=TIMEOUT)
        if result.returncode != 0:
            numbers = [int(n) for n in re.findall(rf'File ".*{script.name}", line (\d+)', result.stderr)]
            line = block.line + (numbers[-1] if numbers else 1)
            last = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
            pytest.fail(f"{block.path.relative_to(REPO)}:{line}: python snippet failed: {last}\n"
                        f"{result.stderr[-3000:]}", pytrace=False)
        return
    left_out: list[str] = []
    for line, command in _commands(block):
        runnable, reasons = _split_left_out(command)
        left_out += reasons
        if not runnable.strip():
            continue
        result = subprocess.run(["bash", "-c", runnable], cwd=folder, env=env, capture_output=True, text=True,
                                timeout=TIMEOUT)
        if result.returncode != 0:
            pytest.fail(f"{block.path.relative_to(REPO)}:{line}: `{runnable}` exited with {result.returncode}:\n"
                        f"{(result.stderr or result.stdout)[-3000:]}", pytrace=False)
    if left_out:
        print(f"{block.where}: left out " + "; ".join(left_out))
