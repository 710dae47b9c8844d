"""What a node can do, as sent in HELLO: device, GPU, memory, CPUs, runnable models and labels.

The scheduler decides which queues a node may join from this (a CPU-only node never joins ``gpu``
when ``gpu_queue_requires_gpu`` is on) and which tasks it may receive (only models it listed).
torch is optional: without it a node simply reports no GPU.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ....errors import NotFound

if TYPE_CHECKING:
    from ....image_plugins.registry import ImagePluginRegistry
    from ....models.registry import ModelRegistry

log = logging.getLogger(__name__)


def parse_labels(text: str | None) -> dict[str, str]:
    """``"zone=eu,tier=spot"`` -> ``{"zone": "eu", "tier": "spot"}``; raises ValueError on a bad item."""
    labels: dict[str, str] = {}
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"bad label {item!r}: expected key=value")
        labels[key.strip()] = value.strip()
    return labels


def split_list(text: str | Iterable[str] | None) -> list[str]:
    """A comma-separated option (or a list from a config file) as a clean list of names."""
    if text is None:
        return []
    items = text.split(",") if isinstance(text, str) else list(text)
    return [s.strip() for s in items if s and s.strip()]


def total_ram_mb() -> int | None:
    """Physical memory in MiB (POSIX ``sysconf``); None where the platform does not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024))
    except (AttributeError, ValueError, OSError):
        return None


def gpu_info(device: str) -> tuple[str | None, int | None]:
    """Name and memory (MiB) of the CUDA device when ``device`` is cuda and torch can see one."""
    if not device.startswith("cuda"):
        return None, None
    try:
        import torch  # optional: nodes run cv2 and fake models without it
    except ImportError:
        return None, None
    try:
        if not torch.cuda.is_available():
            return None, None
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        props = torch.cuda.get_device_properties(index)
        return str(props.name), int(props.total_memory // (1024 * 1024))
    except Exception as exc:  # noqa: BLE001 - a broken driver means "no GPU", not a crash
        log.warning("cannot query CUDA device %s: %s", device, exc)
        return None, None


def effective_device(requested: str) -> str:
    """``cuda`` falls back to ``cpu`` when no CUDA device is usable, so a node still starts."""
    if requested.startswith("cuda") and gpu_info(requested)[0] is None:
        log.warning("--device %s requested but no CUDA device is usable; using cpu", requested)
        return "cpu"
    return requested


def available_models(registry: Any, config: Any, wanted: Iterable[str] = ()) -> list[str]:
    """Registry models whose ``is_available(config)`` is true, filtered by ``wanted`` when given.

    An explicit ``wanted`` list (``lama-cleaner node --models``) that names an unknown model, or of
    which no model can run here, is an operator's mistake: a node offering nothing would sit idle for
    ever, so this raises ``ConfigError`` naming the models it could offer instead. Known models that
    cannot run here are only warned about when some others can.
    """
    from ....config import ConfigError

    wanted_list = list(dict.fromkeys(wanted))
    known = registry.names()
    unknown = [name for name in wanted_list if name not in known]
    if unknown:
        raise ConfigError(
            f"--models: unknown model{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"known models: {', '.join(known)}"
        )
    names: list[str] = []
    refused: dict[str, str] = {}
    for name in known:  # registry order, whatever order --models named them in
        if wanted_list and name not in wanted_list:
            continue
        ok, reason = _availability(registry, name, config)
        if ok:
            names.append(name)
        else:
            refused[name] = reason
    if wanted_list and not names:
        why = "; ".join(f"{name}: {reason}" for name, reason in refused.items())
        runnable = [name for name in known if _availability(registry, name, config)[0]]
        raise ConfigError(f"--models: none of them can run on this node ({why}); it could offer: {', '.join(runnable)}")
    if wanted_list:
        for name, reason in refused.items():
            log.warning("model %s is not available on this node: %s", name, reason)
    return names


def _availability(registry: Any, name: str, config: Any) -> tuple[bool, str]:
    """``is_available`` of one model; a model that cannot even answer cannot run here."""
    try:
        ok, reason = registry.get(name).is_available(config)
    except Exception as exc:  # noqa: BLE001 - any failure means "not here", with its text as the reason
        return False, str(exc)
    return bool(ok), reason


def collect(
    *,
    device: str,
    models: list[str],
    plugins: list[str],
    labels: Mapping[str, str],
    queues_requested: list[str],
    preload: str | None = None,
) -> dict[str, Any]:
    """The ``capabilities`` object of HELLO (see docs/protocol.md); ``preload``: the model the node
    loads before it takes work (``node.warm``)."""
    gpu_name, gpu_memory_mb = gpu_info(device)
    return {
        "device": device,
        "gpu_name": gpu_name,
        "gpu_memory_mb": gpu_memory_mb,
        "ram_mb": total_ram_mb(),
        "cpus": os.cpu_count() or 1,
        "models": list(models),
        "plugins": list(plugins),
        "labels": dict(labels),
        "queues_requested": list(queues_requested),
        "preload": preload,
    }


def routing_resource_class(model_cls: Any, server_device: str) -> str:
    """The queue family a model's tasks are routed to, given the server's ``--device``.

    A model's ``resource_class`` says what it *needs* on a mixed cluster; ``runs_on_cpu`` says it
    still runs acceptably without a GPU. When the server itself was started with ``--device cpu``
    such a model goes to the ``cpu`` queue: nodes without CUDA may not join ``gpu``, so routing it
    there would leave the task queued until the request times out.
    """
    resource_class = str(getattr(model_cls, "resource_class", "gpu"))
    if resource_class == "gpu" and server_device == "cpu" and getattr(model_cls, "runs_on_cpu", False):
        return "cpu"
    return resource_class


def task_resource_class(
    kind: str, name: str, *, models: ModelRegistry, image_plugins: ImagePluginRegistry, server_device: str
) -> str | None:
    """``gpu``/``cpu`` for a task's model or image plugin, None when this process does not know it.

    The one routing lookup behind ``Scheduler(resource_class_of=...)``, whether the scheduler is
    embedded in the web server or runs standalone, so both route the same task to the same queue.
    """
    try:
        if kind == "inpaint":
            return routing_resource_class(models.get(name), server_device)
        if kind == "plugin":
            return image_plugins.get(name).resource_class
    except NotFound:
        return None
    return None
