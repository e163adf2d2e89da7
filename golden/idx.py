"""IDX files: the format of MNIST, Fashion-MNIST and EMNIST, gzipped or not.

An IDX file is a big-endian header followed by the array in C order::

    offset  size   field
    0       2      0x00 0x00
    2       1      element type: 0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32, 0x0E f64
    3       1      number of dimensions, D >= 1
    4       4 * D  the size of each dimension, u32 big-endian
    4 + 4D  ...    the elements, big-endian, exactly prod(sizes) of them

:func:`read_idx` checks all of it and raises :class:`IdxError`, naming the file, for a missing
file, a bad magic number, an unknown element type, a file cut short or one with trailing bytes.
:func:`find_idx` finds a data set's file in a folder under the names in use (``train-images-
idx3-ubyte``, ``train-images.idx3-ubyte``, EMNIST's ``emnist-digits-train-images-idx3-ubyte``),
with or without ``.gz``.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["IDX_TYPES", "IdxError", "find_idx", "read_idx"]

#: Element type code -> NumPy dtype (big-endian, as stored).
IDX_TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
             0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


class IdxError(ValueError):
    """An IDX file that is missing or malformed; the message names the file."""


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise IdxError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise IdxError(f"{path}: is a directory, not an IDX file") from None
    except OSError as exc:
        raise IdxError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        raise IdxError(f"{path}: damaged or truncated gzip data ({exc})") from None


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in the IDX file ``path`` (gzip-compressed or not, told by its content).

    Returns the array in native byte order, with the file's shape and element type.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise IdxError(f"{path}: {len(raw)} bytes, too short for an IDX header")
    zero, code, ndim = struct.unpack_from(">HBB", raw)
    if zero != 0 or code not in IDX_TYPES or ndim == 0:
        raise IdxError(f"{path}: magic number {raw[:4].hex()} is not an IDX header "
                       f"(00 00, a type in {sorted(f'{c:02x}' for c in IDX_TYPES)}, D >= 1)")
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise IdxError(f"{path}: header cut short ({len(raw)} of {head} bytes)")
    shape = struct.unpack_from(f">{ndim}I", raw, 4)
    dtype = IDX_TYPES[code]
    want = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    have = len(raw) - head
    if have < want:
        raise IdxError(f"{path}: truncated: {have:,} data bytes of the {want:,} that shape "
                       f"{shape} needs")
    if have > want:
        raise IdxError(f"{path}: {have - want:,} bytes after the data of shape {shape}")
    array = np.frombuffer(raw, dtype=dtype, offset=head).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def find_idx(directory: str | Path, part: str) -> Path:
    """The file of ``part`` (e.g. ``"train-images"``, ``"t10k-labels"``) in ``directory``.

    Matches ``[prefix-]part-idxD-ubyte`` and ``part.idxD-ubyte``, each optionally ``.gz``.
    Exactly one file must match.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise IdxError(f"{directory}: no such directory (--data names the folder holding the "
                       f"IDX files)")
    found = sorted(p for p in directory.iterdir() if p.is_file() and _matches(p.name, part))
    if not found:
        raise IdxError(f"{directory}: no {part} file (looked for {part}-idx?-ubyte, "
                       f"{part}.idx?-ubyte, optionally gzipped, optionally with a prefix)")
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise IdxError(f"{directory}: several {part} files ({names}); keep one")
    return found[0]


def _matches(name: str, part: str) -> bool:
    name = name.removesuffix(".gz")
    for sep in ("-", "."):
        stem, _, tail = name.rpartition(f"{part}{sep}idx")
        if tail[:1].isdigit() and tail[1:] == "-ubyte" and (stem == "" or stem.endswith("-")):
            return True
    return False
