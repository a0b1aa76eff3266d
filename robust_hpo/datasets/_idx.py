"""Reading IDX files (the MNIST format), gzip-compressed or not.

Layout: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
0x0E float64), the number of dimensions, then each dimension as a big-endian uint32, then the data
in C order, big-endian.

The header fixes the data size, so a file is read as a stream: the header first, then exactly the
declared number of bytes into one preallocated array, then one more byte to prove the file ends
there. A ``.gz`` file is never inflated past its declared size (a gzip bomb is refused after at most
that many bytes), and a declared size above ``max_bytes`` is refused before anything is inflated.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from robust_hpo.errors import DataFileError, MissingFileError

_DTYPES: dict[int, str] = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

#: Largest data size (bytes) :func:`read_idx` accepts by default: 256 MiB, five times MNIST's
#: largest file (60000 × 28 × 28 = 47 MB).
MAX_IDX_BYTES = 256 * 1024 * 1024
_CHUNK = 1 << 20


def read_idx(path: str | Path, *, max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """The array stored in the IDX file ``path`` (``.gz`` is decompressed as a stream).

    Raises :class:`~robust_hpo.errors.DataFileError` naming the file when it is corrupt, truncated,
    longer than its header declares, or declares more than ``max_bytes`` data bytes.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"IDX file {path} does not exist")
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")) as stream:
            return _read_stream(stream, path, max_bytes)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataFileError(f"{path} is not a valid gzip file (truncated or corrupt): {exc}") from exc


_MAX_DIMS = 64
"""NumPy's limit on an array's dimensions."""


def _read_stream(stream: BinaryIO, path: Path, max_bytes: int) -> np.ndarray:
    magic = _read_exact(stream, 4)
    if len(magic) < 4:
        raise DataFileError(f"{path} is truncated: {len(magic)} bytes, shorter than the 4-byte IDX magic number")
    if magic[0] != 0 or magic[1] != 0 or magic[2] not in _DTYPES or magic[3] == 0:
        raise DataFileError(
            f"{path} is not an IDX file: magic number {magic.hex()} (expected 0000 + a type code in "
            f"{[hex(c) for c in _DTYPES]} + a non-zero number of dimensions)"
        )
    dtype, ndim = np.dtype(_DTYPES[magic[2]]), magic[3]
    if ndim > _MAX_DIMS:
        raise DataFileError(f"{path} declares {ndim} dimensions, more than the {_MAX_DIMS} an array can have; "
                            "not an IDX data file")
    dims_raw = _read_exact(stream, 4 * ndim)
    if len(dims_raw) < 4 * ndim:
        raise DataFileError(
            f"{path} is truncated: its header needs {4 + 4 * ndim} bytes, the file has {4 + len(dims_raw)}"
        )
    dims = tuple(int(d) for d in np.frombuffer(dims_raw, dtype=">u4"))
    expected = int(np.prod(dims, dtype=object)) * dtype.itemsize
    if expected > max_bytes:
        raise DataFileError(
            f"{path} declares shape {dims} ({expected} data bytes), more than the {max_bytes} bytes "
            "allowed (read_idx(max_bytes=...)); refused without reading it"
        )
    data = np.empty(dims, dtype=dtype)
    got = _read_into(stream, memoryview(data.reshape(-1).view(np.uint8)))
    extra = stream.read(1) if got == expected else b""
    if got != expected or extra:
        held = f"{got}" if got != expected else f"more than {expected}"
        raise DataFileError(
            f"{path} is truncated or corrupt: its header declares shape {dims} ({expected} data bytes) "
            f"but the file holds {held} data bytes"
        )
    return data.astype(dtype.newbyteorder("="))


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    buf = bytearray(n)
    return bytes(buf[: _read_into(stream, memoryview(buf))])


def _read_into(stream: BinaryIO, buf: memoryview) -> int:
    """Fill ``buf`` from ``stream``; the number of bytes read (fewer only at the end of the stream)."""
    done = 0
    while done < len(buf):  # in chunks: one large read would inflate into a temporary copy first
        n = stream.readinto(buf[done:done + _CHUNK])  # type: ignore[attr-defined]
        if not n:
            break
        done += n
    return done
