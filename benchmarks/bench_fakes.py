"""Benchmark-only image plugin ``BenchEcho``, enabled with ``--plugins benchmarks.bench_fakes``.

Why: the 1 MB payload measurement must time moving bytes through the scheduler, its journal and a
node, not PNG encoding. An inpaint model always decodes and re-encodes the image, which on a
1 MB image costs more than the transfer; this plugin returns the uploaded ``image`` file as it is,
so the task carries exactly the payload in and the same payload out.
"""

from __future__ import annotations

from typing import Any

from lama_cleaner.image_plugins.base import ImagePlugin
from lama_cleaner.plugins.hookspecs import hookimpl
from lama_cleaner.tasks import TaskOutput, TaskRequest, require_file

ECHO_PLUGIN = "BenchEcho"


class BenchEcho(ImagePlugin):
    """Returns the ``image`` file unchanged (any bytes: it is not decoded)."""

    name = ECHO_PLUGIN
    resource_class = "cpu"
    thread_safe = True

    @classmethod
    def validate_request(cls, request: TaskRequest) -> None:
        require_file(request, "image")

    def process(self, request: TaskRequest, config: Any) -> TaskOutput:
        return TaskOutput(body=request.files["image"], mimetype="application/octet-stream")


@hookimpl
def register_image_plugins(registry: Any, config: Any) -> None:
    registry.register(BenchEcho(config))
