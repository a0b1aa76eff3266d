"""`robust-hpo run` on hostile or impossible input (issue 12): refused up front, one line naming the
file and key, and nothing written — no output folder, no storage, no foreign file touched."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import optuna
import pytest

from robust_hpo.cli import main
from robust_hpo.study import StorageSpec
from robust_hpo.testing import FakeFamily, tiny_study_toml

SMALL = tiny_study_toml('hostile', n_trials=2)


def _write(tmp_path: Path, text: str = SMALL) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _run(study: Path, out: Path, *extra: str) -> int:
    return main(["run", str(study), "--output", str(out), "--no-progress", *extra])


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("robust-hpo: error: "), err
    return err


# ------------------------------------------------------------------ validation up front (item 5)

class _PairsOnly(FakeFamily):
    binary_only = True  # a family of one's own that takes two classes (the convex ones take any number)


@pytest.fixture
def pairs_only(monkeypatch: pytest.MonkeyPatch) -> str:
    from robust_hpo import learners

    monkeypatch.setitem(learners._USER, "pairs_only", _PairsOnly("pairs_only"))
    return "pairs_only"


@pytest.mark.parametrize(("edit", "message"), [
    (("classes = [3, 8]", "classes = [3, 8, 5]"),
     r"data\.classes must name exactly two classes for the learners \[.pairs_only.\].*got \[3, 8, 5\]"),
    (("classes = [3, 8]\n", ""),
     r"data\.classes must name two classes for the learners \['pairs_only'\].*'digits' has 10 classes"),
])
def test_impossible_class_counts_are_refused_before_any_storage(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: tuple[str, str], message: str,
        pairs_only: str) -> None:
    text = SMALL.replace('learners = ["logistic", "ridge"]', f'learners = ["{pairs_only}"]')
    study, out = _write(tmp_path, text.replace(*edit)), tmp_path / "out"
    assert _run(study, out) == 2
    err = _one_error_line(capsys)
    assert str(study) in err and re.search(message, err), err
    assert not out.exists()


@pytest.mark.parametrize(("extra", "key"), [
    ('\n[search.logistic]\nC = ["a", "b"]\n', r"search\.logistic\.C"),
    ('\n[search.ridge]\nalpha = [true, false]\n', r"search\.ridge\.alpha"),
    ('\n[search.logistic]\nC = [0.1, "x"]\n', r"search\.logistic\.C"),
])
def test_wrong_types_in_ranges_name_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            extra: str, key: str) -> None:
    study, out = _write(tmp_path, SMALL + extra), tmp_path / "out"
    assert _run(study, out) == 2
    err = _one_error_line(capsys)
    assert str(study) in err and re.search(key, err), err
    assert not out.exists()


@pytest.mark.parametrize(("edit", "key"), [
    (("seed = 0\n\n[data]", "seed = 4294967296\n\n[data]"), r"study\.seed"),
    (("n_test = 30", "n_test = 30\nseed = 18446744073709551615"), r"data\.seed"),
    (("size = 2", "size = 2\nseed = 4294967296"), r"attack\.seed"),
])
def test_seed_beyond_numpy_range_names_the_key_and_leaves_no_study(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: tuple[str, str], key: str) -> None:
    text = SMALL.replace(*edit)
    assert text != SMALL
    study, out = _write(tmp_path, text), tmp_path / "out"
    assert _run(study, out) == 2
    err = _one_error_line(capsys)
    assert str(study) in err and re.search(key, err) and "4294967295" in err, err
    assert not out.exists()


def test_seed_flag_beyond_numpy_range(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study, out = _write(tmp_path), tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        _run(study, out, "--seed", str(2**32))
    assert info.value.code == 2
    assert "--seed" in capsys.readouterr().err and not out.exists()


def test_non_utf8_study_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study, out = tmp_path / "latin1.toml", tmp_path / "out"
    study.write_bytes(SMALL.replace('"hostile"', '"caf\xe9"').encode("latin-1"))
    assert _run(study, out) == 2
    err = _one_error_line(capsys)
    assert str(study) in err and "UTF-8" in err, err
    assert not out.exists()


# ------------------------------------------------------------------ foreign storages (item 4)

def _sqlite_file(path: Path) -> Path:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (x)")
    return path


@pytest.mark.parametrize("kind", ["text", "empty", "json-lines", "sqlite", "directory", "binary"])
def test_storage_that_is_not_a_journal_is_refused_byte_identical(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    target = tmp_path / "victim"
    if kind == "text":
        target.write_text("root:x:0:0:root:/root:/bin/bash\n")
    elif kind == "empty":
        target.write_bytes(b"")
    elif kind == "json-lines":
        target.write_text('{"event": "login", "user": "bob"}\n')
    elif kind == "sqlite":
        _sqlite_file(target)
    elif kind == "directory":
        target.mkdir()
        (target / "keep.txt").write_text("keep")
    else:
        target.write_bytes(bytes(range(256)) * 4)
    before = {p: p.read_bytes() for p in [target, *target.rglob("*")] if p.is_file()}
    listing = sorted(tmp_path.rglob("*"))
    study, out = _write(tmp_path), tmp_path / "out"
    listing.append(study)
    assert _run(study, out, "--storage", str(target)) == 2
    err = _one_error_line(capsys)
    assert str(target) in err and "nothing was written" in err, err
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(tmp_path.rglob("*")) == sorted(listing)  # no lock file, no output folder


def test_real_journal_is_accepted_and_resumed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    journal = tmp_path / "shared.log"
    study = _write(tmp_path)
    assert _run(study, tmp_path / "out", "--storage", str(journal)) == 0
    assert _run(study, tmp_path / "out", "--storage", str(journal)) == 0
    capsys.readouterr()
    assert len(optuna.load_study(study_name="hostile", storage=StorageSpec(journal=journal).open()).trials) == 4


@pytest.mark.parametrize("how", ["no-problem", "other-tool"])
def test_study_not_created_by_robust_hpo_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    how: str) -> None:
    journal = tmp_path / "j.log"
    foreign = optuna.create_study(study_name="hostile", storage=StorageSpec(journal=journal).open(),
                                  directions=["maximize", "minimize"])
    foreign.optimize(lambda t: (t.suggest_float("x", 0, 1), 0.5), n_trials=2)
    if how == "other-tool":
        foreign.set_user_attr("robust_hpo:problem", "made by something else")
    size = journal.stat().st_size
    study = _write(tmp_path)
    assert _run(study, tmp_path / "out", "--storage", str(journal)) == 2
    err = _one_error_line(capsys)
    assert "was not created by robust_hpo" in err and "hostile" in err and "--study-name" in err, err
    assert journal.stat().st_size == size


# ------------------------------------------------------------------ passwords

@pytest.mark.parametrize("url", [
    "postgresql://bob:S3CRET-pw@127.0.0.1:1/db",
    "postgresql://bob@127.0.0.1:1/db?password=S3CRET-pw",
    "postgresql://127.0.0.1:1/db?user=bob&password=S3CRET-pw&sslmode=disable",
    "host=127.0.0.1 port=1 user=bob password=S3CRET-pw dbname=db",
    "host=127.0.0.1 password='S3CRET-pw' dbname=db",
])
def test_passwords_never_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str) -> None:
    study = _write(tmp_path)
    for argv in (["run", str(study), "--storage", url, "--no-progress", "--output", str(tmp_path / "o")],
                 ["report", "--storage", url], ["dashboard", "--storage", url, "--port", "1"]):
        code = main(argv)
        captured = capsys.readouterr()
        assert code == 2
        assert "S3CRET" not in captured.out + captured.err, captured
        assert "***" in captured.err or "password" not in captured.err.lower(), captured.err


def test_dashboard_hint_masks_the_password(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The hint printed after a run repeats --storage: masked (a real PostgreSQL run is in test_storage)."""
    from robust_hpo.cli import _study

    url = "postgresql://bob:S3CRET-pw@db.example/hpo?password=S3CRET-pw"
    study = _write(tmp_path)
    real_run = _study.run_study

    def run_on_journal(config, **kwargs):  # the same run, on a journal: only the printing is under test
        kwargs["storage"] = str(tmp_path / "j.log")
        return real_run(config, **kwargs)

    monkeypatch.setattr(_study, "run_study", run_on_journal)
    assert main(["run", str(study), "--storage", url, "--no-progress", "--output", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "Dashboard:" in out and "S3CRET" not in out and "bob:***@db.example" in out, out


# ------------------------------------------------------------------ output folder

def test_unwritable_output_is_reported_before_trials(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    study = _write(tmp_path)
    db = tmp_path / "s.db"
    for storage in ([], ["--storage", f"sqlite:///{db}"]):
        assert _run(study, blocker / "out", *storage) == 2
        err = _one_error_line(capsys)
        assert str(blocker / "out") in err and "--output" in err, err
    assert not db.exists() or not optuna.get_all_study_names(f"sqlite:///{db}")


# ------------------------------------------------------------------ Ctrl-C

@pytest.mark.parametrize("where", ["config", "objective", "tell", "report"])
def test_ctrl_c_anywhere_exits_130_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    import optuna.study._optimize as optimize

    from robust_hpo.cli import _study

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    if where == "config":
        monkeypatch.setattr(_study, "load_study_config", interrupt)
    elif where == "objective":
        monkeypatch.setattr("robust_hpo.objective.BackdoorSlopeObjective.__call__", interrupt)
    elif where == "tell":  # inside Optuna's tell: its `finally` then fails with UnboundLocalError
        monkeypatch.setattr(optimize, "_tell_with_warning", interrupt)
    else:
        monkeypatch.setattr(_study, "report_study", interrupt)
    assert _run(_write(tmp_path), tmp_path / "out") == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("robust-hpo: interrupted"), err
