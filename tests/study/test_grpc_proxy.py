"""Many workers through Optuna's gRPC storage proxy: `robust-hpo storage-proxy` serves an SQLite study,
two `robust-hpo run --storage grpc://...` workers add their trials to it, `report` reads it back."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from robust_hpo.errors import StorageError, ValidationError
from robust_hpo.study import StorageSpec
from robust_hpo.testing import tiny_study_toml

REPO = Path(__file__).resolve().parents[2]

STUDY = tiny_study_toml('proxied')


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_grpc_urls_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="expected grpc://HOST:PORT"):
        StorageSpec.parse("grpc://localhost", default_journal=tmp_path / "x")
    pytest.importorskip("grpc")
    monkeypatch.setattr("robust_hpo.study._storage.GRPC_CONNECT_TIMEOUT", 0.5)
    with pytest.raises(StorageError, match=r"no gRPC storage proxy answers at 127.0.0.1:\d+"):
        StorageSpec.parse(f"grpc://127.0.0.1:{_free_port()}", default_journal=tmp_path / "x").open()


@pytest.mark.slow
def test_two_workers_through_the_proxy(tmp_path: Path) -> None:
    pytest.importorskip("grpc")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    database, port = tmp_path / "proxied.db", _free_port()
    cli = [sys.executable, "-m", "robust_hpo.cli"]
    proxy = subprocess.Popen([*cli, "storage-proxy", "--storage", f"sqlite:///{database}", "--port", str(port)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert "gRPC storage proxy for sqlite:///" in proxy.stdout.readline()  # listening
        study_file = tmp_path / "proxied.toml"
        study_file.write_text(STUDY)
        run = [*cli, "run", str(study_file), "--storage", f"grpc://127.0.0.1:{port}", "--no-progress",
               "--output", str(tmp_path / "out"), "--n-trials", "4"]
        workers = [subprocess.Popen(run, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                   for _ in range(2)]
        for worker in workers:
            stdout, stderr = worker.communicate(timeout=300)
            assert worker.returncode == 0, stderr
            assert "ran 4 trials" in stdout
        report = subprocess.run([*cli, "report", "--storage", f"grpc://127.0.0.1:{port}",
                                 "--output", str(tmp_path / "out")], capture_output=True, text=True, env=env,
                                timeout=300)
        assert report.returncode == 0, report.stderr
        assert "study 'proxied': 8 trials: 8 complete, 0 failed" in report.stdout
    finally:
        proxy.terminate()
        proxy.communicate(timeout=60)
    trials = optuna.load_study(study_name="proxied", storage=RDBStorage(f"sqlite:///{database}")).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 8
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 8  # the same seed, distinct proposals
