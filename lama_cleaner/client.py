"""A small Python client for the ``/api/v1`` task API.

Callers pass only what they change: every ``/inpaint`` field starts from what a fresh 1.2.5 front end
sends (docs/compatibility.md#inpaint-form, HD settings per model from #frontend-defaults), so
``client.inpaint("a.png", "mask.png")`` behaves like one stroke in the browser. Field names may be the
wire spelling (``hdStrategy``) or the Python one (``hd_strategy``). Every non-2xx answer becomes
:class:`ApiError`; network failures stay ``requests`` exceptions so callers can tell "the server said
no" from "the server was not there".
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from dataclasses import fields as dc_fields
from pathlib import Path
from typing import IO, Any
from urllib.parse import urljoin

import requests

from .inpaint_request import InpaintRequest, default_form
from .tasks import TERMINAL_STATES

TOKEN_ENV = "LAMA_CLEANER_TOKEN"
"""Where the client (and so ``lama-cleaner batch``) finds its API token when none is passed."""

FRONTEND_DEFAULTS: dict[str, str] = default_form()
"""The 34 form fields exactly as a fresh 1.2.5 front end sends them (for lama)."""

HD_DEFAULTS: dict[str, tuple[str, int, int, int]] = {
    # model: (hdStrategy, hdStrategyResizeLimit, hdStrategyCropTrigerSize, hdStrategyCropMargin)
    "lama": ("Crop", 2048, 800, 196),
    "ldm": ("Crop", 1080, 1080, 128),
    "zits": ("Crop", 1024, 1024, 128),
    "mat": ("Crop", 1024, 512, 128),
    "fcf": ("Crop", 512, 512, 128),
    "manga": ("Crop", 1280, 1024, 196),
    "cv2": ("Resize", 1080, 512, 128),
}
"""Per-model HD settings of the front end (docs/compatibility.md#frontend-defaults); every other model
sends ``Original``."""
_DIFFUSION_HD = ("Original", 768, 512, 128)

_SNAKE_TO_WIRE = {f.name: f.metadata["form"] for f in dc_fields(InpaintRequest)}
_WIRE_NAMES = frozenset(_SNAKE_TO_WIRE.values())

ImageInput = bytes | str | os.PathLike[str] | IO[bytes]


def hd_defaults(model: str | None) -> dict[str, str]:
    """The four HD fields the front end sends for ``model``."""
    strategy, resize, trigger, margin = HD_DEFAULTS.get(model or "lama", _DIFFUSION_HD)
    return {
        "hdStrategy": strategy,
        "hdStrategyResizeLimit": str(resize),
        "hdStrategyCropTrigerSize": str(trigger),
        "hdStrategyCropMargin": str(margin),
    }


def form_value(value: Any) -> str:
    """How a Python value travels in a multipart form (booleans as the front end writes them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def wire_name(name: str) -> str:
    """``hd_strategy`` -> ``hdStrategy``; wire names pass unchanged; anything else is a ``TypeError``."""
    if name in _WIRE_NAMES:
        return name
    if name in _SNAKE_TO_WIRE:
        return _SNAKE_TO_WIRE[name]
    raise TypeError(f"unknown inpaint field {name!r} (expected one of: {', '.join(sorted(_WIRE_NAMES))})")


def inpaint_form(model: str | None = None, **overrides: Any) -> dict[str, str]:
    """The full ``/inpaint`` form for ``model`` with ``overrides`` applied (wire or snake_case names)."""
    form = dict(FRONTEND_DEFAULTS)
    form.update(hd_defaults(model))
    for name, value in overrides.items():
        form[wire_name(name)] = form_value(value)
    return form


def _read(data: ImageInput, default_name: str) -> tuple[str, bytes]:
    """(file name, bytes) for a path, raw bytes or an open binary file."""
    if isinstance(data, bytes | bytearray | memoryview):
        return default_name, bytes(data)
    if isinstance(data, str | os.PathLike):
        path = Path(data)
        return path.name, path.read_bytes()
    read = getattr(data, "read", None)
    if read is None:
        raise TypeError(f"expected bytes, a path or a binary file for {default_name}, got {type(data).__name__}")
    name = os.path.basename(getattr(data, "name", "") or default_name)
    return name, read()


class ApiError(Exception):
    """A non-2xx answer from the API: HTTP ``status``, stable ``code``, human ``message``."""

    def __init__(self, status: int, code: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        """Worth retrying the same request later (overloaded or a server-side hiccup)."""
        return self.status in (429, 502, 503, 504) or self.status >= 500 and self.code != "task_failed"

    @classmethod
    def from_response(cls, response: requests.Response) -> ApiError:
        code, message = f"http_{response.status_code}", (response.text or response.reason or "").strip()[:500]
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            code = str(body["error"].get("code") or code)
            message = str(body["error"].get("message") or message)
        retry_after = None
        raw = response.headers.get("Retry-After")
        if raw:
            try:
                retry_after = float(raw)
            except ValueError:
                retry_after = None
        return cls(response.status_code, code, message, retry_after=retry_after)


@dataclass
class TaskResult:
    """A finished task's image and the headers ``/inpaint`` would have sent with it."""

    body: bytes
    mimetype: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def seed(self) -> int | None:
        raw = self.headers.get("X-Seed")
        return int(raw) if raw and raw.lstrip("-").isdigit() else None


class LamaCleanerClient:
    """Talks to one server's ``/api/v1``.

    ``timeout`` bounds each HTTP call (not a whole task: see :meth:`wait`). ``socket_id`` is sent as
    ``X-Socket-ID`` so the server targets ``task_status`` events at that Socket.IO client. ``token``
    (default: the ``LAMA_CLEANER_TOKEN`` environment variable, so ``lama-cleaner batch`` needs no flag
    that would show the secret in ``ps``) is sent as a bearer token (docs/security.md#api-tokens).
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8080",
        timeout: float = 30.0,
        *,
        socket_id: str | None = None,
        session: requests.Session | None = None,
        token: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self.timeout = timeout
        self.socket_id = socket_id
        self.session = session or requests.Session()
        token = token if token is not None else os.environ.get(TOKEN_ENV, "").strip()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    # ------------------------------------------------------------------ plumbing
    def url(self, path: str) -> str:
        return urljoin(self.base_url, path.lstrip("/"))

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        response = self.session.request(method, self.url(path), **kwargs)
        if response.status_code >= 400:
            raise ApiError.from_response(response)
        return response

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> LamaCleanerClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ endpoints
    def submit(
        self,
        image: ImageInput,
        mask: ImageInput | None = None,
        model: str | None = None,
        *,
        plugin: str | None = None,
        example_image: ImageInput | None = None,
        extra_files: Mapping[str, ImageInput] | None = None,
        idempotency_key: str | None = None,
        socket_id: str | None = None,
        priority: int | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Queue one task and return it (``status`` is ``queued``, or the existing task's state for a
        repeated ``idempotency_key``).

        Inpainting (default) sends the full front-end field set with ``fields`` applied; with
        ``plugin`` the ``fields`` are that plugin's own (``upscale=4``, ``filename=...``) and sent as is.
        ``priority`` (0-9, higher first; the server's default is 5) orders it in its queue: use a low
        one for background work so interactive requests are not stuck behind it.
        """
        files: dict[str, tuple[str, bytes]] = {"image": _read(image, "image")}
        if plugin:
            form = {name: form_value(value) for name, value in fields.items()}
            form["plugin"] = plugin
        else:
            if mask is None:
                raise TypeError("submit() needs a mask for inpainting (or plugin=...)")
            form = inpaint_form(model, **fields)
            if model:
                form["model"] = model
        if priority is not None:
            form["priority"] = str(priority)
        if mask is not None:
            files["mask"] = _read(mask, "mask")
        if example_image is not None:
            files["paintByExampleImage"] = _read(example_image, "example")
        for name, data in (extra_files or {}).items():
            files[name] = _read(data, name)
        headers = {}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        sid = socket_id or self.socket_id
        if sid:
            headers["X-Socket-ID"] = sid
        return self._request("POST", "api/v1/tasks", data=form, files=files, headers=headers).json()

    def get(self, task_id: str) -> dict[str, Any]:
        return self._request("GET", f"api/v1/tasks/{task_id}").json()

    def wait(self, task_id: str, timeout: float = 600.0, poll: float = 0.2) -> dict[str, Any]:
        """Poll until the task is completed, failed or cancelled; return it. ``TimeoutError`` after
        ``timeout`` seconds. Polling starts fast and backs off to ``poll * 5`` for long tasks."""
        deadline = time.monotonic() + timeout
        delay = min(poll, 0.05)
        while True:
            task = self.get(task_id)
            if task.get("status") in TERMINAL_STATES:
                return task
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"task {task_id} still {task.get('status')} after {timeout:g}s")
            time.sleep(min(delay, remaining))
            delay = min(delay * 1.5, poll * 5)

    def result(self, task_id: str) -> TaskResult:
        response = self._request("GET", f"api/v1/tasks/{task_id}/result")
        mimetype = response.headers.get("Content-Type", "application/octet-stream").split(";")[0]
        return TaskResult(response.content, mimetype, dict(response.headers))

    def cancel(self, task_id: str) -> dict[str, Any]:
        return self._request("DELETE", f"api/v1/tasks/{task_id}").json()

    def list(self, status: str | None = None, limit: int = 50, offset: int = 0) -> dict[str, Any]:
        """One page: ``{"tasks": [...], "total", "limit", "offset", "next"}``."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status:
            params["status"] = status
        return self._request("GET", "api/v1/tasks", params=params).json()

    def iter_tasks(self, status: str | None = None, page_size: int = 100) -> Iterator[dict[str, Any]]:
        """Every task (newest first), following ``next`` links."""
        offset = 0
        while True:
            page = self.list(status, limit=page_size, offset=offset)
            yield from page["tasks"]
            if not page.get("next") or not page["tasks"]:
                return
            offset += len(page["tasks"])

    def queues(self) -> list[dict[str, Any]]:
        return self._request("GET", "api/v1/queues").json()["queues"]

    def nodes(self) -> list[dict[str, Any]]:
        return self._request("GET", "api/v1/nodes").json()["nodes"]

    def openapi(self) -> dict[str, Any]:
        return self._request("GET", "api/v1/openapi.json").json()

    # ------------------------------------------------------------------ convenience
    def inpaint(
        self,
        image: ImageInput,
        mask: ImageInput,
        model: str | None = None,
        *,
        timeout: float = 600.0,
        **fields: Any,
    ) -> TaskResult:
        """Submit, wait and fetch in one call; a failed or cancelled task raises :class:`ApiError`."""
        task = self.submit(image, mask, model, **fields)
        done = self.wait(task["id"], timeout=timeout)
        if done["status"] != "completed":
            code = "task_failed" if done["status"] == "failed" else "cancelled"
            raise ApiError(409, code, done.get("error") or f"task {done['status']}")
        return self.result(task["id"])
