"""A reader for the IDX format of MNIST and FashionMNIST (gzip-compressed or plain).

IDX (LeCun et al., http://yann.lecun.com/exdb/mnist/): a 4-byte magic number ``0x0000TTDD``
(two zero bytes, a type code ``TT``, the number of dimensions ``DD``), then ``DD`` big-endian
uint32 sizes, then the values in C order, big-endian. MNIST's images have magic ``0x00000803``
(uint8, 3 dimensions), its labels ``0x00000801``.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["IDX_DTYPES", "read_idx"]

IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
"""The IDX type codes and their (big-endian) numpy dtypes."""

_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file, gzip-compressed or not (recognised by its bytes, not its name).

    Args:
        path: The ``*-idx?-ubyte`` or ``*-idx?-ubyte.gz`` file.

    Returns:
        The array, in native byte order, with the shape stored in the header, e.g.
        ``(60000, 28, 28)`` uint8 for MNIST's training images.

    Raises:
        ValueError: The bytes are not IDX: a bad magic number (non-zero leading bytes or an
            unknown type code), a truncated header, or a payload whose length differs from
            the header's shape; or a corrupt gzip stream. The message names the file.

    Examples:
        >>> read_idx("MNIST/raw/t10k-labels-idx1-ubyte.gz").shape  # doctest: +SKIP
        (10000,)
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise ValueError(f"{path}: corrupt gzip stream: {err}") from err
    if len(raw) < 4:
        raise ValueError(
            f"{path}: not an IDX file: {len(raw)} bytes, shorter than the magic number"
        )
    zero0, zero1, code, ndim = raw[0], raw[1], raw[2], raw[3]
    if zero0 != 0 or zero1 != 0 or code not in IDX_DTYPES:
        raise ValueError(
            f"{path}: not an IDX file: magic number 0x{raw[:4].hex()}, expected 0x0000TTDD "
            f"with type code TT in {{{', '.join(f'0x{c:02x}' for c in IDX_DTYPES)}}}"
        )
    if ndim == 0:
        raise ValueError(f"{path}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header: {len(raw)} bytes, expected >= {header}")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{path}: IDX payload is {len(raw) - header} bytes, expected {expected} for shape "
            f"{shape} of {dtype.name}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=True)
