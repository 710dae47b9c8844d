"""The one source of truth for configuration.

Every setting lives in a dataclass field here, with its default and a ``help`` text in the field
metadata. The CLI builds its options from these fields where it can, ``--config FILE`` (TOML or JSON)
fills them, and ``docs/configuration.md`` documents them. Plugins read what they need from the
``Config`` they are handed; they never parse argv themselves.

Precedence: built-in default < ``--config`` file < explicit command-line flag.
"""

from __future__ import annotations

import functools
import json
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

MODEL_NAMES = [
    "lama",
    "ldm",
    "zits",
    "mat",
    "fcf",
    "sd1.5",
    "anything4",
    "realisticVision1.4",
    "cv2",
    "manga",
    "sd2",
    "paint_by_example",
    "instruct_pix2pix",
]
"""The 13 names the 1.2.x front end knows (contract §5.1). ``/model`` must answer one of them."""

CONTROLNET_METHODS = [
    "control_v11p_sd15_canny",
    "control_v11p_sd15_openpose",
    "control_v11p_sd15_inpaint",
    "control_v11f1p_sd15_depth",
]


def _opt(default: Any, help: str, **extra: Any) -> Any:
    """A dataclass field carrying its documentation (read by the CLI and the docs)."""
    meta = {"help": help, **extra}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class RetryConfig:
    """Retry policy for one task kind (``inpaint`` or ``plugin``)."""

    max_attempts: int = _opt(3, "Attempts before a task is failed for good (1 = never retry).")
    backoff_base_s: float = _opt(0.5, "Delay before the first retry; doubles on each further attempt.")
    backoff_max_s: float = _opt(30.0, "Upper bound of the retry delay.")


@dataclass
class DistributedConfig:
    """Settings of the ``distributed`` plugin (scheduler, journal, nodes)."""

    scheduler_bind: str = _opt(
        "tcp://127.0.0.1:5570",
        "Where the scheduler's control socket listens. Queue sockets bind the following ports "
        "(one per queue, in the order of `queues`). Loopback only by default.",
    )
    scheduler: str | None = _opt(
        None,
        "Address of an external scheduler (`lama-cleaner scheduler`). When set, the web server "
        "only produces tasks and embeds no scheduler.",
    )
    data_dir: str = _opt(
        "~/.cache/lama-cleaner/distributed",
        "Directory of the SQLite journal (tasks, input and result blobs).",
    )
    queues: list[str] = _opt(["gpu", "cpu"], "Queue names; each gets its own ZeroMQ endpoint.")
    routes: dict[str, str] = _opt(
        {},
        "Extra routing rules, `model-or-plugin name -> queue`, applied before the defaults "
        "(erase and diffusion models -> gpu; cv2 and CPU image plugins -> cpu; with `--device cpu`, "
        "models that run acceptably on a CPU, such as lama, -> cpu).",
    )
    gpu_queue_requires_gpu: bool = _opt(True, "A node may join a queue named `gpu` only if it has a CUDA device.")
    local_nodes: int = _opt(1, "Node subprocesses the web server spawns and keeps alive.")
    local_node_queues: list[str] = _opt(
        [], "Queues the local nodes ask to join (empty = every queue they qualify for)."
    )
    local_node_device: str | None = _opt(
        None,
        "`--device` passed to local nodes; unset = the server's `--device` (so `--device cuda` gives a "
        "CUDA node that may join the `gpu` queue lama is routed to).",
    )
    max_queued: int = _opt(1000, "Queued tasks allowed in total; beyond this new work gets HTTP 503.")
    max_queued_per_queue: int = _opt(500, "Queued tasks allowed per queue.")
    retry_after_s: int = _opt(5, "`Retry-After` seconds sent with a 503 when full.")
    heartbeat_interval_s: float = _opt(1.0, "Heartbeat period, both directions.")
    heartbeat_liveness: int = _opt(3, "Missed heartbeats before a peer counts as offline.")
    reconnect_min_s: float = _opt(0.25, "First reconnect delay of a node; doubles up to the max.")
    reconnect_max_s: float = _opt(16.0, "Largest reconnect delay of a node.")
    retention_s: float = _opt(24 * 3600.0, "How long finished tasks and their blobs are kept.")
    journal_synchronous: str = _opt(
        "NORMAL",
        "SQLite `synchronous` pragma of the task journal (WAL mode): NORMAL survives a process crash "
        "and loses at most the last commits on a power cut; FULL fsyncs every commit; OFF is fastest.",
        choices=["OFF", "NORMAL", "FULL", "EXTRA"],
    )
    request_timeout_s: float = _opt(600.0, "How long a classic `/inpaint` waits for its task before answering 504.")
    retry: dict[str, RetryConfig] = field(
        default_factory=lambda: {"inpaint": RetryConfig(), "plugin": RetryConfig()},
        metadata={"help": "Retry policy per task kind (`inpaint`, `plugin`)."},
    )
    node_max_tasks_per_child: int = _opt(
        0,
        "A node replaces its inference process after it ran this many tasks, between tasks, never "
        "during one (0 = never; like Celery's max-tasks-per-child). `lama-cleaner node "
        "--max-tasks-per-child N` overrides it.",
    )
    node_max_child_rss_mb: int = _opt(
        0,
        "A node replaces its inference process after a task that left its resident memory (VmRSS) "
        "above this many MiB (0 = no cap; like Celery's max-memory-per-child). `lama-cleaner node "
        "--max-child-rss-mb N` overrides it.",
    )
    expose_tracebacks: bool = _opt(
        False,
        "Include the failed attempt's Python traceback in `GET /api/v1/tasks/{id}` (otherwise that field "
        "is null). Off by default because the API has no authentication and a traceback shows server "
        "paths and library versions to anyone who can reach it; the journal keeps the traceback either way.",
    )
    unschedulable_timeout_s: float = _opt(
        60.0,
        "A queued task that no online node can run (none granted its queue, none offers its model or "
        "plugin, or all of those are draining) for this long is failed with HTTP 503 and a message "
        "saying why, instead of waiting until `request_timeout_s`. Counted from the later of its "
        "submission and the last moment a node that could run it was online. 0 disables.",
    )


@dataclass
class Config:
    """Everything the server, nodes and plugins are configured with."""

    host: str = _opt("127.0.0.1", "Address the HTTP server binds.")
    port: int = _opt(8080, "Port of the HTTP server.")
    model: str = _opt("lama", "Initial model.", choices=MODEL_NAMES)
    device: str = _opt("cuda", "Device for models: cuda, cpu or mps.", choices=["cuda", "cpu", "mps"])
    no_half: bool = _opt(False, "Use fp32 instead of fp16 where a model would use half precision.")
    cpu_offload: bool = _opt(False, "Accepted for compatibility (diffusion models).")
    disable_nsfw: bool = _opt(False, "Accepted for compatibility (diffusion models).")
    sd_cpu_textencoder: bool = _opt(False, "Accepted for compatibility (diffusion models).")
    sd_controlnet: bool = _opt(False, "ControlNet mode for SD1.5-family models.")
    sd_controlnet_method: str = _opt(
        "control_v11p_sd15_canny", "Initial ControlNet method.", choices=CONTROLNET_METHODS
    )
    sd_local_model_path: str | None = _opt(None, "Local SD checkpoint (diffusion models).")
    local_files_only: bool = _opt(False, "Do not contact the Hugging Face hub.")
    enable_xformers: bool = _opt(False, "Accepted for compatibility (diffusion models).")
    gui: bool = _opt(False, "Desktop mode flag; only changes `/is_desktop` here.")
    no_gui_auto_close: bool = _opt(False, "Accepted for compatibility.")
    gui_size: list[int] = _opt([1600, 1000], "Accepted for compatibility.")
    input: str | None = _opt(None, "An image file served by /inputimage, or a directory (file manager).")
    output_dir: str | None = _opt(None, "Where /save_image writes; enables auto-saving.")
    model_dir: str | None = _opt(None, "Model cache root (sets XDG_CACHE_HOME); default ~/.cache.")
    disable_model_switch: bool = _opt(False, "Make POST /model answer 400.")
    quality: int = _opt(95, "Encoder quality (0-100) of every image reply.")
    enable_interactive_seg: bool = _opt(False, "Image plugin InteractiveSeg (needs SAM weights).")
    interactive_seg_model: str = _opt("vit_l", "SAM size.", choices=["vit_b", "vit_l", "vit_h"])
    interactive_seg_device: str = _opt("cpu", "SAM device.", choices=["cuda", "cpu", "mps"])
    enable_remove_bg: bool = _opt(False, "Image plugin RemoveBG (needs rembg).")
    enable_anime_seg: bool = _opt(False, "Image plugin AnimeSeg (needs its weights).")
    enable_realesrgan: bool = _opt(False, "Image plugin RealESRGAN (needs realesrgan).")
    realesrgan_device: str = _opt("cpu", "RealESRGAN device.", choices=["cpu", "cuda", "mps"])
    realesrgan_model: str = _opt(
        "realesr-general-x4v3",
        "RealESRGAN model.",
        choices=["realesr-general-x4v3", "RealESRGAN_x4plus", "RealESRGAN_x4plus_anime_6B"],
    )
    realesrgan_no_half: bool = _opt(False, "fp32 for RealESRGAN.")
    enable_gfpgan: bool = _opt(False, "Image plugin GFPGAN (needs gfpgan).")
    gfpgan_device: str = _opt("cpu", "GFPGAN device.", choices=["cpu", "cuda", "mps"])
    enable_restoreformer: bool = _opt(False, "Image plugin RestoreFormer (needs gfpgan).")
    restoreformer_device: str = _opt("cpu", "RestoreFormer device.", choices=["cpu", "cuda", "mps"])
    enable_gif: bool = _opt(False, "Image plugin MakeGIF (no weights needed).")
    debug: bool = _opt(False, "Flask debug mode.")
    plugins: list[str] = _opt(
        [],
        "Pluggy plugins to enable: built-in names (distributed), entry-point "
        "names of the `lama_cleaner` group, or importable module paths.",
    )
    distributed: DistributedConfig = field(
        default_factory=DistributedConfig, metadata={"help": "The `[distributed]` section."}
    )
    extra: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "Sections of the config file that belong to third-party plugins."},
    )

    # ------------------------------------------------------------------ helpers
    @property
    def data_path(self) -> Path:
        return Path(os.path.expanduser(self.distributed.data_dir))

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)


def _to_plain(obj: Any) -> Any:
    if is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_plain(v) for v in obj]
    return obj


class ConfigError(ValueError):
    """A configuration file or value that cannot be used; the message is shown to the operator."""


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML (``.toml``) or JSON file into a plain dict."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror}") from exc
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(raw)
        else:
            data = tomllib.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {p} is not valid {p.suffix.lstrip('.') or 'TOML'}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a table/object at the top level")
    return data


def apply_mapping(target: Any, data: dict[str, Any], where: str = "") -> None:
    """Set dataclass fields of ``target`` from ``data``, recursing into nested sections.

    Unknown top-level keys go to ``Config.extra`` (third-party plugin sections); unknown keys inside
    a known section are an error, because a typo there would otherwise be silently ignored. Each
    value is checked against its field's annotation here, at load, so that ``max_queued = "10"``
    is refused with the key's name instead of failing later on every request.
    """
    known = {f.name: f for f in fields(target)}
    hints = _hints(type(target))
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in known:
            if isinstance(target, Config):
                target.extra[key] = value
                continue
            raise ConfigError(f"unknown setting {where}{key}")
        current = getattr(target, name)
        if is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}{key} must be a table, got {_shown(value)}")
            apply_mapping(current, value, f"{where}{key}.")
        elif name == "retry" and isinstance(target, DistributedConfig):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}retry must be a table of task kinds ({', '.join(RETRY_KINDS)})")
            for kind, policy in value.items():
                _check_retry_kind(f"{where}retry", kind)
                if not isinstance(policy, dict):
                    raise ConfigError(f"{where}retry.{kind} must be a table, got {_shown(policy)}")
                rc = current.get(kind) or RetryConfig()
                apply_mapping(rc, policy, f"{where}retry.{kind}.")
                current[kind] = rc
        else:
            setattr(target, name, check_type(value, hints[name], f"{where}{key}"))


# ------------------------------------------------------------------ validation
RETRY_KINDS = ("inpaint", "plugin")
"""Task kinds with a retry policy (``distributed.retry.<kind>``)."""

DISTRIBUTED_BOUNDS: dict[str, tuple[str, float]] = {
    "local_nodes": (">=", 0),
    "max_queued": (">=", 1),
    "max_queued_per_queue": (">=", 1),
    "retry_after_s": (">=", 0),
    "heartbeat_interval_s": (">", 0),
    "heartbeat_liveness": (">=", 1),
    "reconnect_min_s": (">", 0),
    "reconnect_max_s": (">", 0),
    "retention_s": (">", 0),
    "request_timeout_s": (">", 0),
    "node_max_tasks_per_child": (">=", 0),
    "node_max_child_rss_mb": (">=", 0),
    "unschedulable_timeout_s": (">=", 0),
}
"""Ranges of numeric ``[distributed]`` settings: 0 where it means "off"/"none", 1 where a count
must allow something, strictly positive for intervals and timeouts (0 would, e.g., mark every node
offline at once). Names missing from the dataclass are skipped."""

RETRY_BOUNDS: dict[str, tuple[str, float]] = {
    "max_attempts": (">=", 1),
    "backoff_base_s": (">=", 0),
    "backoff_max_s": (">=", 0),
}

_TYPE_WORDS: dict[Any, tuple[str, str]] = {
    int: ("an integer", "integers"),
    float: ("a number", "numbers"),
    bool: ("true or false", "booleans"),
    str: ("a string", "strings"),
}
DEVICE_PATTERN = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")
"""Devices a node accepts: `cpu`, `mps`, `cuda` or `cuda:N`."""


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _shown(value: Any) -> str:
    """``'10' (str)``: the value and its type, as the operator wrote it."""
    return f"{value!r} ({type(value).__name__})"


def _expected(hint: Any, plural: bool = False) -> str:
    """Words for an annotation: ``an integer``, ``a list of strings``, ``a string or null``."""
    if hint in _TYPE_WORDS:
        return _TYPE_WORDS[hint][1 if plural else 0]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _expected(a, plural) for a in args)
    if origin is list:
        return ("lists" if plural else "a list") + f" of {_expected(args[0], True)}"
    if origin is dict:
        return ("tables" if plural else "a table") + f" of {_expected(args[1], True)}"
    return "values" if plural else "a value"


def check_type(value: Any, hint: Any, key: str) -> Any:
    """``value`` if it fits the annotation ``hint`` (an int where a float is expected becomes a
    float), else a ConfigError naming ``key`` and the expected type. Annotations other than
    str/int/float/bool, ``X | None``, ``list[X]`` and ``dict[str, X]`` are not checked."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    ok = True
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        others = [a for a in args if a is not type(None)]
        if len(others) == 1:
            try:
                return check_type(value, others[0], key)
            except ConfigError:
                ok = False
    elif hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            return float(value)
    elif hint is str:
        ok = isinstance(value, str)
    elif origin is list and isinstance(value, list):
        try:
            return [check_type(item, args[0], key) for item in value]
        except ConfigError:
            ok = False
    elif origin is dict and isinstance(value, dict):
        try:
            if all(isinstance(k, str) for k in value):
                return {k: check_type(v, args[1], key) for k, v in value.items()}
        except ConfigError:
            pass
        ok = False
    elif origin in (list, dict):
        ok = False
    if not ok:
        raise ConfigError(f"{key} must be {_expected(hint)}, got {_shown(value)}")
    return value


def _check_bound(key: str, value: float, rule: tuple[str, float]) -> None:
    op, bound = rule
    fits = value > bound if op == ">" else value >= bound
    if not fits:  # also refuses NaN, which compares false either way
        raise ConfigError(f"{key} must be {op} {bound:g}, got {value!r}")


def check_endpoint(key: str, value: str, *, connect: bool = False) -> None:
    """``tcp://HOST:PORT``, the only transport the scheduler's port arithmetic understands. A bind
    may ask for any free port (``0`` or ``*``); a ``connect`` endpoint must name one."""
    host, sep, port = value.removeprefix("tcp://").rpartition(":")
    if not value.startswith("tcp://") or not sep or not host:
        raise ConfigError(f"{key} must be a tcp://HOST:PORT endpoint, got {value!r}")
    if (connect or port not in ("0", "*")) and not (port.isdigit() and 0 < int(port) < 65536):
        allowed = "1-65535" if connect else "1-65535, or 0/* for any"
        raise ConfigError(f"{key} has a bad port in {value!r} ({allowed})")


def validate_distributed(dist: DistributedConfig, where: str = "distributed.") -> None:
    """Types and ranges of the ``[distributed]`` section, whoever set them (file, flag, plugin).

    Raises a ConfigError naming the first bad key. Normalises in place: ints in float fields
    become floats and ``journal_synchronous`` is upper-cased.
    """
    hints = _hints(DistributedConfig)
    for f in fields(DistributedConfig):
        if f.name == "retry":
            continue
        value = check_type(getattr(dist, f.name), hints[f.name], where + f.name)
        setattr(dist, f.name, value)
        if f.name in DISTRIBUTED_BOUNDS:
            _check_bound(where + f.name, value, DISTRIBUTED_BOUNDS[f.name])
        choices = f.metadata.get("choices")
        if choices and isinstance(value, str):
            if value.upper() not in choices:
                raise ConfigError(f"{where}{f.name} must be one of {', '.join(choices)}, got {value!r}")
            setattr(dist, f.name, value.upper())
    if dist.reconnect_min_s > dist.reconnect_max_s:
        raise ConfigError(
            f"{where}reconnect_min_s ({dist.reconnect_min_s:g}) must not exceed "
            f"{where}reconnect_max_s ({dist.reconnect_max_s:g})"
        )
    if not dist.queues or any(not q.strip() for q in dist.queues) or len(set(dist.queues)) != len(dist.queues):
        raise ConfigError(f"{where}queues must be a non-empty list of distinct names, got {dist.queues!r}")
    check_endpoint(where + "scheduler_bind", dist.scheduler_bind)
    if dist.scheduler is not None:
        check_endpoint(where + "scheduler", dist.scheduler, connect=True)
    if not dist.data_dir.strip():
        raise ConfigError(f"{where}data_dir must not be empty")
    if dist.local_node_device is not None and not DEVICE_PATTERN.match(dist.local_node_device):
        raise ConfigError(f"{where}local_node_device must be cpu, cuda, cuda:N or mps, got {dist.local_node_device!r}")
    _validate_retry(dist.retry, where + "retry")


def _check_retry_kind(key: str, kind: str) -> None:
    if kind not in RETRY_KINDS:
        raise ConfigError(f"unknown task kind {key}.{kind}; expected one of {', '.join(RETRY_KINDS)}")


def _validate_retry(retry: Any, key: str) -> None:
    if not isinstance(retry, dict):
        raise ConfigError(f"{key} must be a table of task kinds ({', '.join(RETRY_KINDS)})")
    hints = _hints(RetryConfig)
    for kind, policy in retry.items():
        _check_retry_kind(key, kind)
        if not isinstance(policy, RetryConfig):
            raise ConfigError(f"{key}.{kind} must be a table, got {_shown(policy)}")
        for name, rule in RETRY_BOUNDS.items():
            value = check_type(getattr(policy, name), hints[name], f"{key}.{kind}.{name}")
            setattr(policy, name, value)
            _check_bound(f"{key}.{kind}.{name}", value, rule)
        if policy.backoff_base_s > policy.backoff_max_s:
            raise ConfigError(f"{key}.{kind}.backoff_base_s must not exceed {key}.{kind}.backoff_max_s")


def validate_config(config: Config) -> None:
    """Everything :func:`validate_distributed` checks; run once the file and the flags are applied."""
    validate_distributed(config.distributed)


def load_config(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Config:
    """Build a Config from defaults, an optional file, then keyword overrides."""
    cfg = Config()
    if path:
        apply_mapping(cfg, read_config_file(path))
    if overrides:
        apply_mapping(cfg, overrides)
    validate_config(cfg)
    return cfg
