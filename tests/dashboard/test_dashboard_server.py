"""The dashboard server: read-only unless asked (optuna-dashboard's DELETE/POST/PUT routes refused),
a warning when bound beyond this machine, and answers while another client holds an idle connection."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import optuna
import pytest

from robust_hpo.dashboard import dashboard_server, exposed_warning
from robust_hpo.testing import serving


def _storage() -> optuna.storages.BaseStorage:
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="kept", directions=["maximize", "minimize"])
    study.add_trial(optuna.trial.create_trial(values=[0.9, 0.2]))
    return storage


def _request(url: str, method: str = "GET", body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


WRITES = [("DELETE", "/api/studies/0", None),
          ("POST", "/api/studies", json.dumps({"study_name": "new", "directions": ["minimize"]}).encode()),
          ("PUT", "/api/studies/0/note", json.dumps({"version": 1, "body": "x"}).encode()),
          ("POST", "/api/studies/0/0/user-attrs", json.dumps({"user_attrs": {"k": "v"}}).encode())]


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_the_dashboard_is_read_only_by_default(method: str, path: str, body: bytes | None) -> None:
    storage = _storage()
    with serving(dashboard_server(storage, port=0)) as url:
        status, answer = _request(url + path, method, body)
        assert status == 403 and b"read-only" in json.loads(answer)["reason"].encode()
        assert _request(url + "/api/studies")[0] == 200  # reading still works
    assert optuna.get_all_study_names(storage) == ["kept"]
    study = optuna.load_study(study_name="kept", storage=storage)
    assert study.trials[0].user_attrs == {} and storage.get_study_system_attrs(study._study_id) == {}


def test_allow_writes_lets_the_dashboard_delete() -> None:
    storage = _storage()
    with serving(dashboard_server(storage, port=0, allow_writes=True)) as url:
        assert _request(url + "/api/studies/0", "DELETE")[0] == 204
    assert optuna.get_all_study_names(storage) == []


def test_an_idle_connection_does_not_stop_the_server() -> None:
    with serving(dashboard_server(_storage(), port=0)) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as idle:
            idle.sendall(b"GET /api/studies HTTP/1.1\r\n")  # a request that never ends
            status, answer = _request(url + "/api/studies")
            assert status == 200 and b"kept" in answer


def test_a_dashboard_bound_beyond_this_machine_warns() -> None:
    assert exposed_warning("127.0.0.1", allow_writes=False) is None
    assert exposed_warning("localhost", allow_writes=False) is None
    assert exposed_warning("::1", allow_writes=False) is None
    assert "reachable from other machines" in exposed_warning("0.0.0.0", allow_writes=False)
    assert "change or delete" in exposed_warning("0.0.0.0", allow_writes=True)
    assert "change or delete" in exposed_warning("127.0.0.1", allow_writes=True)


def test_the_cli_warns_on_stderr_before_serving(tmp_path: Path) -> None:
    journal = tmp_path / "study.log"
    optuna.create_study(storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))), study_name="s")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    process = subprocess.Popen([sys.executable, "-m", "robust_hpo.cli", "dashboard", "--storage", str(journal),
                                "--host", "0.0.0.0", "--port", "0"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        first = process.stderr.readline()
        assert "warning: --host 0.0.0.0 makes the dashboard reachable from other machines" in first
        assert "read-only" in process.stdout.readline()
    finally:
        process.kill()
        process.communicate()
