"""The image-plugin base class: cheap to construct, lazy to load, one request at a time unless thread-safe.

Plugins are built wherever a registry is built (web server and executor), so ``__init__`` must not load
weights; ``load`` runs once, on first use. ``run`` holds a per-instance lock around ``process`` unless the
plugin says it is ``thread_safe``: upstream shared plugin state between concurrent requests, which mixed
images under load (IOPaint #616).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, ClassVar

from .. import imaging
from ..errors import ClientError
from ..tasks import require_file, require_form

if TYPE_CHECKING:
    from ..config import Config
    from ..tasks import TaskOutput, TaskRequest


class ImagePlugin:
    name: ClassVar[str] = ""
    resource_class: str = "cpu"
    """``gpu`` or ``cpu``; device-configurable plugins override :meth:`resource_class_for` instead."""
    thread_safe: ClassVar[bool] = False
    required_files: ClassVar[tuple[str, ...]] = ("image",)
    required_form: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Config) -> None:
        self.config = config
        self.resource_class = self.resource_class_for(config)
        self._lock = threading.Lock()
        self._loaded = False

    @classmethod
    def availability(cls, config: Config) -> tuple[bool, str]:
        """(True, "") when the package and weights this plugin needs are present here."""
        return True, ""

    @classmethod
    def resource_class_for(cls, config: Config) -> str:
        """The queue family (``gpu``/``cpu``) of this plugin under ``config``: the router needs it per
        instance because device-configurable plugins (``--realesrgan-device``) change it."""
        return cls.resource_class

    @classmethod
    def validate_request(cls, request: TaskRequest) -> None:
        """Cheap checks: required fields present and images with readable headers."""
        for key in cls.required_form:
            require_form(request, key)
        for key in cls.required_files:
            imaging.upright_size(require_file(request, key), key)

    def load(self) -> None:
        """Load weights (called once, under the plugin's lock, before the first ``process``)."""

    def process(self, request: TaskRequest, config: Config) -> TaskOutput:
        raise NotImplementedError

    def run(self, request: TaskRequest, config: Config) -> TaskOutput:
        """Validate, load if needed, and process one request (serialised unless ``thread_safe``)."""
        self.validate_request(request)
        if self.thread_safe:
            self._ensure_loaded()
            return self.process(request, config)
        with self._lock:
            self._ensure_loaded()
            return self.process(request, config)

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            if self.thread_safe:
                with self._lock:
                    if not self._loaded:
                        self.load()
                        self._loaded = True
            else:
                self.load()
                self._loaded = True


def device_resource_class(device: str) -> str:
    return "gpu" if device.startswith("cuda") else "cpu"


def parse_float_field(request: TaskRequest, key: str) -> float:
    raw = require_form(request, key)
    try:
        return float(raw)
    except ValueError:
        raise ClientError(f"Invalid value for {key}: {raw}") from None
