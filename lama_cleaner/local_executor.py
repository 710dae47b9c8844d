"""Classic (single-process) execution: ``pipeline.execute_task`` in the request thread.

This is the built-in ``inpaint_executor`` hook implementation. It is registered with ``trylast`` so any
plugin that returns an executor (``distributed``) replaces it. Requests run in parallel, as upstream's
do, except the model call of a model that is not ``thread_safe``, which is serialised per model
(``ModelManager.guard``); a model switch never leaves the server without a model. Lifecycle events go
to the ``EventSink`` with a fresh task id and the submitter's sid.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from . import pipeline
from .errors import LamaCleanerError
from .image_plugins.registry import build_image_plugin_registry
from .models.device import resolve_device
from .models.manager import ModelManager
from .models.registry import build_model_registry
from .plugins.hookspecs import hookimpl
from .tasks import Progress, TaskEvent, TaskOutput, TaskRequest

if TYPE_CHECKING:
    import pluggy

    from .config import Config

log = logging.getLogger(__name__)


class _NoEvents:
    def emit(self, event: TaskEvent) -> None:
        return None


class LocalExecutor:
    """Runs tasks in-process. The start-up model is loaded eagerly, as upstream does."""

    def __init__(self, config: Config, events: Any = None, pm: pluggy.PluginManager | None = None) -> None:
        if pm is None:
            pm = getattr(events, "plugin_manager", None)
        if pm is None:
            from .plugins.manager import current_plugin_manager

            pm = current_plugin_manager()
        self.config = config
        self.events = events if events is not None else _NoEvents()
        self.models = ModelManager(build_model_registry(pm), config, resolve_device(config.device))
        self.image_plugins = build_image_plugin_registry(pm, config)
        self.models.switch(config.model)

    # ------------------------------------------------------------------ InpaintExecutor
    def current_model(self) -> str:
        return self.models.name

    def switch_model(self, name: str) -> bool:
        return self.models.switch(name)

    def run(self, request: TaskRequest) -> TaskOutput:
        """Run one task now.

        Inpaint tasks run on whatever model is current when they execute (classic mode has one global
        model): pinning the name given at request time would switch back if ``POST /model`` ran meanwhile.
        """
        shown_name = request.name
        if request.kind == "inpaint":
            shown_name = self.models.name
            request = replace(request, name="")
        task_id = request.task_id or uuid.uuid4().hex
        base = {"task_id": task_id, "kind": request.kind, "name": shown_name, "submitter": request.submitter}
        self.events.emit(TaskEvent(status="processing", progress=0.0, attempts=1, **base))

        def progress(p: Progress) -> None:
            self.events.emit(TaskEvent(status="processing", progress=p.percent, step=p.step, attempts=1, **base))

        try:
            output = pipeline.execute_task(
                request, models=self.models, image_plugins=self.image_plugins, config=self.config, progress=progress
            )
        except LamaCleanerError as exc:
            self.events.emit(TaskEvent(status="failed", error=exc.message, attempts=1, **base))
            raise
        except Exception as exc:
            self.events.emit(TaskEvent(status="failed", error=str(exc) or type(exc).__name__, attempts=1, **base))
            raise
        self.events.emit(TaskEvent(status="completed", progress=100.0, attempts=1, **base))
        return output

    def close(self) -> None:
        self.models.close()


@hookimpl(trylast=True)
def inpaint_executor(config: Config, events: Any) -> LocalExecutor:
    return LocalExecutor(config, events)
