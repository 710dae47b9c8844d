"""The ``[autoscale]`` section: how often to decide, each queue's policy, which providers serve it.

Every field is declared with the core's :func:`~lama_cleaner.config.setting` (help text, and a range
as ``minimum``/``exclusive_minimum``/``maximum``), so ``docs/configuration.md``, ``docs/scaling.md`` and the
validation are built from the same declaration. :data:`SECTION` declares the table to the core
(the plugin's ``config_sections`` hook returns it). A queue without a
``[autoscale.queues.<name>]`` table is not scaled at all: autoscaling is opt-in per queue.

Provider settings stay plain tables here (``[autoscale.providers.<name>]``): a provider may come
from a third-party plugin, so only the provider class knows its own keys. Each provider declares a
settings dataclass, read with :func:`settings_from_mapping`, which refuses unknown keys and wrong
types with the key's full name, like every other section.
"""

from __future__ import annotations

import functools
import math
import typing
from collections.abc import Collection, Mapping
from dataclasses import MISSING, dataclass, fields, is_dataclass
from typing import Any, TypeVar

from ...config import ConfigError, ConfigSection, check_type, setting

T = TypeVar("T")


@dataclass
class QueuePolicy:
    """How one queue scales: its bounds, when to add nodes, when to take them away, and from where."""

    min_nodes: int = setting(0, "Fewest nodes the queue keeps (0 = scale to zero when idle).", minimum=0)
    max_nodes: int = setting(
        4, "Most nodes the autoscaler runs for the queue (counting nodes it did not start).", minimum=0
    )
    providers: list[str] = setting(
        ["local"],
        "Providers that start nodes for the queue, in order of preference: capacity comes from the first "
        "healthy one with room, and falls back to the next when it errors, throttles or is full.",
    )
    queued_per_node: float = setting(
        4.0,
        "Queued tasks each node may have waiting for it before another node is wanted: the queue wants "
        "ceil(queued / queued_per_node) nodes.",
        exclusive_minimum=0,
    )
    max_wait_s: float = setting(
        30.0,
        "A queue whose oldest task has waited longer than this wants one node more than it has, whatever "
        "the count (0 = do not look at waiting time).",
        minimum=0,
    )
    up_window_s: float = setting(
        10.0,
        "How long the backlog must stay above the threshold before nodes are added (a short spike adds "
        "nothing). Work that no online node can run (none serves the queue) counts from the first look.",
        minimum=0,
    )
    up_cooldown_s: float = setting(
        30.0,
        "After adding nodes, wait this long before adding more (they need time to start and take work).",
        minimum=0,
    )
    max_step_up: int = setting(4, "Most nodes added by one decision.", minimum=1)
    down_window_s: float = setting(
        300.0,
        "How long a node must stay idle, with the backlog below the scale-in threshold, before it is drained.",
        minimum=0,
    )
    down_cooldown_s: float = setting(
        120.0,
        "After any scaling decision for the queue, wait this long before removing nodes (fast up, slow down).",
        minimum=0,
    )
    max_step_down: int = setting(1, "Most nodes drained by one decision.", minimum=1)
    down_backlog_fraction: float = setting(
        0.5,
        "Hysteresis: nodes are removed only while the backlog is at most this fraction of what the "
        "remaining nodes could hold (queued_per_node each), so a queue does not shrink straight back "
        "into its scale-up threshold.",
        minimum=0,
        maximum=1,
    )


@dataclass
class AutoscaleConfig:
    """Settings of the ``autoscale`` plugin."""

    interval_s: float = setting(5.0, "Seconds between two evaluations of the policy.", exclusive_minimum=0)
    queues: dict[str, QueuePolicy] = setting(
        {},
        "Policy per queue (`[autoscale.queues.<queue>]`); queues not listed are never scaled.",
        key_name="queue",
    )
    providers: dict[str, dict[str, Any]] = setting(
        {},
        "Settings per provider (`[autoscale.providers.<name>]`); each provider documents its own keys.",
    )
    register_timeout_s: float = setting(
        300.0,
        "A launched instance that has not registered with the scheduler after this long is counted as "
        "abnormal (its provider's error count rises and the provider is marked degraded).",
        exclusive_minimum=0,
    )
    retry_min_s: float = setting(
        30.0,
        "First wait before a degraded provider is tried again; doubles on each further failure.",
        exclusive_minimum=0,
    )
    retry_max_s: float = setting(600.0, "Longest wait before a degraded provider is tried again.", exclusive_minimum=0)
    history: int = setting(200, "Decisions and provider events kept for `GET /api/v1/autoscale`.", minimum=1)


# ------------------------------------------------------------------ loading and validation
def settings_from_mapping(cls: type[T], data: Mapping[str, Any], where: str) -> T:
    """An instance of the settings dataclass ``cls`` from a table of the config file.

    ``where`` is the table's dotted name with a trailing dot (``autoscale.providers.local.``): every
    error names the full key. Keys may use ``-`` or ``_``. Nested dataclasses and ``dict[str, <dataclass>]``
    fields are read recursively; everything else is type-checked by the core's ``check_type``.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where.rstrip('.')} must be a table, got {data!r} ({type(data).__name__})")
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    hints = _hints(cls)
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in known:
            choices = ", ".join(sorted(known))
            raise ConfigError(f"unknown setting {where}{key} (known: {choices})")
        values[name] = _read_value(hints[name], value, f"{where}{key}")
    try:
        return cls(**values)
    except TypeError as exc:  # a required field without a default
        missing = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]  # type: ignore[arg-type]
        absent = [m for m in missing if m not in values]
        if absent:
            raise ConfigError(f"missing setting {where}{absent[0]}") from exc
        raise


def _read_value(hint: Any, value: Any, key: str) -> Any:
    if is_dataclass(hint) and isinstance(hint, type):
        return settings_from_mapping(hint, value, key + ".")
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is dict and len(args) == 2 and is_dataclass(args[1]):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a table of tables, got {value!r} ({type(value).__name__})")
        return {str(k): settings_from_mapping(args[1], v, f"{key}.{k}.") for k, v in value.items()}
    return check_type(value, hint, key)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def autoscale_config_from_mapping(data: Mapping[str, Any], where: str = "autoscale.") -> AutoscaleConfig:
    """Read an ``[autoscale]`` table (until the core's section loader does it for every plugin)."""
    return settings_from_mapping(AutoscaleConfig, data, where)


def check_bounds(obj: Any, where: str) -> None:
    """Every numeric field of ``obj`` against the ``minimum``/``maximum``/``above`` of its metadata."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        key = where + f.name
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
        if "minimum" in f.metadata and value < f.metadata["minimum"]:
            raise ConfigError(f"{key} must be >= {f.metadata['minimum']:g}, got {value!r}")
        if "maximum" in f.metadata and value > f.metadata["maximum"]:
            raise ConfigError(f"{key} must be <= {f.metadata['maximum']:g}, got {value!r}")
        for name in ("above", "exclusive_minimum"):
            if name in f.metadata and not value > f.metadata[name]:
                raise ConfigError(f"{key} must be > {f.metadata[name]:g}, got {value!r}")


def validate_autoscale_config(
    config: AutoscaleConfig,
    *,
    provider_names: Collection[str] | None = None,
    queues: Collection[str] | None = None,
    where: str = "autoscale.",
) -> None:
    """Ranges and cross-checks of the section, raising a ConfigError that names the first bad key.

    ``provider_names`` are the providers registered through ``register_scaling_providers`` (unknown
    names in a queue's list are refused); ``queues`` are ``distributed.queues`` (a policy for a queue
    the scheduler does not have is a typo). Either may be None when not known yet.
    """
    check_bounds(config, where)
    if config.retry_min_s > config.retry_max_s:
        raise ConfigError(
            f"{where}retry_min_s ({config.retry_min_s:g}) must not exceed {where}retry_max_s ({config.retry_max_s:g})"
        )
    for queue, policy in config.queues.items():
        key = f"{where}queues.{queue}."
        if queues is not None and queue not in queues:
            raise ConfigError(f"{where}queues.{queue}: no such queue (distributed.queues is {sorted(queues)})")
        if not isinstance(policy, QueuePolicy):
            raise ConfigError(f"{key.rstrip('.')} must be a table, got {policy!r}")
        check_bounds(policy, key)
        if policy.min_nodes > policy.max_nodes:
            raise ConfigError(
                f"{key}min_nodes ({policy.min_nodes}) must not exceed {key}max_nodes ({policy.max_nodes})"
            )
        if policy.max_nodes > 0 and not policy.providers:
            raise ConfigError(f"{key}providers must name at least one provider when max_nodes > 0")
        if len(set(policy.providers)) != len(policy.providers):
            raise ConfigError(f"{key}providers lists a provider twice: {policy.providers!r}")
        if provider_names is not None:
            for name in policy.providers:
                if name not in provider_names:
                    known = ", ".join(sorted(provider_names))
                    raise ConfigError(f"{key}providers: unknown provider {name!r} (registered: {known})")
    for name, settings in config.providers.items():
        if not isinstance(settings, Mapping):
            raise ConfigError(f"{where}providers.{name} must be a table, got {settings!r}")
        if provider_names is not None and name not in provider_names:
            known = ", ".join(sorted(provider_names))
            raise ConfigError(f"{where}providers.{name}: unknown provider (registered: {known})")


def _validate_section(config: AutoscaleConfig) -> None:
    """The checks that need nothing but the section itself (the core calls this at load); the
    plugin's ``configure`` hook adds the providers registered and ``distributed.queues``."""
    validate_autoscale_config(config)


SECTION = ConfigSection(
    "autoscale",
    AutoscaleConfig,
    validate=_validate_section,
    doc="Scaling policy per queue and the providers that start nodes; see docs/scaling.md.",
)
"""The ``[autoscale]`` table, as the plugin's ``config_sections`` hook declares it."""
