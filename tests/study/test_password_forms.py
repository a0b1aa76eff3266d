"""Passwords are masked in every form a storage location can take: spaces, tabs and newlines in
the password, and ``user:PASSWORD`` without ``@host`` (which drivers read as a port)."""

from __future__ import annotations

import pytest

from robust_hpo.cli import main
from robust_hpo.study import mask_secrets

FORMS = {
    "space": ("postgresql://bob:open sesame@127.0.0.1:1/db", "open sesame"),
    "tab": ("postgresql://bob:open\tsesame@127.0.0.1:1/db", "open\tsesame"),
    "newline": ("postgresql://bob:open\nsesame@127.0.0.1:1/db", "open\nsesame"),
    "no host": ("postgresql://bob:s3cretpassword", "s3cretpassword"),
    "no host, path": ("postgresql://bob:s3cretpassword/db", "s3cretpassword"),
    "percent-encoded": ("postgresql://bob:p%40ss%20word@127.0.0.1:1/db", "p@ss word"),
}


@pytest.mark.parametrize("form", FORMS)
def test_no_form_of_a_password_is_printed(form: str, capsys: pytest.CaptureFixture[str]) -> None:
    url, secret = FORMS[form]
    assert main(["report", "--storage", url]) == 2
    captured = capsys.readouterr()
    text = captured.out + captured.err
    for shown in {secret, " ".join(secret.split()), "sesame", "s3cret", "p@ss", "p%40ss"}:
        assert shown not in text, text
    assert "***" in text and len(captured.err.splitlines()) == 1, text


def test_a_port_is_not_a_password() -> None:
    assert mask_secrets("postgresql://bob@db:5432/x") == "postgresql://bob@db:5432/x"
    assert mask_secrets("postgresql://db:5432/x") == "postgresql://db:5432/x"
    assert mask_secrets("see postgresql://bob:hunter22") == "see postgresql://bob:***"
