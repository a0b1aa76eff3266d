"""Storage resolution: journal files, SQLite, PostgreSQL (the throwaway server of conftest.py when installed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage, RDBStorage

from robust_hpo.errors import RobustHPOError
from robust_hpo.study import ProcessIdentity, StorageSpec, trial_owner
from robust_hpo.study._orphans import OwnedCachedStorage
from robust_hpo.study._storage import postgres_driver_url

REPO = Path(__file__).resolve().parents[2]


def test_parse_forms(tmp_path: Path) -> None:
    default = tmp_path / "out" / "study.log"
    assert StorageSpec.parse(None, default_journal=default) == StorageSpec(journal=default)
    assert StorageSpec.parse("runs/j.log", default_journal=default) == StorageSpec(journal=Path("runs/j.log"))
    assert StorageSpec.parse("sqlite:///x.db", default_journal=default) == StorageSpec(url="sqlite:///x.db")
    with pytest.raises(ValueError, match="storage must be a URL or a journal file path"):
        StorageSpec.parse("  ", default_journal=default)
    with pytest.raises(ValueError, match="redis journals are not supported"):
        StorageSpec.parse("redis://localhost", default_journal=default)
    with pytest.raises(ValueError, match="give exactly one of url or journal"):
        StorageSpec()


def test_journal_file_is_created_with_its_folder_and_readable_by_optuna(tmp_path: Path) -> None:
    spec = StorageSpec(journal=tmp_path / "a" / "b" / "study.log")
    assert not spec.exists()
    storage = spec.open()
    assert isinstance(storage, JournalStorage)
    optuna.create_study(storage=storage, study_name="s")
    assert spec.exists()
    reread = JournalStorage(optuna.storages.journal.JournalFileBackend(str(spec.journal)))
    assert optuna.get_all_study_names(reread) == ["s"]
    assert spec.dashboard_argument() == str(spec.journal)
    assert spec.describe() == f"journal file {spec.journal}"


def test_sqlite_url_and_sqlite_file_given_as_journal(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    storage = StorageSpec(url=f"sqlite:///{db}").open()
    assert isinstance(storage, OwnedCachedStorage) and isinstance(storage._backend, RDBStorage)  # Optuna's cache
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()  # created with its owner in one write
    assert trial_owner(storage.get_trial(trial._trial_id)) == ProcessIdentity.current()
    study.tell(trial, 1.0)
    assert optuna.load_study(study_name="s", storage=RDBStorage(f"sqlite:///{db}")).trials[0].state.name == "COMPLETE"
    with pytest.raises(ValueError, match=f"storage {db} is an SQLite database, not an Optuna journal file; nothing "
                                         f"was written to it. Pass sqlite:///{db}"):
        StorageSpec(journal=db).open()
    with pytest.raises(ValueError, match=f"storage {tmp_path} is a directory"):
        StorageSpec(journal=tmp_path).open()


@pytest.mark.parametrize(("url", "message"), [
    ("nosuchdb://x", r"storage nosuchdb://x cannot be opened"),
    ("mysql://user@localhost/db", r"storage mysql://user@localhost/db: missing database driver 'MySQLdb'"),
    ("sqlite:////nonexistent-dir/x/y.db", r"storage sqlite:////nonexistent-dir/x/y.db cannot be opened"),
])
def test_bad_urls_raise_library_errors(url: str, message: str) -> None:
    pytest.importorskip("sqlalchemy")
    if url.startswith("mysql") and any(_importable(m) for m in ("MySQLdb", "pymysql")):
        pytest.skip("a MySQL driver is installed")
    with pytest.raises(RobustHPOError, match=message):
        StorageSpec(url=url).open()


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_password_is_masked() -> None:
    spec = StorageSpec(url="postgresql://bob:secret@db.example:5432/hpo")
    assert spec.describe() == "postgresql://bob:***@db.example:5432/hpo"
    assert StorageSpec(url="postgresql://bob@db/hpo").describe() == "postgresql://bob@db/hpo"


def test_postgres_driver_url() -> None:
    expected = "postgresql+psycopg2://" if (not _importable("psycopg") and _importable("psycopg2")) else "postgresql://"
    assert postgres_driver_url("postgres://u@h/db") == f"{expected}u@h/db"
    assert postgres_driver_url("postgresql://u@h/db") == f"{expected}u@h/db"
    assert postgres_driver_url("postgresql+psycopg2://u@h/db") == "postgresql+psycopg2://u@h/db"
    assert postgres_driver_url("sqlite:///x.db") == "sqlite:///x.db"


def test_postgres_storage_two_concurrent_workers(postgres_url: str, tmp_path: Path) -> None:
    """Distributed use: two `robust-hpo run` processes add trials to one PostgreSQL study at once."""
    study_file = tmp_path / "pg.toml"
    study_file.write_text(
        '[study]\nname = "pg"\nn_trials = 4\n\n[data]\ndataset = "digits"\nclasses = [3, 8]\n'
        'n_train = 60\nn_test = 30\n\n[attack]\nsize = 2\n\n[search]\nlearners = ["logistic", "ridge"]\n')
    command = [sys.executable, "-m", "robust_hpo.cli", "run", str(study_file), "--storage", postgres_url,
               "--no-progress", "--output", str(tmp_path / "out")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    workers = [subprocess.Popen([*command, "--seed", str(seed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env) for seed in (1, 2)]
    outputs = [worker.communicate(timeout=300) for worker in workers]
    for worker, (stdout, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr
        assert "ran 4 trials" in stdout and "Pareto front" in stdout
    study = optuna.load_study(study_name="pg", storage=RDBStorage(postgres_driver_url(postgres_url)))
    assert len(study.trials) == 8
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert study.metric_names == ["clean_accuracy", "slope"]
