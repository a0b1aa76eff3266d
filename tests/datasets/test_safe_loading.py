"""Hostile data files: malicious CIFAR-10 pickles, planted checkpoints and gzip bombs are refused.

Each attack would write a marker file if anything in it ran; the marker must never appear, the
error must be a DataFileError naming the file. Real-format files (written here) still load.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest

from robust_hpo.cli import main
from robust_hpo.datasets import load_dataset, read_idx
from robust_hpo.datasets._restricted_pickle import restricted_load
from robust_hpo.errors import DataFileError, RobustHPOError

NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]


# ------------------------------------------------------------------ CIFAR-10 pickles

class _RunsCode:
    """Unpickling calls ``func(*args)``: how a crafted pickle runs code."""

    def __init__(self, func: object, *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.func, self.args


def _py2_str(b: bytes) -> bytes:
    return b"U" + bytes([len(b)]) + b  # SHORT_BINSTRING: a Python 2 str


def _py2_uint8_array(a: np.ndarray) -> bytes:
    """A uint8 (n, d) array exactly as Python 2 NumPy pickled it in the official CIFAR-10 batches."""
    n, d = a.shape
    return (b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + b"K\x00\x85" + _py2_str(b"b")
            + b"\x87R" + b"(K\x01" + b"M" + struct.pack("<H", n) + b"M" + struct.pack("<H", d) + b"\x86"
            + b"cnumpy\ndtype\n" + _py2_str(b"u1") + b"K\x00K\x01\x87R"
            + b"(K\x03" + _py2_str(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
            + b"\x89" + b"T" + struct.pack("<I", a.nbytes) + a.tobytes() + b"tb")


def _py2_batch(data: np.ndarray, labels: list[int]) -> bytes:
    """A whole batch in the Python 2 protocol-2 layout of cifar-10-python.tar.gz."""
    return (b"\x80\x02}(" + _py2_str(b"batch_label") + _py2_str(b"testing batch 1 of 1")
            + _py2_str(b"labels") + b"](" + b"".join(b"K" + bytes([v]) for v in labels) + b"e"
            + _py2_str(b"data") + _py2_uint8_array(data)
            + _py2_str(b"filenames") + b"](" + b"".join(_py2_str(b"x.png") for _ in labels) + b"eu.")


def _write_cifar(folder: Path, n: int = 20, *, protocol: int = pickle.DEFAULT_PROTOCOL) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": NAMES, b"num_vis": 3072}, protocol=2))
    written = {}
    for k, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        data = np.random.default_rng(k).integers(0, 256, size=(n, 3072), dtype=np.uint8)
        batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in np.arange(n) % 10], b"data": data}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
        written[name] = data
    return written


def test_python2_layout_of_the_official_batches_loads(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    data = np.random.default_rng(9).integers(0, 256, size=(20, 3072), dtype=np.uint8)
    labels = [int(v) for v in np.arange(20) % 10]
    raw = _py2_batch(data, labels)
    assert pickle.loads(raw, encoding="bytes")[b"labels"] == labels  # the stdlib reads it the same way
    (tmp_path / "test_batch").write_bytes(raw)
    d = load_dataset("cifar10", root=tmp_path, classes=(0, 6))
    np.testing.assert_array_equal(d.X_test[0, 0], data[0, :1024].reshape(32, 32) / np.float32(255))
    np.testing.assert_array_equal(d.X_test[1, 2], data[6, 2048:].reshape(32, 32) / np.float32(255))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_batches_pickled_by_numpy_at_every_protocol_load(tmp_path: Path, protocol: int) -> None:
    written = _write_cifar(tmp_path, protocol=protocol)
    d = load_dataset("cifar10", root=tmp_path, classes=(0, 1))
    np.testing.assert_array_equal(d.X_train[0, 1], written["data_batch_1"][0, 1024:2048].reshape(32, 32) / np.float32(255))


def _marker_attacks(marker: Path) -> dict[str, object]:
    import builtins

    return {
        "os.system": _RunsCode(os.system, f"touch {marker}"),
        "builtins.exec": _RunsCode(builtins.exec, f"open({str(marker)!r}, 'w').close()"),
        "numpy.save": _RunsCode(np.save, str(marker), np.zeros(1)),  # an innocent-looking numpy global
        "pathlib.Path.touch": _RunsCode(Path.touch, marker),
    }


@pytest.mark.parametrize("attack", ["os.system", "builtins.exec", "numpy.save", "pathlib.Path.touch"])
@pytest.mark.parametrize("where", ["test_batch", "batches.meta"])
def test_malicious_cifar_pickle_is_refused_and_nothing_runs(tmp_path: Path, attack: str, where: str) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar(folder)
    marker = tmp_path / "MARKER"
    payload = _marker_attacks(marker)[attack]
    batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1], b"evil": payload}
    (folder / where).write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataFileError) as info:
        load_dataset("cifar10", root=tmp_path)
    assert not marker.exists()
    msg = str(info.value)
    assert str(folder / where) in msg and "nothing in it was run" in msg, msg


def test_object_arrays_and_foreign_reconstruct_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    obj = np.array([_RunsCode(os.system, f"touch {marker}")], dtype=object)
    with pytest.raises(pickle.UnpicklingError):
        restricted_load(pickle.dumps({b"data": obj}, protocol=2))
    # only plain dtypes: an object dtype is refused even when its items are harmless
    with pytest.raises(pickle.UnpicklingError, match="object"):
        restricted_load(pickle.dumps(np.array([1, "a"], dtype=object), protocol=4))
    assert not marker.exists()
    # a plain structure round-trips, numpy scalars included
    value = {b"a": [1, 2.5, b"x", "y", (3, None), np.int64(7)], b"b": np.arange(6, dtype=np.int16).reshape(2, 3)}
    out = restricted_load(pickle.dumps(value, protocol=2))
    assert out[b"a"] == value[b"a"] and np.array_equal(out[b"b"], value[b"b"]) and out[b"b"].dtype == np.int16


def test_study_run_on_a_malicious_batch_exits_2_and_nothing_runs(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    folder = data / "cifar-10-batches-py"
    _write_cifar(folder)
    marker = tmp_path / "MARKER"
    evil = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1], b"x": _RunsCode(os.system, f"touch {marker}")}
    (folder / "test_batch").write_bytes(pickle.dumps(evil, protocol=2))
    study = tmp_path / "s.toml"
    study.write_text('[study]\nname = "c"\nn_trials = 1\n[data]\ndataset = "cifar10"\nclasses = [0, 1]\n'
                     '[attack]\ntrigger = "badnets"\n[search]\nlearners = ["logistic"]\n', encoding="utf-8")
    code = main(["run", str(study), "--data-root", str(data), "--no-progress", "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and not marker.exists()
    assert "test_batch was refused" in err and "posix.system" in err, err


def test_oversized_batch_is_refused_unread(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    with (tmp_path / "test_batch").open("r+b") as f:
        f.truncate(200 * 1024 * 1024)  # sparse: no disk used
    with pytest.raises(DataFileError, match=r"test_batch is 209715200 bytes, more than the 134217728 bytes"):
        load_dataset("cifar10", root=tmp_path)


_ZERO_STRIDE_BOMB = """
import pickle, sys
from pathlib import Path
import numpy as np
from robust_hpo.datasets import load_dataset
from robust_hpo.errors import DataFileError

class Bomb:  # 60,000 rows of 3072 bytes declared over a one-byte buffer: zero strides
    def __reduce__(self):
        return np.ndarray, ((60000, 3072), np.dtype("u1"), b"x", 0, (0, 0))

folder = Path(sys.argv[1]) / "cifar-10-batches-py"
folder.mkdir(parents=True)
names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
(folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))
payload = pickle.dumps({b"data": Bomb(), b"labels": list(range(10)) * 6000}, protocol=2)
(folder / "test_batch").write_bytes(payload)
try:
    load_dataset("cifar10", root=Path(sys.argv[1]))
    outcome = "loaded"
except DataFileError as exc:
    outcome = "refused: " + str(exc)
# VmHWM: this program's peak resident memory (ru_maxrss would include the parent's, kept across exec)
peak = int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1]) / 1024  # MiB
print(len(payload), round(peak), outcome)
"""


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="VmHWM is read from /proc")
def test_a_zero_stride_cifar_batch_is_refused_within_bounded_memory(tmp_path: Path) -> None:
    """A few-hundred-byte batch declaring 60,000 images through numpy.ndarray(..., strides=(0, 0)):
    refused, with the process's peak memory under 600 MB (it was 5.2 GB)."""
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", _ZERO_STRIDE_BOMB, str(tmp_path)], capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    size, peak, outcome = out.stdout.strip().split(" ", 2)
    assert int(size) < 200_000  # the labels list is most of it
    assert outcome.startswith("refused: ") and "test_batch" in outcome and "numpy.ndarray" in outcome, outcome
    assert int(peak) < 600, f"peak memory {peak} MiB"


# ------------------------------------------------------------------ checkpoints

@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private torch hub directory; downloading is impossible (the test must never touch the network)."""
    import torch

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("offline in tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    yield tmp_path / "hub" / "checkpoints"
    torch.hub.set_dir(old)


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_planted_checkpoint_is_refused_and_nothing_runs(hub: Path, tmp_path: Path, fmt: str) -> None:
    import torch

    from robust_hpo.datasets.pretrained import extract_features

    marker = tmp_path / "MARKER"
    state = {"conv1.weight": torch.zeros(1), "evil": _RunsCode(os.system, f"touch {marker}")}
    planted = hub / "resnet18-f37072fd.pth"
    if fmt == "zip":
        torch.save(state, planted)
    else:  # a plain pickle (torch's legacy format), no tensor inside
        planted.write_bytes(pickle.dumps({"evil": state["evil"]}, protocol=2))
    images = np.random.default_rng(0).random((1, 3, 8, 8), dtype=np.float32)
    with pytest.raises(DataFileError) as info:
        extract_features(images, model="resnet18", cache_dir=tmp_path / "f", progress=False)
    assert not marker.exists()
    msg = str(info.value)
    assert str(planted) in msg and "posix.system" in msg and "nothing in it was run" in msg, msg
    assert "weights_only" not in msg  # torch's advice to retry unsafely is not passed on


def test_planted_checkpoint_is_refused_by_network_learners_too(hub: Path, tmp_path: Path) -> None:
    import torch

    from robust_hpo.learners._torch_models import build_network

    marker = tmp_path / "MARKER"
    torch.save({"evil": _RunsCode(os.system, f"touch {marker}")}, hub / "resnet18-f37072fd.pth")
    with pytest.raises(DataFileError, match=r"resnet18-f37072fd.pth for ResNet18_Weights.IMAGENET1K_V1 was refused"):
        build_network("resnet18", input_shape=(3, 32, 32), width=8, n_classes=10, pretrained=True)
    assert not marker.exists()


def test_real_format_checkpoint_in_the_cache_loads(hub: Path, tmp_path: Path) -> None:
    """A genuine state dict (tensors only) is read: the features equal those of the same network."""
    import torch
    from torchvision.models import resnet18

    from robust_hpo.datasets.pretrained import extract_features

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        net = resnet18(weights=None)
    torch.save(net.state_dict(), hub / "resnet18-f37072fd.pth")
    images = np.random.default_rng(0).random((2, 3, 8, 8), dtype=np.float32)
    feats = extract_features(images, model="resnet18", cache_dir=tmp_path / "f", progress=False)
    untrained = extract_features(images, model="resnet18", weights=None, cache_dir=tmp_path / "f", progress=False)
    net.fc = torch.nn.Identity()
    from torchvision.models import ResNet18_Weights

    with torch.no_grad():
        expected = net.eval()(ResNet18_Weights.DEFAULT.transforms()(torch.from_numpy(images))).numpy()
    np.testing.assert_allclose(feats, expected, rtol=1e-4, atol=1e-5)
    assert not np.allclose(feats, untrained)  # the cached weights were used, not the seed-0 init


# ------------------------------------------------------------------ gzip bombs

def _idx_header(*dims: int) -> bytes:
    return bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)


def _gzip_bomb(header: bytes, inflated_gib: float) -> bytes:
    """``header`` followed by ``inflated_gib`` GiB of zeros, as concatenated gzip members (~6 MB per 6 GiB)."""
    member = gzip.compress(bytes(16 << 20), compresslevel=9)
    count = int(inflated_gib * 64)
    return gzip.compress(header) + member * count


def test_gzip_bomb_is_refused_within_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(_gzip_bomb(_idx_header(60000, 28, 28), inflated_gib=6))
    assert path.stat().st_size < 8_000_000
    tracemalloc.start()
    try:
        with pytest.raises(DataFileError, match=r"train-images-idx3-ubyte.gz is truncated or corrupt: .* but the "
                                                r"file holds more than 47040000 data bytes"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, peak  # the declared 47 MB (45 MiB) and a little; never the 6 GiB


def test_declared_size_above_the_limit_is_refused_before_inflating(tmp_path: Path) -> None:
    path = tmp_path / "big-idx.gz"
    path.write_bytes(_gzip_bomb(_idx_header(100_000, 100, 100), inflated_gib=0.1))
    tracemalloc.start()
    try:
        with pytest.raises(DataFileError, match=r"big-idx.gz declares shape \(100000, 100, 100\) \(1000000000 data "
                                                r"bytes\), more than the 268435456 bytes allowed"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak
    np.testing.assert_array_equal(read_idx(_small(tmp_path), max_bytes=3), [7, 8, 9])
    with pytest.raises(DataFileError, match="more than the 2 bytes allowed"):
        read_idx(_small(tmp_path), max_bytes=2)


def _small(tmp_path: Path) -> Path:
    path = tmp_path / "small-idx.gz"
    path.write_bytes(gzip.compress(_idx_header(3) + bytes([7, 8, 9])))
    return path


def test_more_than_64_dimensions_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "deep-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 0x08, 65]) + struct.pack(">I", 1) * 65 + b"\x00")
    with pytest.raises(DataFileError, match=rf"{path} declares 65 dimensions, more than the 64"):
        read_idx(path)


def test_trailing_data_is_refused_plain_and_gzip(tmp_path: Path) -> None:
    raw = _idx_header(3) + bytes([7, 8, 9, 10])
    (tmp_path / "plain").write_bytes(raw)
    (tmp_path / "packed.gz").write_bytes(gzip.compress(raw))
    for name in ("plain", "packed.gz"):
        with pytest.raises(DataFileError, match=rf"{name} is truncated or corrupt: .*holds more than 3 data bytes"):
            read_idx(tmp_path / name)


def test_mnist_with_a_bomb_is_one_error_naming_the_file(tmp_path: Path) -> None:
    labels = np.arange(10, dtype=np.uint8)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_header(10) + labels.tobytes()))
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(_gzip_bomb(_idx_header(10, 28, 28), inflated_gib=1))
    with pytest.raises(RobustHPOError, match=r"t10k-images-idx3-ubyte.gz is truncated or corrupt"):
        load_dataset("mnist", root=tmp_path)
    # a zlib stream that is not gzip at all
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(zlib.compress(b"x" * 100))
    with pytest.raises(DataFileError, match=r"t10k-images-idx3-ubyte.gz is not a valid gzip file"):
        load_dataset("mnist", root=tmp_path)
