"""What a user opens, in a real browser: every HTML file the quickstart and its analyses write, and the
dashboard's study page, rendered by headless Chromium. A page fails when its screenshot is blank (one
colour almost everywhere) or the browser logs a JavaScript error. The index page must state the answer
`report` prints, and the figures must agree with it and with each other (the same recommended trial and
numbers, one colour per learner); the dashboard's study home must open with the recommendation.

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


def _report(out: Path) -> str:
    return subprocess.run([sys.executable, "-m", "robust_hpo.cli", "report", str(QUICKSTART), "--storage",
                           str(out / "study.log"), "--output", str(out)], check=True, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=out).stdout


def _figure(page: Path) -> tuple[list[dict], dict]:
    """The (data, layout) plotly.js draws on ``page`` (the arguments of its ``Plotly.newPlot`` call)."""
    text = page.read_text(encoding="utf-8")
    start = text.index("Plotly.newPlot(")
    decoder = json.JSONDecoder()
    _, at = decoder.raw_decode(text, text.index('"', start))  # the div id
    data, at = decoder.raw_decode(text, text.index("[", at))
    layout, _ = decoder.raw_decode(text, text.index("{", at))
    return data, layout


def test_the_index_page_opens_with_the_answer_report_prints(quickstart: Path) -> None:
    report = _report(quickstart)
    summary = json.loads((quickstart / "summary.json").read_text())
    recommended, best = summary["recommended"], summary["most_accurate"]
    lines = [line for line in report.splitlines() if line.startswith(("Recommended: ", "Most accurate: ", "Rule: "))]
    assert [line.split(":", 1)[0] for line in lines] == ["Recommended", "Most accurate", "Rule"]
    assert lines[0].startswith(f"Recommended: trial {recommended['number']} (")
    shots = quickstart.parent / "shots"
    shots.mkdir(exist_ok=True)
    messages, text = _browse((quickstart / "index.html").as_uri(), shots / "index.png", dom=True)
    assert not _errors(messages) and _blank_reason(shots / "index.png") is None
    answer = text.split("Answer", 1)[1].split("Figures, in reading order", 1)[0]  # the answer comes first
    assert f"Deploy trial {recommended['number']} :" in answer
    estimate = f"{recommended['predicted_backdoor_accuracy']:.2f}"
    assert re.search(rf"recommended trial {recommended['number']} \S+ .*? {recommended['clean_accuracy']:.3f} "
                     rf"{estimate} ", answer), answer
    if best["number"] != recommended["number"]:
        assert re.search(rf"most accurate trial {best['number']} \S+ .*? {best['clean_accuracy']:.3f} "
                         rf"{best['predicted_backdoor_accuracy']:.2f} ", answer), answer
    assert lines[2] in answer  # the same one-sentence rule as `report`
    assert ("Warning:" in answer) is (recommended["predicted_backdoor_accuracy"] >= 0.5
                                      if "vulnerable" not in recommended else recommended["vulnerable"])
    figures = re.findall(r"(\S+\.html) ", text.split("Figures, in reading order", 1)[1])
    assert figures[:2] == ["pareto.html", "verification.html"], figures


def test_the_figures_agree_with_the_answer_and_with_each_other(quickstart: Path) -> None:
    """The Pareto figure rings and annotates the recommended trial with summary.json's numbers; a learner
    has one colour in pareto.html, verification.html and its C-only chart."""
    from robust_hpo.plots import learner_color

    summary = json.loads((quickstart / "summary.json").read_text())
    recommended = summary["recommended"]
    data, layout = _figure(quickstart / "pareto.html")
    rings = [t for t in data if t.get("name") == f"recommended: trial {recommended['number']}"]
    assert len(rings) == 2  # ringed in both panels ...
    right = next(t for t in rings if t.get("xaxis") == "x2")
    assert right["x"] == [recommended["clean_accuracy"]] and right["y"] == [recommended["predicted_backdoor_accuracy"]]
    front = next(t for t in data if str(t.get("name", "")).startswith("front on estimated backdoor accuracy"))
    assert (right["x"][0], right["y"][0]) in set(zip(front["x"], front["y"], strict=True))  # ... on that front
    notes = [a.get("text", "") for a in layout["annotations"]]
    assert any(n.startswith(f"<b>recommended: trial {recommended['number']}</b>")
               and f"<b>{recommended['predicted_backdoor_accuracy']:.2f}</b>" in n for n in notes), notes
    best = summary["most_accurate"]
    if best["number"] != recommended["number"]:
        assert any(n.startswith(f"<b>most accurate: trial {best['number']}</b>")
                   and f"<b>{best['predicted_backdoor_accuracy']:.2f}</b>" in n for n in notes), notes
    colours: dict[str, set[str]] = {}
    for t in data:
        if str(t.get("name", "")).endswith(" (dominated)"):
            colours.setdefault(t["name"].split(" ")[0], set()).add(t["marker"]["color"])
    verification, _ = _figure(quickstart / "verification.html")
    for t in verification:
        if "(Spearman" in str(t.get("name", "")):
            colours.setdefault(t["name"].split(" ")[0], set()).add(t["marker"]["color"])
    for page in quickstart.glob("heatmap_*.html"):
        for t in _figure(page)[0]:
            if t.get("name") == "backdoor learning slope (clean model)":
                colours.setdefault(page.stem.removeprefix("heatmap_"), set()).add(t["line"]["color"])
    assert len(colours) >= 3 and all(found == {learner_color(name)} for name, found in colours.items()), colours
    # log axes say whole numbers: no bare "2" or "5" between decades
    for page in ("pareto.html", "verification.html", "heatmap_linear_svm.html"):
        _, layout = _figure(quickstart / page)
        for name, axis in layout.items():
            if name.startswith(("xaxis", "yaxis")) and axis.get("type") == "log":
                assert all(float(label) == value for label, value in
                           zip(axis["ticktext"], axis["tickvals"], strict=True)), (page, name, axis["ticktext"])


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
    report = _report(quickstart)
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
            # the home opens with the recommendation and the feasible front, before optuna-dashboard's plots
            if not (0 <= text.find(f"Deploy trial {recommended} :") < text.find("Log y scale")):
                problems.append(f"the study home does not open with 'Deploy trial {recommended}': {text[:1500]}")
            shown = [int(n) for n in re.findall(r"trial (\d+) \w+ \w+=", text.split("the feasible Pareto front", 1)[-1]
                                                .split("Log y scale", 1)[0])]
            if shown != front:
                problems.append(f"the home card's front is {shown}; `report` prints {front}")
            card = text.split("Log y scale", 1)[-1].split("Best Trials", 1)[-1].split("Study User Attributes", 1)[0]
            shown = [int(n) for n in re.findall(r"Trial (\d+)", card)]
            if shown != front:
                problems.append(f"Best Trials card shows {shown}; `report` prints the front {front}")
        elif f"Recommended: trial {recommended} (" not in text:
            problems.append(f"the Note page does not show 'Recommended: trial {recommended}': {text[:1500]}")
    assert not problems, "\n".join(problems)
