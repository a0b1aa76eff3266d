"""The light install: torch only under the [torch] (and [dev]) extra; a convex study, its report, an analysis
and the dashboard run with torch unimportable and never import it; torch features fail with a clear message."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "pillow")


def _metadata(tmp_path: Path) -> str:
    """The wheel metadata setuptools builds from pyproject.toml (in a copy: no egg-info in the repo)."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "robust_hpo", tmp_path / "robust_hpo", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "meta").mkdir()
    code = ("import sys; from setuptools import build_meta; "
            "print(build_meta.prepare_metadata_for_build_wheel(sys.argv[1]))")
    name = subprocess.run([sys.executable, "-c", code, str(tmp_path / "meta")], cwd=tmp_path, check=True,
                          capture_output=True, text=True).stdout.strip().splitlines()[-1]
    return (tmp_path / "meta" / name / "METADATA").read_text()


def test_metadata_requires_torch_only_under_extras(tmp_path: Path) -> None:
    requires = re.findall(r"^Requires-Dist: (.+)$", _metadata(tmp_path), re.MULTILINE)
    by_extra: dict[str | None, set[str]] = {}
    for line in requires:
        name = re.match(r"[A-Za-z0-9_.-]+", line).group(0).lower()
        extra = re.search(r'extra == "([^"]+)"', line)
        by_extra.setdefault(extra.group(1) if extra else None, set()).add(name)
    assert not set(HEAVY) & by_extra[None], by_extra[None]
    assert {"numpy", "scipy", "scikit-learn", "optuna", "optuna-dashboard", "plotly"} <= by_extra[None]
    assert set(HEAVY) <= by_extra["torch"]
    assert set(HEAVY) | {"pytest"} <= by_extra["dev"]  # the README's `pip install -e '.[dev]'` runs every test


BLOCKER = textwrap.dedent("""
    import importlib.abc, sys
    BLOCKED = ("torch", "torchvision", "PIL")

    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NotInstalled())
    for name in list(sys.modules):
        assert name.split(".")[0] not in BLOCKED, name
""")

MLP_STUDY = """
[study]
name = "nets"
n_trials = 1

[data]
dataset = "digits"
classes = [3, 8]
n_train = 40
n_test = 20

[attack]
size = 2

[search]
learners = ["mlp"]
"""


def test_convex_study_runs_without_torch_and_torch_features_say_which_extra(tmp_path: Path) -> None:
    (tmp_path / "nets.toml").write_text(MLP_STUDY)
    (tmp_path / "folder" / "train" / "a").mkdir(parents=True)
    (tmp_path / "folder" / "train" / "a" / "x.png").write_bytes(b"")
    script = BLOCKER + textwrap.dedent(f"""
        import contextlib, io, sys
        from pathlib import Path
        import numpy as np
        from robust_hpo.cli import main
        import robust_hpo
        from robust_hpo.dashboard import dashboard_app
        from robust_hpo.errors import MissingDependencyError
        from robust_hpo.study import StorageSpec

        quickstart, out = {str(REPO / "studies" / "quickstart.toml")!r}, "out"
        where = ["--storage", out + "/study.log", "--output", out]
        assert main(["run", quickstart, *where, "--n-trials", "8", "--no-progress"]) == 0
        assert main(["report", quickstart, *where]) == 0
        assert main(["curves", quickstart, *where, "--betas", "0", "0.1", "1"]) == 0
        dashboard_app(StorageSpec(journal=Path(out) / "study.log").open())
        print("TORCH-FREE", sorted({{m.split(".")[0] for m in sys.modules}} & {{"torch", "torchvision", "PIL"}}))

        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            status = main(["run", "nets.toml", "--output", "nets", "--no-progress"])
        print("MLP", status, err.getvalue().strip())
        for attempt in (lambda: __import__("robust_hpo.slope.networks"),
                        lambda: robust_hpo.load_dataset("imagefolder", root="folder"),
                        lambda: __import__("robust_hpo.datasets.pretrained", fromlist=["x"]).extract_features(
                            np.zeros((1, 3, 8, 8), np.float32), cache_dir="cache")):
            try:
                attempt()
            except MissingDependencyError as exc:
                print("MISSING", exc)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, env=env,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert "TORCH-FREE []" in lines, result.stdout[-3000:]
    (mlp,) = [line for line in lines if line.startswith("MLP ")]
    assert mlp.startswith("MLP 2 robust-hpo: error: learner 'mlp' needs the module 'torch'") and "robust_hpo[torch]" in mlp, mlp
    assert "Traceback" not in mlp
    missing = [line for line in lines if line.startswith("MISSING ")]
    assert len(missing) == 3, result.stdout[-3000:]
    assert all("pip install 'robust_hpo[torch]'" in line for line in missing), missing
    assert "network slopes" in missing[0] and "dataset 'imagefolder'" in missing[1] and "pretrained" in missing[2]
