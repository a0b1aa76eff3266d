"""What `pip install .` resolves without extras vs with `[dev]`: packages, whether torch comes, wheel bytes.

Run from the repository root (needs the package index pip is configured for)::

    python benchmarks/install_footprint.py

A throw-away venv runs ``pip install --dry-run --ignore-installed --report`` for ``.`` and ``.[dev]``.
Wheel sizes: local files (``find-links``/file indexes) are measured where they lie; the others are
fetched with ``pip download --no-deps`` into a temporary folder and measured there (here ~75 MB:
the big torch/CUDA wheels come from the machine's local wheel folder).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import urllib.parse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _resolve(pip: Path, target: str, report: Path) -> list[dict]:
    subprocess.run([str(pip), "install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report),
                    target], cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return [i for i in json.loads(report.read_text())["install"] if i["metadata"]["name"] != "robust_hpo"]


def _sizes(pip: Path, items: list[dict], folder: Path) -> dict[str, int]:
    sizes, remote = {}, []
    for item in items:
        name, url = item["metadata"]["name"], item["download_info"]["url"]
        if url.startswith("file://"):
            sizes[name] = Path(urllib.parse.unquote(url[len("file://"):])).stat().st_size
        else:
            remote.append((name, item["metadata"]["version"], url.rsplit("/", 1)[-1]))
    if remote:
        subprocess.run([str(pip), "download", "--no-deps", "--quiet", "-d", str(folder),
                        *[f"{n}=={v}" for n, v, _ in remote]], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        for name, _, file in remote:
            sizes[name] = (folder / urllib.parse.unquote(file)).stat().st_size
    return sizes


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True)
        pip = tmp_path / "venv" / "bin" / "pip"
        print(f"{'install':<22} {'packages':>8} {'torch':>6} {'nvidia/cuda':>11} {'wheels MB':>10}  largest")
        for label, target in (("pip install .", "."), ("pip install '.[dev]'", ".[dev]")):
            items = _resolve(pip, target, tmp_path / "report.json")
            sizes = _sizes(pip, items, tmp_path / "wheels")
            names = [i["metadata"]["name"].lower() for i in items]
            cuda = sum(n.startswith(("nvidia", "cuda")) for n in names)
            largest = ", ".join(f"{n} {s / 1e6:.0f}" for n, s in sorted(sizes.items(), key=lambda x: -x[1])[:4])
            print(f"{label:<22} {len(items):>8} {'yes' if 'torch' in names else 'no':>6} {cuda:>11} "
                  f"{sum(sizes.values()) / 1e6:>10.0f}  {largest}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    raise SystemExit(main())
