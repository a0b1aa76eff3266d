"""Many machines, one study: the data are identified by their content, not their path. A byte-identical
copy at another path joins the study; other data at the same path are refused, naming what differs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import optuna
import pytest
from PIL import Image

from robust_hpo.cli import main
from robust_hpo.study import PROBLEM_ATTR, StorageSpec

STUDY = """
[study]
name = "folders"
n_trials = 2
seed = 0

[data]
dataset = "imagefolder"
root = "images"
image_size = 8

[attack]
size = 2

[search]
learners = ["ridge"]
"""


def _images(root: Path) -> None:
    rng = np.random.default_rng(0)
    for part, count in (("train", 12), ("test", 4)):
        for label in ("ant", "bee"):
            for i in range(count):
                (root / part / label).mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)).save(
                    root / part / label / f"{i}.png")


def test_data_are_identified_by_content(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _images(tmp_path / "images")
    study_file = tmp_path / "folders.toml"
    study_file.write_text(STUDY)
    out = tmp_path / "out"
    run = ["run", str(study_file), "--storage", str(out / "study.log"), "--no-progress", "--n-trials", "1"]
    assert main(run) == 0
    stored = optuna.load_study(study_name="folders", storage=StorageSpec(journal=out / "study.log").open()
                               ).user_attrs[PROBLEM_ATTR]
    assert stored["format"] == 3 and set(stored["content"]) == {"x_train", "y_train", "x_test", "y_test"}
    assert stored["location"]["data_root"] == str(tmp_path / "images")

    # another machine: a byte-identical copy at another path runs the same study
    shutil.copytree(tmp_path / "images", tmp_path / "elsewhere" / "copy")
    assert main([*run, "--data-root", str(tmp_path / "elsewhere" / "copy")]) == 0
    assert "resumed: 1 trials before" in capsys.readouterr().out

    # the same path with other contents is refused, naming what differs
    pixels = np.asarray(Image.open(tmp_path / "images" / "test" / "bee" / "0.png")).copy()
    pixels[0, 0, 0] ^= 1
    Image.fromarray(pixels).save(tmp_path / "images" / "test" / "bee" / "0.png")
    assert main(run) == 2
    err = capsys.readouterr().err
    assert "[data] contents (test images: other values (sha256" in err
    assert f"the data loaded from {tmp_path / 'images'} are not the data the study was created with" in err
    assert "training images" not in err
    trials = optuna.load_study(study_name="folders", storage=StorageSpec(journal=out / "study.log").open()).trials
    assert len(trials) == 2  # nothing ran on the other data
    # the analysis commands check it too
    explain = ["explain", "--storage", str(out / "study.log")]
    assert main(explain) == 2
    assert "study 'folders' was created with other data (test images: other values" in capsys.readouterr().err
    assert main([*explain, "--data-root", str(tmp_path / "elsewhere" / "copy")]) == 0
