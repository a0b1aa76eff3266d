"""Study files refused before anything runs: values nested thousands deep (one line, not a
3,000-line RecursionError), and studies that would fail every trial (too few clean points)."""

from __future__ import annotations

from pathlib import Path

import pytest

from robust_hpo.cli import main
from robust_hpo.errors import ValidationError
from robust_hpo.study import load_study_config
from robust_hpo.testing import tiny_study_toml


def test_a_deeply_nested_value_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = tmp_path / "deep.toml"
    study.write_text(tiny_study_toml("deep") + "\n[options.logistic]\nx = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ValidationError, match="nested too deeply"):
        load_study_config(study)
    assert main(["run", str(study), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and f"{study}: values nested too deeply" in err
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(study), "--set", "data.n_test=" + "[" * 5000 + "]" * 5000])
    assert exit_.value.code == 2 and "nested too deeply" in capsys.readouterr().err


@pytest.mark.parametrize(("n_train", "fraction", "refused"), [(2, 0.5, True), (4, 0.5, True), (8, 0.5, False),
                                                               (5, 0.1, False), (3, 0.34, True)])
def test_too_few_clean_points_are_refused_up_front(tmp_path: Path, n_train: int, fraction: float, refused: bool,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    study = tmp_path / "small.toml"
    study.write_text(tiny_study_toml("small", n_train=n_train).replace("[attack]\n", f"[attack]\nfraction = {fraction}\n"))
    if not refused:
        load_study_config(study)
        return
    out = tmp_path / "out"
    assert main(["run", str(study), "--no-progress", "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"data.n_train = {n_train} with attack fraction {fraction:g} leaves" in err and "raise data.n_train" in err
    assert not out.exists()
