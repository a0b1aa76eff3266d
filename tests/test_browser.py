"""What a user opens, in a real browser: every HTML file the quickstart and its analyses write, and the
dashboard's study page, rendered by headless Chromium. A page fails when its screenshot is blank (one
colour almost everywhere) or the browser logs a JavaScript error.

Skipped (with the reason) when no Chromium is installed; `.ci/run` installs Debian's ``chromium``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from robust_hpo.dashboard import dashboard_server
from robust_hpo.study import StorageSpec
from robust_hpo.testing import serving

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "studies" / "quickstart.toml"
CHROMIUM = next((found for name in ("chromium", "chromium-browser", "google-chrome", "chrome")
                 if (found := shutil.which(name))), None)

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on PATH (Debian: apt-get install chromium)")]

ANALYSES = (
    ["report"],
    ["curves", "--betas", "0", "0.01", "0.1", "1"],
    ["deviation", "--betas", "0", "0.01", "0.1", "1"],
    ["explain"],
    ["verify", "--trials", "all"],
    ["heatmap"],
)
"""The README's analysis chain after ``run`` (small β grids; every command's own figures)."""

CONSOLE = re.compile(r':INFO:CONSOLE[^\]]*\] "(?P<message>.*)", source: (?P<source>.*)$')


def _browse(url: str, png: Path, *, budget_ms: int = 8000, height: int = 900, dom: bool = False
            ) -> tuple[list[str], str]:
    """Screenshot ``url`` into ``png``; returns the page's console messages (and its text if asked)."""
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--hide-scrollbars", "--no-first-run", "--enable-logging=stderr", "--v=0",
             f"--virtual-time-budget={budget_ms}", f"--window-size=1280,{height}",
             f"--user-data-dir={png.parent / ('profile-' + png.stem)}"]
    shot = subprocess.run([*flags, f"--screenshot={png}", url], capture_output=True, text=True, timeout=180)
    assert png.is_file(), f"Chromium wrote no screenshot of {url}: {shot.stderr[-2000:]}"
    messages = [m.group("message") + " @ " + m.group("source")
                for m in map(CONSOLE.search, shot.stderr.splitlines()) if m]
    text = ""
    if dom:
        page = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=180).stdout
        page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.DOTALL)
        text = " ".join(re.sub(r"<[^>]+>", " ", page).split())
    return messages, text


def _blank_reason(png: Path) -> str | None:
    """Why the screenshot counts as blank (None if it shows something)."""
    from PIL import Image

    with Image.open(png) as image:
        pixels = image.convert("RGB").resize((320, 225))
    colours = pixels.getcolors(maxcolors=320 * 225)
    count, dominant = max(colours)
    other = 1.0 - count / (320 * 225)
    if other < 0.02 or len(colours) < 8:
        return f"{other:.1%} of the pixels differ from the dominant colour {dominant}; {len(colours)} colours"
    return None


def _errors(messages: list[str]) -> list[str]:
    return [m for m in messages if re.search(r"Uncaught|Error|error|Failed|failed", m)]


def test_the_checks_catch_a_blank_page_and_a_script_error(tmp_path: Path) -> None:
    """The two failure conditions, on pages made to trip them (else the checks below could not fail)."""
    pytest.importorskip("PIL", reason="Pillow reads the screenshots ([dev] installs it)")
    broken = tmp_path / "broken.html"
    broken.write_text("<html><body><h1>A title</h1><script>notDefinedAnywhere();</script></body></html>")
    messages, _ = _browse(broken.as_uri(), tmp_path / "broken.png", budget_ms=2000)
    assert any("notDefinedAnywhere" in m for m in _errors(messages)), messages
    assert _blank_reason(tmp_path / "broken.png") is not None  # a lone heading on white counts as blank
    drawn = tmp_path / "drawn.html"
    drawn.write_text("<html><body>" + "".join(
        f'<div style="height:40px;background:hsl({h},70%,50%)"></div>' for h in range(0, 360, 20)) + "</body></html>")
    messages, _ = _browse(drawn.as_uri(), tmp_path / "drawn.png", budget_ms=2000)
    assert not _errors(messages) and _blank_reason(tmp_path / "drawn.png") is None


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The quickstart run and analysed as the README says (small β grids), in a temporary folder."""
    pytest.importorskip("PIL", reason="Pillow reads the screenshots ([dev] installs it)")
    out = tmp_path_factory.mktemp("browser") / "quickstart"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    where = ["--storage", str(out / "study.log"), "--output", str(out)]
    for command in (["run", "--n-trials", "30", "--no-progress"], *ANALYSES):
        subprocess.run([sys.executable, "-m", "robust_hpo.cli", command[0], str(QUICKSTART), *where, *command[1:]],
                       check=True, capture_output=True, text=True, env=env, cwd=out.parent, timeout=600)
    return out


def _pages(out: Path) -> list[Path]:
    return sorted(out.glob("*.html"))


def test_every_written_page_renders_without_errors(quickstart: Path) -> None:
    pages = _pages(quickstart)
    expected = {"pareto.html", "curves.html", "deviation.html", "explain_maps.html", "explain_influence.html",
                "verification.html"}
    assert expected <= {p.name for p in pages}, sorted(p.name for p in pages)
    problems = []
    for page in pages:
        png = quickstart.parent / "shots" / f"{page.stem}.png"
        png.parent.mkdir(exist_ok=True)
        messages, _ = _browse(page.as_uri(), png)
        errors = _errors(messages)
        if errors:
            problems.append(f"{page.name}: JavaScript errors: {errors}")
        blank = _blank_reason(png)
        if blank:
            problems.append(f"{page.name}: blank screenshot ({blank}): {png}")
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="module")
def dashboard_url(quickstart: Path) -> Iterator[str]:
    with serving(dashboard_server(StorageSpec(journal=quickstart / "study.log").open(), port=0)) as url:
        yield url


def test_dashboard_shows_the_feasible_front_and_the_recommendation(dashboard_url: str, quickstart: Path) -> None:
    """The study page's Best Trials card lists exactly the feasible front; the Note page the recommendation."""
    with urllib.request.urlopen(f"{dashboard_url}/api/studies", timeout=60) as response:
        (summary,) = json.load(response)["study_summaries"]
    report = subprocess.run([sys.executable, "-m", "robust_hpo.cli", "report", str(QUICKSTART), "--storage",
                             str(quickstart / "study.log"), "--output", str(quickstart)], check=True,
                            capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=quickstart).stdout
    table = report.split("Pareto front", 1)[1].split("Candidates (", 1)[0].split("Recommended:", 1)[0]
    front = [int(n) for n in re.findall(r"^\s*(\d+)\s+learner=", table, re.MULTILINE)]
    recommended = re.search(r"^Recommended: trial (\d+)", report, re.MULTILINE).group(1)
    study_url = f"{dashboard_url}/dashboard/studies/{summary['study_id']}"
    shots = quickstart.parent / "shots"
    shots.mkdir(exist_ok=True)
    problems = []
    for name, url, height in (("dashboard", study_url, 2600), ("dashboard_note", f"{study_url}/note", 900)):
        messages, text = _browse(url, shots / f"{name}.png", budget_ms=15000, height=height, dom=True)
        if _errors(messages):
            problems.append(f"{name}: JavaScript errors: {_errors(messages)}")
        blank = _blank_reason(shots / f"{name}.png")
        if blank:
            problems.append(f"{name}: blank screenshot ({blank})")
        if name == "dashboard":
            card = text.split("Best Trials", 1)[-1].split("Study User Attributes", 1)[0]
            shown = [int(n) for n in re.findall(r"Trial (\d+)", card)]
            if shown != front:
                problems.append(f"Best Trials card shows {shown}; `report` prints the front {front}")
        elif f"Recommended: trial {recommended} (" not in text:
            problems.append(f"the Note page does not show 'Recommended: trial {recommended}': {text[:1500]}")
    assert not problems, "\n".join(problems)
