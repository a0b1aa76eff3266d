"""Pretrained torchvision features for the convex learners, cached on disk by content hash.

Conventions: input images are (n, C, H, W) floats in [0, 1] (C = 1 is repeated to RGB), already
*triggered* where needed -- apply the trigger before extracting features. Each batch goes through
the weights' own preprocessing (resize, center crop, ImageNet mean/std normalisation; with
``weights=None`` the default weights' preprocessing) and then the network up to:

- ``alexnet``: ``features`` + ``avgpool``, flattened: 256·6·6 = 9216 values (as in the paper);
- ``resnet18``/``34``/``50``/``101``/``152``: the global-average-pooled penultimate layer
  (512 or 2048 values).

``weights=None`` gives an untrained network initialised from a fixed torch seed (0), so its
features are deterministic too. Results are float32 (n, d).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import tempfile
import warnings
from collections.abc import Callable
from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np

from robust_hpo._validation import Interval, Options, check
from robust_hpo.datasets._load import default_root
from robust_hpo.errors import DataFileError, ValidationError, WeightsUnavailableError, require_torch

#: Supported model names -> feature dimension.
FEATURE_MODELS: dict[str, int] = {
    "alexnet": 9216,
    "resnet18": 512,
    "resnet34": 512,
    "resnet50": 2048,
    "resnet101": 2048,
    "resnet152": 2048,
}
_CACHE_FORMAT = "robust_hpo-features-v1"


def extract_features(
    images: np.ndarray,
    *,
    model: str = "alexnet",
    weights: str | None = "DEFAULT",
    batch_size: int = 64,
    device: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Features (n, d) float32 of ``images`` (n, C, H, W) in [0, 1] from a torchvision network.

    weights: ``"DEFAULT"``, a weights name of the model (e.g. ``"IMAGENET1K_V1"``) or ``None``
        (untrained, seeded). Pretrained files come from the torch hub cache
        (``torch.hub.get_dir()/checkpoints``), downloaded there when missing.
    device: ``"cuda"`` when available and ``None`` is given, else ``"cpu"``.
    cache_dir: where results are saved as ``.npy`` (default ``default_root()/features``), keyed by
        SHA-256 of (image bytes, shape, dtype, model, weights, preprocessing): a repeat call loads
        the file instead of running the network; any change to the inputs makes a new key.
    """
    check("model", model, [Options(FEATURE_MODELS)])
    X = _check_images(images)
    check("batch_size", batch_size, [Interval(Integral, 1, None)])
    require_torch("pretrained features (extract_features)")
    weights_enum = _resolve_weights(model, weights)
    preprocess = _default_weights(model).transforms() if weights_enum is None else weights_enum.transforms()
    weights_name = "none(seed=0)" if weights_enum is None else str(weights_enum)
    key = _cache_key(X, model, weights_name, repr(preprocess))
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_root() / "features"
    path = folder / f"{model}-{key}.npy"
    cached = _read_cache(path, X.shape[0], FEATURE_MODELS[model])
    if cached is not None:
        return cached
    torch_device = _resolve_device(device)
    network = _build_extractor(model, weights_enum, torch_device, progress)
    feats = _run(network, preprocess, X, batch_size, torch_device, progress, desc=f"{model} features")
    _write_cache(path, feats)
    return feats


def _check_images(images: object) -> np.ndarray:
    if not isinstance(images, np.ndarray) or images.ndim != 4 or not np.issubdtype(images.dtype, np.floating):
        raise ValidationError(
            f"images must be a float array of shape (n, C, H, W), got "
            f"{getattr(images, 'shape', type(images).__name__)} {getattr(images, 'dtype', '')}"
        )
    if images.shape[0] == 0:
        raise ValidationError(f"images must hold at least one image, got shape {images.shape}")
    if images.shape[1] not in (1, 3):
        raise ValidationError(f"images must have 1 (grayscale) or 3 (RGB) channels, got shape {images.shape}")
    X = np.ascontiguousarray(images, dtype=np.float32)
    if not np.all(np.isfinite(X)) or X.min() < 0.0 or X.max() > 1.0:
        raise ValidationError("images must hold finite pixel values in [0, 1]")
    return X


def _default_weights(model: str) -> Any:
    from torchvision.models import get_model_weights

    return get_model_weights(model).DEFAULT


def _resolve_weights(model: str, weights: object) -> Any:
    """The torchvision weights enum member, or ``None`` for an untrained network."""
    if weights is None:
        return None
    from torchvision.models import get_model_weights

    enum = get_model_weights(model)
    if isinstance(weights, enum):
        return weights
    names = [n for n in enum.__members__ if n != "DEFAULT"]
    if isinstance(weights, str):
        short = weights.split(".", 1)[1] if weights.startswith(enum.__name__ + ".") else weights
        if short == "DEFAULT":
            return enum.DEFAULT
        if short in names:
            return enum[short]
    raise ValidationError(f"weights must be 'DEFAULT', None or one of {names} for {model!r}, got {weights!r}")


def _resolve_device(device: str | None) -> Any:
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValidationError(f"device must be a torch device such as 'cpu' or 'cuda', got {device!r}") from exc


def _build_extractor(model: str, weights: Any, device: Any, progress: bool) -> Any:
    """The network truncated to its feature layer, in eval mode on ``device``."""
    import torch
    from torch import nn
    from torchvision.models import get_model

    state = pretrained_state_dict(weights, progress=progress) if weights is not None else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = get_model(model, weights=None)
    if state is not None:
        net.load_state_dict(state)
    if model == "alexnet":
        extractor: nn.Module = nn.Sequential(net.features, net.avgpool, nn.Flatten(1))
    else:
        net.fc = nn.Identity()
        extractor = net
    return extractor.eval().to(device)


def pretrained_state_dict(weights: Any, *, progress: bool = True) -> dict[str, Any]:
    """The parameters of torchvision ``weights`` from the torch hub cache (downloaded when missing).

    The file is read with ``torch.load(weights_only=True)``: only tensors and plain containers are
    unpickled, so a planted file cannot run code. Raises
    :class:`~robust_hpo.errors.DataFileError` naming the file when it holds anything else, and
    :class:`~robust_hpo.errors.WeightsUnavailableError` when it cannot be downloaded or read.
    """
    require_torch("pretrained weights")
    import torch

    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    file = checkpoints / Path(weights.url).name
    had_file = file.is_file()
    try:
        return weights.get_state_dict(progress=progress, check_hash=True, weights_only=True, map_location="cpu")
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, ValueError) as exc:
        reason = _load_failure(exc)
        refused = re.search(r"GLOBAL ([\w.]+)", str(exc)) if isinstance(exc, pickle.UnpicklingError) else None
        if refused is not None:
            raise DataFileError(
                f"the cached weights file {file} for {weights} was refused: it references "
                f"{refused.group(1)}, which a weights file does not hold (only tensors and plain containers "
                f"are read); nothing in it was run. The file may be malicious: delete it and download it "
                f"again from {weights.url}, or pass weights=None"
            ) from None
        if had_file:
            raise WeightsUnavailableError(
                f"the cached weights file {file} for {weights} could not be read ({reason}); it is corrupt "
                f"or incomplete: delete it and download it again from {weights.url}, or pass weights=None"
            ) from exc
        raise WeightsUnavailableError(
            f"pretrained weights {weights} cannot be downloaded from {weights.url} ({reason}). Without "
            f"internet, download that file elsewhere and place it as {file} (the torch hub cache; "
            "move it with TORCH_HOME or torch.hub.set_dir), or pass weights=None for an untrained network"
        ) from exc


def _load_failure(exc: BaseException) -> str:
    """The reason ``torch.load`` gives, without its advice to retry with ``weights_only=False``."""
    if isinstance(exc, pickle.UnpicklingError) and "weights_only" in str(exc) and exc.__context__ is not None:
        return str(exc.__context__)
    return str(exc)


def _run(network: Any, preprocess: Callable[[Any], Any], X: np.ndarray, batch_size: int, device: Any,
         progress: bool, *, desc: str) -> np.ndarray:
    import torch
    from tqdm.auto import tqdm

    chunks = []
    with torch.inference_mode(), tqdm(total=X.shape[0], desc=desc, unit="img", disable=not progress) as bar:
        for start in range(0, X.shape[0], batch_size):
            batch = torch.from_numpy(X[start:start + batch_size]).to(device)
            if batch.shape[1] == 1:
                batch = batch.expand(-1, 3, -1, -1)
            chunks.append(network(preprocess(batch)).float().cpu().numpy())
            bar.update(batch.shape[0])
    return np.concatenate(chunks).astype(np.float32, copy=False)


def _cache_key(X: np.ndarray, model: str, weights_name: str, preprocess: str) -> str:
    digest = hashlib.sha256()
    for part in (_CACHE_FORMAT, model, weights_name, preprocess, str(X.shape), str(X.dtype)):
        digest.update(part.encode())
        digest.update(b"\0")
    digest.update(memoryview(X).cast("B"))
    return digest.hexdigest()


def _read_cache(path: Path, n: int, d: int) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        feats = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        warnings.warn(f"ignoring unreadable feature cache {path} ({exc}); extracting again", stacklevel=3)
        return None
    if feats.shape != (n, d) or feats.dtype != np.float32:
        warnings.warn(f"ignoring feature cache {path}: shape {feats.shape}, expected {(n, d)}", stacklevel=3)
        return None
    return feats


def _write_cache(path: Path, feats: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, feats, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
