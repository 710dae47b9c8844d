"""Decode/encode as docs/compatibility.md#decoding and #encoding describe: EXIF, alpha, formats,
parameters, ICC, bad bytes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageCms

from lama_cleaner import imaging
from lama_cleaner.errors import ClientError

from .images import decode, encode, mask_bytes, pixels


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [("PNG", "png"), ("JPEG", "jpeg"), ("GIF", "gif"), ("TIFF", "tiff"), ("WEBP", "webp"), ("BMP", "bmp")],
)
def test_sniffer_recognises_writable_formats(fmt, expected):
    assert imaging.sniff_format(encode(pixels(8, 8), fmt)) == expected


def test_unknown_bytes_fall_back_to_jpeg():
    assert imaging.sniff_format(b"P6\n8 8\n255\n") is None
    assert imaging.output_format(b"P6\n8 8\n255\n") == "jpeg"
    # a JPEG whose first segment is neither JFIF nor Exif (imghdr missed these) is still jpeg
    assert imaging.sniff_format(b"\xff\xd8\xff\xdb" + b"\0" * 20) == "jpeg"


def test_exif_orientation_rotates_pixels_and_is_reset_to_1_in_the_reply():
    arr = pixels(20, 40)  # height 20, width 40
    data = encode(arr, "JPEG", orientation=6, quality=95)
    src = imaging.decode_image(data)
    assert src.size == (40, 20), "orientation 6 swaps width and height"
    assert imaging.upright_size(data, "image") == (40, 20), "header-only size agrees with the decode"
    reply = decode(imaging.encode_like(src.rgb, src, quality=95))
    assert reply.size == (20, 40)
    exif = reply.getexif()
    assert exif[0x0112] == 1, "the stale Orientation tag must not make viewers rotate again"
    assert exif[0x010F] == "TestMake", "other EXIF tags are kept"


def test_rotation_matches_pillow_exif_transpose():
    arr = pixels(10, 16)
    data = encode(arr, "PNG", orientation=8)
    expected = np.asarray(Image.fromarray(arr).transpose(Image.Transpose.ROTATE_90))
    np.testing.assert_array_equal(imaging.decode_image(data).rgb, expected)


def test_rgba_alpha_is_split_untouched_and_reattached():
    arr = pixels(12, 14, channels=4)
    src = imaging.decode_image(encode(arr, "PNG"))
    np.testing.assert_array_equal(src.rgb, arr[:, :, :3])
    np.testing.assert_array_equal(src.alpha, arr[:, :, 3])
    out = decode(imaging.encode_like(src.rgb, src, quality=95))
    assert out.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(out), arr)


def test_non_rgba_modes_become_rgb_and_lose_transparency():
    la = Image.fromarray(pixels(6, 6)[:, :, 0]).convert("LA")
    import io

    buf = io.BytesIO()
    la.save(buf, format="PNG")
    src = imaging.decode_image(buf.getvalue())
    assert src.alpha is None and src.rgb.shape == (6, 6, 3)


def test_alpha_is_dropped_instead_of_crashing_for_jpeg_output():
    arr = pixels(8, 8, channels=4)
    body = imaging.encode_image(arr, "jpeg", quality=90)
    assert decode(body).mode == "RGB"


@pytest.mark.parametrize(
    ("fmt", "lossless"),
    [("PNG", True), ("BMP", True), ("TIFF", True), ("JPEG", False), ("WEBP", False), ("GIF", False)],
)
def test_format_round_trip_keeps_format_and_size(fmt, lossless):
    arr = pixels(24, 32)
    data = encode(arr, fmt)
    src = imaging.decode_image(data)
    body = imaging.encode_like(src.rgb, src, quality=95)
    assert imaging.sniff_format(body) == imaging.sniff_format(data)
    out = decode(body)
    assert out.size == (32, 24)
    if lossless:
        np.testing.assert_array_equal(np.asarray(out.convert("RGB")), arr)


def test_alpha_survives_in_formats_that_carry_it():
    arr = pixels(8, 8, channels=4)
    for fmt in ("PNG", "WEBP", "TIFF"):
        src = imaging.decode_image(encode(arr, fmt, **({"lossless": True} if fmt == "WEBP" else {})))
        assert src.alpha is not None, fmt
        assert decode(imaging.encode_like(src.rgb, src, quality=100)).mode == "RGBA", fmt


def test_animated_gif_uses_first_frame():
    frames = [Image.fromarray(np.full((6, 6, 3), v, np.uint8)) for v in (10, 200)]
    import io

    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    src = imaging.decode_image(buf.getvalue())
    assert int(src.rgb.mean()) < 50


def test_png_parameters_text_is_kept():
    data = encode(pixels(8, 8), "PNG", parameters="a cat, Steps: 20")
    src = imaging.decode_image(data)
    assert src.parameters == "a cat, Steps: 20"
    assert decode(imaging.encode_like(src.rgb, src, quality=95)).info["parameters"] == "a cat, Steps: 20"


def test_quality_is_applied():
    src = imaging.decode_image(encode(pixels(64, 64, seed=3), "JPEG", quality=100))
    small = imaging.encode_like(src.rgb, src, quality=20)
    large = imaging.encode_like(src.rgb, src, quality=95)
    assert len(small) < len(large)


def test_rgb_icc_profile_is_kept():
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = imaging.decode_image(encode(pixels(8, 8), "PNG", icc_profile=icc))
    assert decode(imaging.encode_like(src.rgb, src, quality=95)).info.get("icc_profile") == icc


def test_icc_of_converted_modes_is_dropped():
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    grey = pixels(8, 8)[:, :, 0]
    src = imaging.decode_image(encode(grey, "PNG", icc_profile=icc))
    assert src.icc_profile is None


@pytest.mark.parametrize("data", [b"", b"not an image", encode(pixels(8, 8), "PNG")[:40]])
def test_undecodable_image_is_a_short_400(data):
    with pytest.raises(ClientError) as err:
        imaging.decode_image(data, "image")
    assert str(err.value) == "Invalid image: cannot decode 'image'"
    assert err.value.status == 400


def test_mask_ignores_alpha_and_thresholds_at_127():
    arr = np.zeros((4, 4, 4), np.uint8)  # transparent black -> 0
    arr[0, 0] = (255, 255, 255, 255)  # white brush
    arr[0, 1] = (255, 203, 0, 255)  # interactive-seg yellow (~195 in L) counts
    arr[0, 2] = (100, 100, 100, 255)  # dark grey does not
    arr[0, 3] = (255, 255, 255, 0)  # fully transparent white still counts: alpha is ignored
    mask = imaging.decode_mask(encode(arr, "PNG"))
    assert mask.dtype == np.uint8 and mask.shape == (4, 4)
    assert list(mask[0]) == [255, 255, 0, 255]
    assert mask[1:].max() == 0


def test_mask_is_exif_transposed_too():
    data = encode(np.zeros((10, 30, 3), np.uint8), "JPEG", orientation=6)
    assert imaging.decode_mask(data).shape == (30, 10)
    assert imaging.upright_size(mask_bytes(10, 30, []), "mask") == (10, 30)


def test_mismatch_message_is_upstreams_text():
    assert imaging.mask_mismatch_message((10, 20), (30, 40)) == "Mask shape(10, 20) not queal to Image shape(30, 40)"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "TIFF"])
def test_header_size_honours_orientation_in_every_exif_format(fmt):
    data = encode(pixels(10, 30), fmt, orientation=6)
    assert imaging.upright_size(data, "image") == imaging.decode_image(data).size == (30, 10)
