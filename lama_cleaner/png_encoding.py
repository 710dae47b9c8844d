"""Fast lossless PNG replies: OpenCV's libpng/zlib writes the pixels, Pillow writes the metadata.

Why: Pillow's PNG writer (zlib level 6, adaptive filters) took most of a request's time (114 of 165 ms
for a 512x512 reply on a GPU box; ~500 ms at 1920x1080 on this project's CPUs). PNG is lossless, so any
encoder gives the client the same pixels; only the compressed bytes differ. OpenCV at zlib level 1 with
the RLE strategy and the SUB filter encodes a photo-like 1080p image about 9x faster than Pillow's
default at about the same size (``benchmarks/bench_codecs.py`` measures every combination; its table is
in ``benchmarks/README.md``).

Metadata stays exactly Pillow's: the chunks Pillow would write before the image data (iCCP, the
``parameters`` tEXt, eXIf) are taken from Pillow's own encoding of a 1x1 image of the same mode with the
same arguments and spliced in after OpenCV's IHDR. So the compatibility contract
(docs/compatibility.md#encoding) holds by construction rather than by a second implementation of it.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

ENCODERS = ("opencv", "pillow")
STRATEGIES = ("default", "filtered", "huffman", "rle", "fixed")
FILTERS = ("none", "sub", "up", "avg", "paeth", "fast", "all")


@dataclass(frozen=True)
class PngSettings:
    """How PNG replies are compressed (the core settings ``png_*``; docs/configuration.md).

    ``encoder="pillow"`` is the encoder of lama-cleaner 1.2.x (zlib level 6, slow); the others only
    apply to ``opencv``: ``compression`` is the zlib level (0-9), ``strategy`` zlib's strategy and
    ``filter`` the PNG row filter (``fast``: none/sub/up chosen per row; ``all``: libpng's adaptive choice).
    """

    encoder: str = "opencv"
    compression: int = 1
    strategy: str = "rle"
    filter: str = "sub"

    @classmethod
    def from_config(cls, config: Any) -> PngSettings:
        """The settings of a ``Config`` (any object with the ``png_*`` attributes; missing ones keep defaults)."""
        default = cls()
        return cls(
            encoder=str(getattr(config, "png_encoder", default.encoder)),
            compression=int(getattr(config, "png_compression", default.compression)),
            strategy=str(getattr(config, "png_strategy", default.strategy)),
            filter=str(getattr(config, "png_filter", default.filter)),
        )


def _opencv_params(settings: PngSettings) -> list[int]:
    import cv2

    strategy = {
        "default": cv2.IMWRITE_PNG_STRATEGY_DEFAULT,
        "filtered": cv2.IMWRITE_PNG_STRATEGY_FILTERED,
        "huffman": cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY,
        "rle": cv2.IMWRITE_PNG_STRATEGY_RLE,
        "fixed": cv2.IMWRITE_PNG_STRATEGY_FIXED,
    }[settings.strategy]
    row_filter = {
        "none": cv2.IMWRITE_PNG_FILTER_NONE,
        "sub": cv2.IMWRITE_PNG_FILTER_SUB,
        "up": cv2.IMWRITE_PNG_FILTER_UP,
        "avg": cv2.IMWRITE_PNG_FILTER_AVG,
        "paeth": cv2.IMWRITE_PNG_FILTER_PAETH,
        "fast": cv2.IMWRITE_PNG_FAST_FILTERS,
        "all": cv2.IMWRITE_PNG_ALL_FILTERS,
    }[settings.filter]
    return [
        cv2.IMWRITE_PNG_COMPRESSION,
        int(settings.compression),
        cv2.IMWRITE_PNG_STRATEGY,
        strategy,
        cv2.IMWRITE_PNG_FILTER,
        row_filter,
    ]


def iter_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """``[(type, payload), ...]`` of a PNG file, in order (CRCs are not checked: our own output)."""
    if not data.startswith(PNG_MAGIC):
        raise ValueError("not a PNG file")
    chunks: list[tuple[bytes, bytes]] = []
    pos = len(PNG_MAGIC)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        chunks.append((kind, data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return chunks


def _metadata_chunks(mode: str, pillow_kwargs: dict[str, Any]) -> bytes:
    """The raw chunks (length, type, data, CRC) Pillow writes between IHDR and the first IDAT."""
    from PIL import Image

    out = io.BytesIO()
    Image.new(mode, (1, 1)).save(out, format="PNG", **pillow_kwargs)
    data = out.getvalue()
    pos = len(PNG_MAGIC)
    start = end = None
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind == b"IHDR":
            start = pos + 12 + length
        elif kind == b"IDAT":
            end = pos
            break
        pos += 12 + length
    if start is None or end is None:  # pragma: no cover - Pillow always writes both
        raise ValueError("unexpected PNG layout from Pillow")
    return data[start:end]


def can_encode_fast(arr: np.ndarray, settings: PngSettings) -> bool:
    """The OpenCV path takes 8-bit RGB or RGBA arrays; anything else goes to Pillow."""
    return settings.encoder == "opencv" and arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] in (3, 4)


def encode_png_fast(arr: np.ndarray, settings: PngSettings, pillow_kwargs: dict[str, Any]) -> bytes:
    """Encode an RGB(A) uint8 array with OpenCV and Pillow's metadata chunks for ``pillow_kwargs``."""
    import cv2

    code = cv2.COLOR_RGB2BGR if arr.shape[2] == 3 else cv2.COLOR_RGBA2BGRA
    ok, buf = cv2.imencode(".png", cv2.cvtColor(arr, code), _opencv_params(settings))
    if not ok:  # pragma: no cover - OpenCV fails only on unsupported input, excluded above
        raise ValueError("OpenCV could not encode the PNG")
    body = buf.tobytes()
    meta = _metadata_chunks("RGB" if arr.shape[2] == 3 else "RGBA", pillow_kwargs)
    if not meta:
        return body
    # OpenCV's file starts with the signature and IHDR (25 bytes: 8 + 4 length + 4 type + 13 data + 4 CRC).
    ihdr_end = len(PNG_MAGIC) + 12 + struct.unpack(">I", body[8:12])[0]
    return body[:ihdr_end] + meta + body[ihdr_end:]
