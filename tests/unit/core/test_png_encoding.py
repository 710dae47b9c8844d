"""PNG replies from the fast encoder: the pixels and metadata Pillow's writer gives, for every setting."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageCms

from lama_cleaner import imaging
from lama_cleaner.config import Config
from lama_cleaner.png_encoding import FILTERS, STRATEGIES, PngSettings, iter_chunks
from tests.support.photo_like import photo_like

PILLOW = PngSettings(encoder="pillow")


def _exif(orientation: int = 1) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "Camera maker"
    exif[0x9003] = "2024:01:02 03:04:05"
    return exif.tobytes()


def _metadata(data: bytes) -> list[tuple[bytes, bytes]]:
    """Every chunk but the image data and the header (which says the same in both, but not byte for byte)."""
    return [(kind, payload) for kind, payload in iter_chunks(data) if kind not in (b"IDAT", b"IEND")]


def _pixels(data: bytes) -> tuple[str, np.ndarray]:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img.mode, np.asarray(img)


@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize(
    "settings",
    [PngSettings()]
    + [PngSettings(strategy=s) for s in STRATEGIES]
    + [PngSettings(filter=f) for f in FILTERS]
    + [PngSettings(compression=level) for level in (0, 9)],
    ids=lambda s: f"{s.compression}-{s.strategy}-{s.filter}",
)
def test_fast_png_has_the_pixels_of_pillows_png(settings, channels):
    rgb = photo_like(67, 131, seed=channels)
    arr = rgb if channels == 3 else np.dstack([rgb, (np.arange(67 * 131) % 256).reshape(67, 131).astype(np.uint8)])
    fast = imaging.encode_image(arr, "png", quality=95, png=settings)
    old = imaging.encode_image(arr, "png", quality=95, png=PILLOW)
    fast_mode, fast_pixels = _pixels(fast)
    old_mode, old_pixels = _pixels(old)
    assert fast_mode == old_mode == ("RGB" if channels == 3 else "RGBA")
    np.testing.assert_array_equal(fast_pixels, old_pixels)
    np.testing.assert_array_equal(fast_pixels, arr)


def test_fast_png_keeps_exactly_pillows_metadata_chunks():
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    kwargs = {"exif": _exif(), "parameters": "a cat, Steps: 20", "icc_profile": icc}
    arr = photo_like(40, 30, seed=5)
    fast = imaging.encode_image(arr, "png", quality=95, **kwargs)
    old = imaging.encode_image(arr, "png", quality=95, png=PILLOW, **kwargs)
    assert _metadata(fast) == _metadata(old)
    assert [k for k, _ in _metadata(fast)] == [b"IHDR", b"iCCP", b"tEXt", b"eXIf"]
    reply = Image.open(io.BytesIO(fast))
    assert reply.info["parameters"] == "a cat, Steps: 20"
    assert reply.info["icc_profile"] == icc
    assert reply.getexif()[0x010F] == "Camera maker"


def test_a_png_reply_through_encode_like_is_pixel_identical_with_orientation_reset():
    arr = photo_like(20, 36, seed=2)
    out = io.BytesIO()
    Image.fromarray(arr).save(out, "PNG", exif=_exif(orientation=6), pnginfo=None)
    src = imaging.decode_image(out.getvalue())
    fast = imaging.encode_like(src.rgb, src, quality=95)
    old = imaging.encode_like(src.rgb, src, quality=95, png=PILLOW)
    assert _metadata(fast) == _metadata(old)
    np.testing.assert_array_equal(_pixels(fast)[1], _pixels(old)[1])
    assert Image.open(io.BytesIO(fast)).getexif()[0x0112] == 1


def test_pillow_encoder_setting_gives_pillows_bytes_and_other_arrays_fall_back_to_pillow():
    arr = photo_like(16, 16, seed=1)
    out = io.BytesIO()
    Image.fromarray(arr).save(out, "PNG", quality=95)
    assert imaging.encode_image(arr, "png", quality=95, png=PILLOW) == out.getvalue()
    grey = arr[:, :, 0]
    assert _pixels(imaging.encode_image(grey, "png", quality=95))[0] == "L"


def test_jpeg_and_webp_keep_their_quality_semantics():
    arr = photo_like(64, 64, seed=3)
    for fmt in ("jpeg", "webp"):
        out = io.BytesIO()
        Image.fromarray(arr).save(out, fmt.upper(), quality=80)
        assert imaging.encode_image(arr, fmt, quality=80) == out.getvalue(), fmt


def test_png_settings_come_from_the_core_config():
    config = Config()
    assert PngSettings.from_config(config) == PngSettings()
    config.png_encoder, config.png_compression, config.png_strategy, config.png_filter = "pillow", 6, "huffman", "up"
    assert PngSettings.from_config(config) == PngSettings("pillow", 6, "huffman", "up")
