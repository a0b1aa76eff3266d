"""A storage that fails mid-run ends `run` with one line naming the storage (no traceback), exit != 0,
and the next run fails and retries the trial that was running; workers started together on a new
SQLite file all succeed."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from robust_hpo.cli import main
from robust_hpo.study import StorageSpec, storage_failure
from robust_hpo.testing import tiny_study_toml

ROOT = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
            "ROBUST_HPO_OUTPUT_ROOT": str(tmp_path / "root")}


def _complete(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=0.1) as connection:
            return connection.execute("select count(*) from trials where state = 'COMPLETE'").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_sqlite_locked_mid_run_is_one_line_and_the_next_run_recovers(tmp_path: Path) -> None:
    study = tmp_path / "s.toml"
    study.write_text(tiny_study_toml("locked"))
    db = tmp_path / "study.db"
    url = f"sqlite:///{db}"
    command = [sys.executable, "-m", "robust_hpo.cli", "run", str(study), "--storage", url, "--no-progress",
               "--output", str(tmp_path / "out")]
    worker = subprocess.Popen([*command, "--n-trials", "100000"], env=_env(tmp_path), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while _complete(db) < 2:
            assert worker.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        blocker = sqlite3.connect(db, timeout=30, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # every other connection now waits, then fails (5 s)
        try:
            _, err = worker.communicate(timeout=120)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
    finally:
        worker.kill()
    assert worker.returncode not in (0, None)
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"robust-hpo: error: storage {url} failed: OperationalError: database is locked"), err

    again = subprocess.run([*command, "--n-trials", "1"], env=_env(tmp_path), capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    trials = optuna.load_study(study_name="locked", storage=StorageSpec(url=url).open()).trials
    assert not [t.number for t in trials if t.state == optuna.trial.TrialState.RUNNING], again.stderr


def test_a_storage_error_behind_optunas_own_errors_is_found() -> None:
    import sqlalchemy.exc

    try:
        try:
            raise sqlalchemy.exc.OperationalError("UPDATE trials", {}, sqlite3.OperationalError("disk I/O error"))
        finally:
            raise UnboundLocalError("cannot access local variable 'frozen_trial'")  # what Optuna's _run_trial does
    except UnboundLocalError as exc:
        line = storage_failure(exc)
    assert line is not None and "failed: OperationalError: disk I/O error" in line
    assert storage_failure(ValueError("no")) is None


_STARTER = """
import sys, time
from robust_hpo.study import StorageSpec
start = float(sys.argv[2])
while time.time() < start:
    time.sleep(0.001)
StorageSpec(url=sys.argv[1]).open()
print("ok")
"""


@pytest.mark.parametrize("round_", range(3))
def test_workers_started_together_on_a_new_sqlite_file_all_succeed(tmp_path: Path, round_: int) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    start = time.time() + 3.0  # all four past their imports, then at the same moment
    workers = [subprocess.Popen([sys.executable, "-c", _STARTER, url, str(start)], env=_env(tmp_path),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [w.communicate(timeout=120) for w in workers]
    assert [w.returncode for w in workers] == [0] * 4, [err.strip().splitlines()[-1:] for _, err in results]


def test_sqlite_in_memory_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = tmp_path / "s.toml"
    study.write_text(tiny_study_toml("mem"))
    assert main(["run", str(study), "--storage", "sqlite:///:memory:", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "sqlite:///:memory:" in err and "nothing is saved" in err and len(err.strip().splitlines()) == 1


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _proxy(url: str, port: int, tmp_path: Path) -> subprocess.Popen:
    proxy = subprocess.Popen([sys.executable, "-m", "robust_hpo.cli", "storage-proxy", "--storage", url, "--port",
                              str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(tmp_path))
    assert "gRPC storage proxy for" in proxy.stdout.readline()
    return proxy


def test_grpc_proxy_killed_mid_run_is_one_line_and_the_next_run_recovers(tmp_path: Path) -> None:
    pytest.importorskip("grpc")
    db = tmp_path / "proxied.db"
    port = _free_port()
    study = tmp_path / "s.toml"
    study.write_text(tiny_study_toml("proxied"))
    grpc_url = f"grpc://127.0.0.1:{port}"
    command = [sys.executable, "-m", "robust_hpo.cli", "run", str(study), "--storage", grpc_url, "--no-progress",
               "--output", str(tmp_path / "out")]
    proxy = _proxy(f"sqlite:///{db}", port, tmp_path)
    try:
        worker = subprocess.Popen([*command, "--n-trials", "100000"], env=_env(tmp_path), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while _complete(db) < 2:
            assert worker.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        proxy.kill()
        _, err = worker.communicate(timeout=120)
    finally:
        proxy.kill()
        proxy.communicate()
    assert worker.returncode not in (0, None)
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"robust-hpo: error: storage {grpc_url} failed: gRPC UNAVAILABLE"), err
    proxy = _proxy(f"sqlite:///{db}", port, tmp_path)
    try:
        again = subprocess.run([*command, "--n-trials", "1"], env=_env(tmp_path), capture_output=True, text=True,
                               timeout=300)
    finally:
        proxy.kill()
        proxy.communicate()
    assert again.returncode == 0, again.stderr
    trials = optuna.load_study(study_name="proxied", storage=StorageSpec(url=f"sqlite:///{db}").open()).trials
    assert not [t.number for t in trials if t.state == optuna.trial.TrialState.RUNNING], again.stderr


class _Postgres:
    """A PostgreSQL server this test can stop and start again (trust authentication, 127.0.0.1)."""

    def __init__(self) -> None:
        import glob
        import shutil
        import socket
        import tempfile

        pytest.importorskip("psycopg2")
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not bins:
            pytest.skip("PostgreSQL is not installed")
        self.bin = Path(bins[-1]).parent
        self.user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.user and shutil.which("runuser") is None:
            pytest.skip("running as root without runuser")
        folder = Path(tempfile.mkdtemp(prefix="robust_hpo_pg_"))  # the postgres user cannot enter pytest's folders
        if self.user:
            shutil.chown(folder, user="postgres")
        self.folder, self.data = folder, folder / "data"
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        subprocess.run([*self.user, str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"],
                       check=True, capture_output=True, timeout=120)

    def ctl(self, *args: str) -> None:
        subprocess.run([*self.user, str(self.bin / "pg_ctl"), "-D", str(self.data), *args], check=True,
                       capture_output=True, timeout=120)

    def start(self) -> None:
        self.ctl("-o", f"-h 127.0.0.1 -p {self.port} -k {self.folder}", "-l", str(self.folder / "log"), "-w", "start")

    def stop(self) -> None:
        self.ctl("-m", "immediate", "stop")

    def remove(self) -> None:
        import shutil

        subprocess.run([*self.user, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(self.folder, ignore_errors=True)

    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


def test_postgres_stopped_mid_run_is_one_line_and_the_next_run_recovers(tmp_path: Path) -> None:
    server = _Postgres()
    server.start()
    try:
        url = server.url()
        study = tmp_path / "s.toml"
        study.write_text(tiny_study_toml("pg"))
        command = [sys.executable, "-m", "robust_hpo.cli", "run", str(study), "--storage", url, "--no-progress",
                   "--output", str(tmp_path / "out")]
        worker = subprocess.Popen([*command, "--n-trials", "100000"], env=_env(tmp_path), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        storage = StorageSpec(url=url)
        deadline = time.monotonic() + 120
        while True:
            assert worker.poll() is None and time.monotonic() < deadline
            try:
                done = [t for t in optuna.load_study(study_name="pg", storage=storage.open(create=False)).trials
                        if t.state == optuna.trial.TrialState.COMPLETE]
            except Exception:
                done = []
            if len(done) >= 2:
                break
            time.sleep(0.2)
        server.stop()
        try:
            _, err = worker.communicate(timeout=180)
        finally:
            worker.kill()
            server.start()
        assert worker.returncode not in (0, None)
        assert "Traceback" not in err, err
        last = err.strip().splitlines()[-1]
        # the dead server surfaces as the driver's OperationalError, or — when the worker's session had
        # already met it in a statement whose error Optuna handled — as SQLAlchemy's PendingRollbackError
        assert last.startswith(tuple(f"robust-hpo: error: storage {url} failed: {kind}"
                                     for kind in ("OperationalError", "PendingRollbackError"))), err
        assert last.endswith("the trial that was running is failed and retried"), err
        again = subprocess.run([*command, "--n-trials", "1"], env=_env(tmp_path), capture_output=True, text=True,
                               timeout=300)
        assert again.returncode == 0, again.stderr
        trials = optuna.load_study(study_name="pg", storage=StorageSpec(url=url).open()).trials
        assert not [t.number for t in trials if t.state == optuna.trial.TrialState.RUNNING], again.stderr
    finally:
        server.remove()


def test_a_storage_failure_in_a_background_thread_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """Optuna's heartbeat thread meets the failure too; its traceback used to precede the one line."""
    import threading

    import sqlalchemy.exc

    from robust_hpo.cli import _thread_failure

    def beat() -> None:
        raise sqlalchemy.exc.OperationalError("UPDATE trial_heartbeats", {}, Exception("server closed the connection"))

    thread = threading.Thread(target=beat, name="heartbeat")
    previous = threading.excepthook
    threading.excepthook = _thread_failure
    try:
        thread.start()
        thread.join()
    finally:
        threading.excepthook = previous
    err = capsys.readouterr().err
    assert err == "robust-hpo: heartbeat: the study storage failed: Exception: server closed the connection\n" or \
        (err.startswith("robust-hpo: heartbeat: storage ") and "server closed the connection" in err
         and len(err.splitlines()) == 1), err
