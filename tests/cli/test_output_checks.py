"""Every command checks its output folder before any work: a file in the way, or a folder that
refuses writes (read-only, full), is one line naming it, exit 2, no traceback, nothing computed."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pytest

from robust_hpo.cli import main
from robust_hpo.testing import tiny_study_toml


@pytest.fixture(scope="module")
def small_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("study")
    study = folder / "s.toml"
    study.write_text(tiny_study_toml("outputs", learners=("logistic",), n_trials=2))
    journal = folder / "study.log"
    assert main(["run", str(study), "--storage", str(journal), "--no-progress", "--output", str(folder / "out")]) == 0
    return study, journal


COMMANDS = ["run", "report", "curves", "deviation", "explain", "verify", "heatmap"]


@pytest.mark.parametrize("command", COMMANDS)
def test_an_output_that_is_a_file_is_one_line(command: str, small_study: tuple[Path, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    study, journal = small_study
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    capsys.readouterr()
    assert main([command, str(study), "--storage", str(journal), "--output", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err
    assert err == (f"robust-hpo: error: output folder {blocker / 'sub'} cannot be used: its parent {blocker} is a "
                   "file, not a folder; choose another with --output\n")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_folder_that_refuses_writes_is_one_line(command: str, small_study: tuple[Path, Path], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    study, journal = small_study
    out = tmp_path / "full"
    mkstemp = tempfile.mkstemp

    def full(*args: object, **kwargs: object) -> tuple[int, str]:  # a full (or read-only) disk at out
        if Path(str(kwargs.get("dir", ""))).is_relative_to(tmp_path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return mkstemp(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tempfile, "mkstemp", full)
    capsys.readouterr()
    assert main([command, str(study), "--storage", str(journal), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"robust-hpo: error: output folder {out} is not writable: No space left on device")
    assert len(err.splitlines()) == 1 and not out.exists()


def test_a_write_failing_later_is_one_line(small_study: tuple[Path, Path], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A disk that fills after the check: the failed write is one line naming the file."""
    study, journal = small_study
    import robust_hpo.study._report as report

    def no_space(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "out" / "trials.csv"))

    monkeypatch.setattr(report, "write_trials_csv", no_space)
    capsys.readouterr()
    assert main(["report", str(study), "--storage", str(journal), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err == f"robust-hpo: error: cannot write or read {tmp_path / 'out' / 'trials.csv'}: No space left on device\n"
