"""Routes that touch the file system: ``/inputimage``, ``/save_image`` and the file manager.

Upstream joined the client's ``filename`` onto ``--output-dir`` unchecked (path traversal); here a
name must be a plain file name, and every read goes through ``send_from_directory``/``safe_join``.
The file manager is on when ``--input`` is a directory; its thumbnails are cached under
``<output-dir>/lama_cleaner_thumbnails`` as upstream names them.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, jsonify, request, send_file, send_from_directory
from PIL import Image, ImageOps, UnidentifiedImageError
from werkzeug.security import safe_join

from ..config import Config
from ..errors import ClientError, NotFound
from ..imaging import check_pixels, decode_image, encode_like
from .errors import text_response
from .state import state

blueprint = Blueprint("media", __name__)

LISTED_SUFFIXES = {".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG"}
THUMBNAIL_DIR = "lama_cleaner_thumbnails"
THUMBNAIL_QUALITY = 90
DEFAULT_THUMBNAIL_WIDTH = 256
MAX_THUMBNAIL_SIDE = 4096


def _expand(path: str | None) -> Path | None:
    return Path(os.path.expanduser(path)) if path else None


def file_manager_enabled(config: Config) -> bool:
    """True when ``--input`` is a directory (``enableFileManager``)."""
    path = _expand(config.input)
    return path is not None and path.is_dir()


def _tab_dir(tab: str) -> Path:
    """``image`` is the input directory; any other tab is the output directory (as upstream)."""
    config = state().config
    if tab == "image":
        if not file_manager_enabled(config):
            raise NotFound("File manager is not enabled (start with --input DIR)")
        return _expand(config.input)  # type: ignore[return-value]
    out = _expand(config.output_dir)
    if out is None:
        raise NotFound("--output-dir is None")
    return out


# ------------------------------------------------------------------ single input image
@blueprint.get("/inputimage")
def input_image() -> Response | str:
    path = _expand(state().config.input)
    if path is None or not path.is_file():
        return "No Input Image"
    try:
        with Image.open(path) as img:
            fmt = (img.format or "jpeg").lower()
    except (OSError, UnidentifiedImageError):
        return "No Input Image"
    return send_file(path, mimetype=f"image/{fmt}", as_attachment=True, download_name=path.name)


# ------------------------------------------------------------------ save
def safe_filename(name: str | None) -> str:
    """A plain file name, or ClientError: no directories, no ``..``, no NUL."""
    if not name or not name.strip():
        raise ClientError("Missing form field: filename")
    if "\x00" in name or "/" in name or "\\" in name or name in {".", ".."} or os.path.basename(name) != name:
        raise ClientError(f"Invalid filename: {name!r} (a plain file name is required)")
    return name


def _write_atomically(target: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".saving-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@blueprint.post("/save_image")
def save_image() -> Response | str:
    config = state().config
    out_dir = _expand(config.output_dir)
    if out_dir is None:
        return text_response("--output-dir is None", 400)
    upload = request.files.get("image")
    if upload is None:
        raise ClientError("Missing file: image")
    filename = safe_filename(request.form.get("filename"))
    data = upload.read()
    check_pixels(data, "image", config.server.max_image_pixels)  # a bomb -> 413 before decoding
    decoded = decode_image(data)  # undecodable -> ClientError (400)
    data = encode_like(decoded.rgb, decoded, quality=config.quality)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_atomically(out_dir / filename, data)
    return "ok"


# ------------------------------------------------------------------ file manager
def _describe(path: Path) -> dict[str, Any] | None:
    try:
        with Image.open(path) as img:
            width, height = img.size
    except (OSError, UnidentifiedImageError):
        return None  # not an image after all: leave it out of the listing
    st = path.stat()
    return {"name": path.name, "height": height, "width": width, "ctime": st.st_ctime, "mtime": st.st_mtime}


@blueprint.get("/medias/<tab>")
def list_medias(tab: str) -> Response:
    folder = _tab_dir(tab)
    if not folder.is_dir():
        return jsonify([])
    entries = [_describe(p) for p in sorted(folder.iterdir()) if p.suffix in LISTED_SUFFIXES and p.is_file()]
    return jsonify([e for e in entries if e is not None])


@blueprint.get("/media/<tab>/<filename>")
def media_file(tab: str, filename: str) -> Response:
    return send_from_directory(_tab_dir(tab), filename)


def _size_arg(name: str) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(float(raw))
    except ValueError as exc:
        raise ClientError(f"{name} must be a number, got {raw!r}") from exc
    if not 0 < value <= MAX_THUMBNAIL_SIDE:
        raise ClientError(f"{name} must be between 1 and {MAX_THUMBNAIL_SIDE}")
    return value


def make_thumbnail(src: Path, cache_dir: Path, width: int | None, height: int | None) -> tuple[Path, int, int]:
    """Fit ``src`` to the requested size (width wins; the other side keeps the aspect) and cache it."""
    with Image.open(src) as img:
        src_w, src_h = img.size
        if width is None and height is None:
            width = DEFAULT_THUMBNAIL_WIDTH
        if width is not None:
            height = max(1, round(width * src_h / src_w))
        else:
            width = max(1, round(height * src_w / src_h))  # type: ignore[operator]
        out = cache_dir / f"{src.stem}_{width}x{height}_fit_{THUMBNAIL_QUALITY}{src.suffix}"
        if not out.is_file():
            thumb = ImageOps.fit(img, (width, height), Image.Resampling.LANCZOS)
            cache_dir.mkdir(parents=True, exist_ok=True)
            fmt = img.format or "PNG"
            if fmt == "JPEG" and thumb.mode not in ("RGB", "L"):
                thumb = thumb.convert("RGB")
            fd, tmp = tempfile.mkstemp(prefix=".thumb-", suffix=src.suffix, dir=cache_dir)
            os.close(fd)
            try:
                thumb.save(tmp, format=fmt, quality=THUMBNAIL_QUALITY)
                os.replace(tmp, out)
            finally:
                Path(tmp).unlink(missing_ok=True)
    return out, width, height  # type: ignore[return-value]


@blueprint.get("/media_thumbnail/<tab>/<filename>")
def media_thumbnail(tab: str, filename: str) -> Response:
    folder = _tab_dir(tab)
    joined = safe_join(str(folder), filename)
    if joined is None or not os.path.isfile(joined):
        raise NotFound(f"File not found: {filename}")
    out_dir = _expand(state().config.output_dir)
    cache_dir = (out_dir or Path(tempfile.gettempdir()) / "lama-cleaner") / THUMBNAIL_DIR
    try:
        path, width, height = make_thumbnail(Path(joined), cache_dir, _size_arg("width"), _size_arg("height"))
    except (OSError, UnidentifiedImageError) as exc:
        raise ClientError(f"Cannot make a thumbnail of {filename}: not a readable image") from exc
    response = send_file(path)
    response.headers["X-Width"] = str(width)
    response.headers["X-Height"] = str(height)
    return response
