"""Decoding uploads and encoding replies the way lama-cleaner 1.2.x does (docs/compatibility.md#decoding and #encoding).

One module owns every pixel-format decision so ``/inpaint``, ``/run_plugin`` and ``/save_image`` agree:

* EXIF and the A1111 ``parameters`` text are captured *before* ``exif_transpose`` rotates the pixels.
* The EXIF written back keeps every tag except Orientation, which is reset to 1: the pixels are already
  upright, and upstream's stale tag makes viewers rotate a second time (see docs/compatibility.md).
* ``RGBA`` images have their alpha split off untouched; every other mode is converted to RGB.
* The reply format is sniffed from the uploaded bytes (our own magic-byte check; ``imghdr`` is gone in
  Python 3.13), falling back to JPEG, and alpha is only re-attached where the format can carry it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin

from .errors import ClientError, TooLarge

ORIENTATION_TAG = 0x0112
ROTATING_ORIENTATIONS = frozenset({5, 6, 7, 8})
"""EXIF orientations that swap width and height once applied."""

ALPHA_FORMATS = frozenset({"png", "webp", "tiff", "gif"})
"""Output formats whose Pillow writer keeps an alpha channel (BMP is written but read back as RGB)."""

ICC_FORMATS = frozenset({"jpeg", "png", "webp", "tiff"})
FALLBACK_FORMAT = "jpeg"


def sniff_format(data: bytes) -> str | None:
    """The image format named by the leading magic bytes, for the formats Pillow can also write.

    Covers what stdlib ``imghdr`` recognised among writable formats (jpeg, png, gif, tiff, webp, bmp);
    unlike ``imghdr`` any JPEG SOI marker counts, not only JFIF/Exif first segments.
    """
    head = data[:16]
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] in (b"MM\x00*", b"II*\x00"):
        return "tiff"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith(b"BM"):
        return "bmp"
    return None


def output_format(data: bytes) -> str:
    """The format a reply is encoded in: the sniffed input format, else JPEG (upstream's fallback)."""
    return sniff_format(data) or FALLBACK_FORMAT


@dataclass
class DecodedImage:
    """An upright RGB image plus everything needed to encode a faithful reply.

    ``exif`` already has Orientation reset to 1; ``icc_profile`` is kept only when the source pixels were
    RGB(A), because a CMYK or grey profile would mislabel the converted RGB pixels.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    format: str
    exif: bytes | None = None
    parameters: str | None = None
    icc_profile: bytes | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the upright image."""
        return int(self.rgb.shape[0]), int(self.rgb.shape[1])


def _invalid(field: str) -> ClientError:
    return ClientError(f"Invalid image: cannot decode '{field}'")


def _bomb(field: str, exc: Exception) -> TooLarge:
    """Pillow's own decompression-bomb refusal (beyond twice ``Image.MAX_IMAGE_PIXELS``), as a 413."""
    return TooLarge(f"Image too large: '{field}' has more pixels than this server decodes ({exc})")


def _open(data: bytes, field: str) -> Image.Image:
    if not data:
        raise _invalid(field)
    try:
        img = Image.open(io.BytesIO(data))
        img.seek(0)  # animated GIF/TIFF/WebP: first frame only
        img.load()
    except Image.DecompressionBombError as exc:
        raise _bomb(field, exc) from exc
    except Exception as exc:  # Pillow raises many types for bad bytes; all mean "bad input"
        raise _invalid(field) from exc
    return img


def _transpose(img: Image.Image) -> Image.Image:
    """``exif_transpose`` with errors swallowed, as upstream does (a broken EXIF block is not fatal)."""
    try:
        return ImageOps.exif_transpose(img) or img
    except Exception:
        return img


def _exif_for_output(img: Image.Image) -> bytes | None:
    try:
        exif = img.getexif()
    except Exception:
        return None
    if not exif:
        return None
    try:
        raw = exif.tobytes()
        if ORIENTATION_TAG not in exif:
            return raw
        # Work on a copy: the image's own Exif object still drives exif_transpose.
        copy = Image.Exif()
        copy.load(raw)
        copy[ORIENTATION_TAG] = 1
        return copy.tobytes()
    except Exception:
        return None


def _rgb_icc(img: Image.Image) -> bytes | None:
    icc = img.info.get("icc_profile")
    if not icc or img.mode not in ("RGB", "RGBA"):
        return None
    # ICC header bytes 16..20 hold the data colour space signature.
    return icc if icc[16:20] == b"RGB " else None


def decode_image(data: bytes, field: str = "image") -> DecodedImage:
    """Decode an uploaded image as docs/compatibility.md#decoding describes (raises ``ClientError`` on bad bytes)."""
    img = _open(data, field)
    exif = _exif_for_output(img)
    parameters = img.info.get("parameters")
    icc = _rgb_icc(img)
    img = _transpose(img)
    try:
        if img.mode == "RGBA":
            rgba = np.asarray(img)
            rgb = np.ascontiguousarray(rgba[:, :, :3])
            alpha: np.ndarray | None = np.ascontiguousarray(rgba[:, :, 3])
        else:
            rgb = np.asarray(img.convert("RGB")).copy()
            alpha = None
    except Exception as exc:
        raise _invalid(field) from exc
    return DecodedImage(
        rgb=rgb,
        alpha=alpha,
        format=output_format(data),
        exif=exif,
        parameters=parameters if isinstance(parameters, str) else None,
        icc_profile=icc,
    )


def decode_mask(data: bytes, field: str = "mask") -> np.ndarray:
    """Decode a mask: EXIF-transpose, grey (alpha ignored), binarise ``> 127`` to 255. Returns (H, W) uint8."""
    img = _transpose(_open(data, field))
    try:
        grey = np.asarray(img.convert("L"))
    except Exception as exc:
        raise _invalid(field) from exc
    return np.where(grey > 127, 255, 0).astype(np.uint8)


def upright_size(data: bytes, field: str) -> tuple[int, int]:
    """(height, width) after EXIF rotation, read from the header only (no pixel decode where avoidable)."""
    if not data:
        raise _invalid(field)
    try:
        img = Image.open(io.BytesIO(data))
        width, height = img.size
        raw = img.info.get("exif")
        if img.format == "PNG":
            # PngImageFile.getexif() would decode the whole image looking for a late eXIf chunk.
            exif = Image.Exif()
            if raw:
                exif.load(raw)
            orientation = exif.get(ORIENTATION_TAG, 1)
        elif img.format == "TIFF":
            # Recent Pillow already reports a rotated size for TIFF; start from the stored dimensions.
            tags = img.tag_v2
            width, height = int(tags.get(256, width)), int(tags.get(257, height))
            orientation = tags.get(ORIENTATION_TAG, 1)
        else:
            orientation = img.getexif().get(ORIENTATION_TAG, 1)
    except Image.DecompressionBombError as exc:
        raise _bomb(field, exc) from exc
    except Exception as exc:
        raise _invalid(field) from exc
    if orientation in ROTATING_ORIENTATIONS:
        width, height = height, width
    return height, width


def check_pixels(data: bytes, field: str, max_pixels: int) -> None:
    """Refuse (413) an upload whose header declares more than ``max_pixels`` pixels, before anything
    decodes it: a few kilobytes of PNG can declare 50,000 x 50,000 zero pixels (a decompression bomb).
    Bytes that are no image pass here; the checks that need an image refuse them with a 400."""
    try:
        height, width = upright_size(data, field)
    except ClientError:
        return
    if height * width > max_pixels:
        raise TooLarge(
            f"Image too large: '{field}' is {width}x{height} ({width * height} pixels); "
            f"this server accepts at most {max_pixels} pixels (server.max_image_pixels)"
        )


def mask_mismatch_message(mask_hw: tuple[int, int], image_hw: tuple[int, int]) -> str:
    """Upstream's exact 400 text, typo included (the front end shows it verbatim)."""
    return f"Mask shape{tuple(mask_hw)} not queal to Image shape{tuple(image_hw)}"


def attach_alpha(rgb: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """Re-attach the original alpha (resized with OpenCV's default interpolation if the size changed)."""
    if alpha is None:
        return rgb
    if alpha.shape[:2] != rgb.shape[:2]:
        import cv2

        alpha = cv2.resize(alpha, (rgb.shape[1], rgb.shape[0]))
    return np.dstack([rgb, alpha]).astype(np.uint8)


def encode_image(
    pixels: np.ndarray,
    fmt: str,
    *,
    quality: int,
    exif: bytes | None = None,
    parameters: str | None = None,
    icc_profile: bytes | None = None,
) -> bytes:
    """Encode RGB or RGBA pixels with Pillow in ``fmt`` (docs/compatibility.md#encoding).

    An RGBA array is written with its alpha only when ``fmt`` can carry it; otherwise the alpha is dropped
    (upstream crashes with a 500 for RGBA + the JPEG fallback).
    """
    fmt = fmt.lower()
    arr = np.ascontiguousarray(pixels, dtype=np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 4 and fmt not in ALPHA_FORMATS:
        arr = np.ascontiguousarray(arr[:, :, :3])
    img = Image.fromarray(arr)
    kwargs: dict[str, object] = {"quality": int(quality)}
    if exif:
        kwargs["exif"] = exif
    if icc_profile and fmt in ICC_FORMATS:
        kwargs["icc_profile"] = icc_profile
    if fmt == "png" and parameters:
        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", parameters)
        kwargs["pnginfo"] = info
    out = io.BytesIO()
    img.save(out, format=fmt.upper(), **kwargs)
    return out.getvalue()


def encode_like(pixels: np.ndarray, source: DecodedImage, *, quality: int, fmt: str | None = None) -> bytes:
    """Encode ``pixels`` (RGB) as a reply to ``source``: its format (or ``fmt``), alpha, EXIF, parameters, ICC."""
    return encode_image(
        attach_alpha(pixels, source.alpha),
        fmt or source.format,
        quality=quality,
        exif=source.exif,
        parameters=source.parameters,
        icc_profile=source.icc_profile,
    )


def mimetype(fmt: str) -> str:
    return f"image/{fmt.lower()}"
