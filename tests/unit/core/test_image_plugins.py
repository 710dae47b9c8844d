"""Image plugins: MakeGIF output, registry order/404, optional plugins left out with a reason."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
from PIL import Image

from lama_cleaner.config import Config
from lama_cleaner.errors import ClientError, NotFound
from lama_cleaner.image_plugins.builtin import enabled_plugin_classes
from lama_cleaner.image_plugins.make_gif import MakeGIF, content_disposition
from lama_cleaner.image_plugins.optional import InteractiveSeg, RealESRGAN, parse_clicks, seg_overlay
from lama_cleaner.image_plugins.registry import build_image_plugin_registry
from lama_cleaner.tasks import TaskRequest

from .images import encode, pixels


def gif_task(height: int, width: int, filename: str = "result.gif") -> TaskRequest:
    before = np.zeros((height, width, 3), np.uint8)
    after = np.full((height, width, 3), 255, np.uint8)
    after[:, :, 2] = 0  # yellow
    return TaskRequest(
        kind="plugin",
        name="MakeGIF",
        form={"filename": filename},
        files={"image": encode(before), "clean_img": encode(after, "JPEG")},
    )


def test_make_gif_is_a_looping_wipe_animation():
    out = MakeGIF(Config()).run(gif_task(300, 1200), Config())
    assert out.mimetype == "image/gif"
    assert out.headers == {"Content-Disposition": "attachment; filename=result.gif"}
    gif = Image.open(io.BytesIO(out.body))
    assert gif.size == (600, 150), "longest side scaled to 600"
    assert gif.n_frames == 160 and gif.info["loop"] == 0
    first = np.asarray(gif.convert("RGB")).copy()
    gif.seek(40)
    assert gif.info["duration"] == 20
    middle = np.asarray(gif.convert("RGB"))
    assert first.max() == 0, "starts on the original"
    assert middle[:, :100, 0].min() > 200 and middle[:, -100:].max() == 0, "clean image wipes in from the left"
    gif.seek(80)
    assert np.asarray(gif.convert("RGB"))[:, :, 0].min() > 200, "then shows the cleaned image"


def test_make_gif_keeps_small_images_and_needs_filename():
    out = MakeGIF(Config()).run(gif_task(40, 30), Config())
    assert Image.open(io.BytesIO(out.body)).size == (30, 40)
    task = gif_task(10, 10)
    del task.form["filename"]
    with pytest.raises(ClientError, match="^Missing form field: filename$"):
        MakeGIF(Config()).run(task, Config())


def test_content_disposition_escapes_odd_names():
    assert content_disposition('my "pic".gif') == 'attachment; filename="my \\"pic\\".gif"'
    assert content_disposition("ça.gif") == "attachment; filename=ca.gif; filename*=UTF-8''%C3%A7a.gif"
    assert "\n" not in content_disposition("a\r\nSet-Cookie: x.gif")


def test_registry_lists_enabled_plugins_in_upstream_order_and_404s_others(pm):
    registry = build_image_plugin_registry(pm, Config(enable_gif=True))
    assert registry.names() == ["MakeGIF"]
    assert registry.get("MakeGIF").resource_class == "cpu"
    with pytest.raises(NotFound) as err:
        registry.get("RemoveBG")
    assert str(err.value) == "Plugin not found" and err.value.status == 404
    assert build_image_plugin_registry(pm, Config()).names() == []


def test_enabled_but_unavailable_plugins_are_left_out_with_a_warning(caplog):
    config = Config(enable_remove_bg=True, enable_anime_seg=True, enable_realesrgan=True, enable_gif=True)
    with caplog.at_level(logging.WARNING):
        classes = enabled_plugin_classes(config)
    assert [c.name for c in classes] == ["MakeGIF"]
    text = caplog.text
    assert "RemoveBG" in text and "AnimeSeg" in text and "RealESRGAN" in text


def test_device_flags_decide_resource_class():
    assert RealESRGAN.resource_class_for(Config(realesrgan_device="cuda")) == "gpu"
    assert RealESRGAN.resource_class_for(Config(realesrgan_device="cpu")) == "cpu"
    assert InteractiveSeg.resource_class_for(Config(interactive_seg_device="cuda")) == "gpu"


def test_interactive_seg_helpers():
    points, labels = parse_clicks("[[10, 20, 1, 0], [5.5, 6, 0, 1]]")
    assert points.tolist() == [[10.0, 20.0], [5.5, 6.0]] and labels.tolist() == [1, 0]
    with pytest.raises(ClientError):
        parse_clicks("not json")
    mask = np.zeros((20, 20), bool)
    mask[10, 10] = True
    overlay = seg_overlay(mask)
    assert overlay[10, 14].tolist() == [255, 203, 0, 186] and overlay[10, 15].tolist() == [0, 0, 0, 0]


def test_plugin_validation_reads_headers_only():
    task = gif_task(10, 10)
    task.files["clean_img"] = b"junk"
    with pytest.raises(ClientError, match="^Invalid image: cannot decode 'clean_img'$"):
        MakeGIF.validate_request(task)
    ok = TaskRequest(kind="plugin", name="RealESRGAN", form={"upscale": "4"}, files={"image": encode(pixels(4, 4))})
    RealESRGAN.validate_request(ok)
    ok.form["upscale"] = "huge"
    with pytest.raises(ClientError, match="^Invalid value for upscale: huge$"):
        RealESRGAN.validate_request(ok)
