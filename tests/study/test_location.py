"""Where studies live and where their outputs go: confined study names, one folder per storage, ``--output``
with one meaning in every command, absolute printed paths, atomic output files and an index page."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from robust_hpo._files import atomic_open, atomic_write_text
from robust_hpo.cli import main
from robust_hpo.errors import ValidationError
from robust_hpo.study import (
    OUTPUT_ROOT_ENV,
    StorageSpec,
    check_study_name,
    load_study_config,
    locate,
    locate_storage,
    storage_folder_name,
)
from robust_hpo.study import output_root as current_output_root
from robust_hpo.testing import tiny_study_toml

SMALL = tiny_study_toml('loc', n_trials=3)


def _study_file(tmp_path: Path, text: str = SMALL) -> Path:
    path = tmp_path / "loc.toml"
    path.write_text(text)
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_output_root_comes_from_the_environment(output_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert current_output_root() == output_root
    monkeypatch.delenv(OUTPUT_ROOT_ENV)
    assert current_output_root() == Path.cwd() / "robust_hpo_output"


@pytest.mark.parametrize("name", ["../x", "../../etc", "/abs/dir", "a/b", "a\\b", "..", ".", "x\ny", "", "a" * 129])
def test_study_names_that_would_leave_the_root_are_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="study name|cannot name an output folder"):
        check_study_name(name)


@pytest.mark.parametrize("name", ["quickstart", "paper_mnist_7-1", "run 2 (C grid)"])
def test_plain_study_names_are_accepted(name: str) -> None:
    assert check_study_name(name) == name


def test_default_storage_and_output_folders(tmp_path: Path, output_root: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_study_config(_study_file(tmp_path))
    home = locate(config)
    assert home.output == output_root / "loc" and home.storage.journal == output_root / "loc" / "study.log"
    # --output moves the files only, never the storage
    moved = locate(config, output=tmp_path / "elsewhere")
    assert moved.output == tmp_path / "elsewhere" and moved.storage == home.storage
    # the same journal named explicitly (relative or absolute) is the home folder
    monkeypatch.chdir(tmp_path)
    assert locate(config, storage=str((output_root / "loc" / "study.log").relative_to(tmp_path))).output == home.output
    # another storage: a sub-folder of its own, one per location, no password in its name
    one = locate(config, storage=f"sqlite:///{tmp_path / 'one.db'}")
    two = locate(config, storage=f"sqlite:///{tmp_path / 'two.db'}")
    pg = locate(config, storage="postgresql://bob:S3CRET@db.example:5432/studies")
    assert one.output.parent == two.output.parent == pg.output.parent == home.output
    assert len({one.output, two.output, pg.output, home.output}) == 4
    assert one.output.name.startswith("sqlite-one.db-") and pg.output.name.startswith("postgresql-studies-")
    assert "S3CRET" not in str(pg.output)
    assert storage_folder_name(StorageSpec(url="postgresql://bob:OTHER@db.example:5432/studies")) == pg.output.name


def test_a_bad_study_name_writes_nothing(tmp_path: Path, output_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    escape = tmp_path / "escaped"
    bad = _study_file(tmp_path, SMALL.replace('name = "loc"', f'name = "{escape}"'))
    assert main(["run", str(bad), "--no-progress"]) == 2
    assert "cannot name an output folder" in capsys.readouterr().err
    assert main(["run", str(_study_file(tmp_path)), "--study-name", "../../x", "--no-progress"]) == 2
    assert "--study-name '../../x' cannot name an output folder" in capsys.readouterr().err
    assert not escape.exists() and not output_root.exists() and not (tmp_path.parent / "x").exists()


def test_a_stored_study_with_a_bad_name_needs_output(tmp_path: Path) -> None:
    import optuna

    journal = tmp_path / "foreign.log"
    optuna.create_study(study_name="a/b", storage=StorageSpec(journal=journal).open())
    with pytest.raises(ValidationError, match="the stored study's name 'a/b' cannot name an output folder"):
        locate_storage(str(journal))
    assert locate_storage(str(journal), output=tmp_path / "out").output == tmp_path / "out"


def test_storages_never_overwrite_each_others_files(tmp_path: Path, output_root: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    study_file = _study_file(tmp_path)
    home = output_root / "loc"
    assert main(["run", str(study_file), "--no-progress"]) == 0
    before = {name: _digest(home / name) for name in ("pareto.html", "trials.csv", "index.html")}
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert main(["run", str(study_file), "--storage", url, "--no-progress", "--n-trials", "2"]) == 0
    stdout = capsys.readouterr().out
    assert before == {name: _digest(home / name) for name in before}  # the journal study's files are untouched
    (sub,) = [p for p in home.iterdir() if p.is_dir()]
    assert sub.name.startswith("sqlite-x.db-") and (sub / "pareto.html").is_file() and (sub / "index.html").is_file()
    assert f"Pareto plot: {sub / 'pareto.html'}" in stdout
    assert main(["report", "--storage", url]) == 0  # the storage alone finds the same folder
    assert f"Pareto plot: {sub / 'pareto.html'}" in capsys.readouterr().out


def test_output_means_the_same_in_every_command(tmp_path: Path, output_root: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    study_file = _study_file(tmp_path)
    out = tmp_path / "OUT"
    assert main(["run", str(study_file), "--output", str(out), "--no-progress"]) == 0
    assert (output_root / "loc" / "study.log").is_file() and not (out / "study.log").exists()
    assert (out / "pareto.html").is_file() and (out / "index.html").is_file()
    # the example: analysis with --output finds the study where it lives and writes into OUT
    other = tmp_path / "OTHER"
    assert main(["curves", str(study_file), "--output", str(other), "--betas", "0", "1"]) == 0
    stdout = capsys.readouterr().out
    assert f"wrote {other / 'curves.html'}" in stdout and (other / "index.html").is_file()
    assert main(["report", str(study_file), "--output", str(other)]) == 0
    index = (other / "index.html").read_text()
    assert 'href="curves.html"' in index and 'href="pareto.html"' in index and 'href="trials.csv"' in index


def test_flag_mode_writes_to_a_folder_named_for_what_it_analysed(output_root: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--n-train", "80", "--n-test", "30", "--size", "2", "--betas", "0", "1"]
    assert main(["curves", "--learner", "ridge", "--C", "1", *common]) == 0
    assert main(["curves", "--learner", "ridge", "--C", "1", "--classes", "1", "7", *common]) == 0
    folders = sorted(p.name for p in (output_root / "analysis").iterdir())
    assert folders == ["digits-1-7-n80-30-s0_badnets-2px-bottom-right-10pc-s0",
                       "digits-3-8-n80-30-s0_badnets-2px-bottom-right-10pc-s0"]
    for folder in folders:
        assert (output_root / "analysis" / folder / "curves_ridge_C-1.html").is_file()
    assert str(output_root / "analysis" / folders[0] / "curves_ridge_C-1.html") in capsys.readouterr().out


def test_atomic_writes_leave_the_old_file_when_interrupted(tmp_path: Path) -> None:
    path = atomic_write_text(tmp_path / "table.csv", "old,complete\n")
    with pytest.raises(KeyboardInterrupt), atomic_open(path, "w") as handle:
        handle.write("new,cut")
        raise KeyboardInterrupt
    assert path.read_text() == "old,complete\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]  # no temporary file left
    atomic_write_text(path, "new\n")
    assert path.read_text() == "new\n"


def test_a_report_killed_mid_csv_keeps_the_previous_files(tmp_path: Path, output_root: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import csv

    study_file = _study_file(tmp_path)
    assert main(["run", str(study_file), "--no-progress"]) == 0
    home = output_root / "loc"
    before = (home / "trials.csv").read_text()
    real_writer = csv.writer

    class Dying:
        def __init__(self, handle):
            self.inner, self.rows = real_writer(handle), 0

        def writerow(self, row):
            self.rows += 1
            if self.rows == 3:
                raise KeyboardInterrupt  # as a kill between rows would
            self.inner.writerow(row)

    monkeypatch.setattr(csv, "writer", Dying)
    assert main(["report", str(study_file)]) == 130
    assert (home / "trials.csv").read_text() == before
    assert not [p for p in home.iterdir() if p.name.startswith(".")]
