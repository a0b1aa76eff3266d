"""A real run on PostgreSQL with a password in the URL: no printed line holds the password."""

from __future__ import annotations

from pathlib import Path

import pytest

from robust_hpo.cli import main
from robust_hpo.testing import tiny_study_toml

STUDY = tiny_study_toml("pw", learners=("ridge",), n_trials=2)


@pytest.mark.parametrize("form", ["userinfo", "query"])
def test_run_and_report_never_print_the_password(postgres_url: str, tmp_path: Path, form: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    secret = "S3CRET-pw"  # the throwaway server trusts local connections: any password is accepted
    url = (postgres_url.replace("postgres@", f"postgres:{secret}@") if form == "userinfo"
           else f"{postgres_url}?password={secret}")
    study = tmp_path / "pw.toml"
    study.write_text(STUDY, encoding="utf-8")
    assert main(["run", str(study), "--storage", url, "--no-progress", "--output", str(tmp_path / "out")]) == 0
    assert main(["report", "--storage", url, "--output", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    printed = captured.out + captured.err
    assert secret not in printed, printed
    hint = next(line for line in captured.out.splitlines() if line.startswith("Dashboard:"))
    assert "--storage postgresql://" in hint and "***" in hint, hint
    for written in (tmp_path / "out").rglob("*"):
        if written.is_file():
            assert secret.encode() not in written.read_bytes(), written
