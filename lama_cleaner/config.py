"""The core's settings, and the seam through which plugins declare theirs.

Every setting is a dataclass field declared with :func:`setting`: its default, a ``help`` text and
optional metadata (``choices``, ``minimum``, ``exclusive_minimum``, ``flag``). The CLI builds its
options from the fields of :class:`Config`, ``--config FILE`` (TOML or JSON) fills them, and
``docs/configuration.md`` is generated from them. Plugins read what they need from the ``Config``
they are handed; they never parse argv themselves.

A plugin owns its settings the same way: its ``config_sections`` hook returns
:class:`ConfigSection` objects (a name and a dataclass of ``setting`` fields), and the config file's
top-level table of that name fills it. This module names no plugin; it only knows the sections it
is given. Built-in plugins' sections are known even where the plugin is not enabled, so one config
file can serve every process of a deployment; any other unknown table or key, or a value of the
wrong type, stops start-up with one line naming the key.

Precedence: built-in default < ``--config`` file < explicit command-line flag.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import tomllib
import types
import typing
from collections.abc import Callable, Iterable, Mapping
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
"""The 13 names the 1.2.x front end knows (docs/compatibility.md#models). ``/model`` must answer one of them."""

CONTROLNET_METHODS = [
    "control_v11p_sd15_canny",
    "control_v11p_sd15_openpose",
    "control_v11p_sd15_inpaint",
    "control_v11f1p_sd15_depth",
]


def setting(default: Any, help: str, **meta: Any) -> Any:
    """Declare one setting: a dataclass field that carries its default and its documentation.

    ``help`` is shown by ``--help`` and in ``docs/configuration.md``. ``meta`` is read by the loader
    and the docs generator: ``choices`` (allowed values; strings match case-insensitively and are
    stored as declared), ``minimum`` and ``exclusive_minimum`` (a numeric range), ``flag`` (a
    plugin's own command-line flag that sets it, for the docs) and, on a ``dict[str, SomeDataclass]``
    field, ``key_name`` (what its keys are, e.g. ``kind``). Mutable defaults are copied per instance.
    """
    meta = {"help": help, **meta}
    if isinstance(default, (list, dict)) or is_dataclass(default):
        return field(default_factory=functools.partial(copy.deepcopy, default), metadata=meta)
    return field(default=default, metadata=meta)


class ConfigError(ValueError):
    """A configuration file or value that cannot be used; the message is shown to the operator."""


_DECLARED: dict[type, ConfigSection] = {}
"""Schema dataclass -> its declaration, so that a loaded section finds its ``validate`` again."""


@dataclass(frozen=True)
class ConfigSection:
    """A top-level table of the config file that a plugin owns (returned by its ``config_sections`` hook).

    ``schema`` is a dataclass whose fields are declared with :func:`setting`; it may nest dataclasses
    and ``dict[str, SomeDataclass]`` tables (``[distributed.retry.inpaint]``). Types, ranges and
    choices are checked generically; ``validate(section)`` then checks what spans several keys and
    raises :class:`ConfigError` naming the key. It runs once the file, the flags and the plugins'
    ``configure`` hooks are applied. ``doc`` introduces the section in ``docs/configuration.md``.
    """

    name: str
    schema: type
    validate: Callable[[Any], None] | None = None
    doc: str = ""

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"config section name {self.name!r} must be an identifier")
        if not (isinstance(self.schema, type) and is_dataclass(self.schema)):
            raise TypeError(f"config section [{self.name}]: schema must be a dataclass, got {self.schema!r}")
        _DECLARED[self.schema] = self

    def defaults(self) -> Any:
        """A fresh instance of the schema holding every default."""
        return self.schema()


def declaration_of(section: Any) -> ConfigSection | None:
    """The :class:`ConfigSection` that declared a loaded section object (None for a bare dataclass)."""
    return _DECLARED.get(type(section))


def _builtin_section_defaults() -> dict[str, Any]:
    """Default of ``Config.sections``: the core's own sections and every built-in plugin's, enabled or
    not (see the module doc)."""
    from .plugins.builtin import builtin_section_declarations  # late: the plugins' sections import this module

    return section_defaults([*CORE_SECTIONS, *(section for _plugin, section in builtin_section_declarations())])


TOKEN_SCOPES = ("tasks", "admin", "metrics")
"""What an API token may do: ``tasks`` submits and reads its own tasks; ``admin`` every task, draining
and scaling; ``metrics`` the monitor's pages and ``/metrics``. ``admin`` implies the other two."""


@dataclass
class TokenSettings:
    """One bearer token of the HTTP API, keyed by the name its tasks are owned by (letters, digits,
    `-` and `_`). Give the secret as `token` or, better, `token_file` (its first line); exactly one."""

    token: str = setting("", "The secret itself (at least 16 characters).")
    token_file: str = setting("", "A file whose first line is the secret (kept out of the config file).")
    scopes: list[str] = setting(["tasks"], "What the token may do: `tasks`, `admin`, `metrics`.")


@dataclass
class ServerSettings:
    """Settings of the HTTP server itself: who may call ``/api/v1``, what input it accepts, how it stops."""

    tokens: dict[str, TokenSettings] = setting(
        {},
        "Bearer tokens of `/api/v1` (and of plugins' protected routes). None: the API is open, as "
        "before, and binding a non-loopback `host` logs a warning.",
        key_name="name",
    )
    max_image_pixels: int = setting(
        100_000_000,
        "Largest image (width x height) any route accepts; a bigger one (a decompression bomb) is a 413 "
        "before it is decoded. Pillow itself refuses more than about 179 million.",
        minimum=1,
    )
    max_upload_mb: int = setting(256, "Largest request body in MiB; a bigger one is a 413.", minimum=1)
    threads: int = setting(
        512,
        "Threads of the HTTP server: connections being read or answered at once. An open Socket.IO "
        "WebSocket holds one; an idle connection holds none.",
        minimum=1,
    )
    max_connections: int = setting(
        2048, "Open connections at most (more wait in the listen backlog); above `threads`.", minimum=2
    )
    shutdown_grace_s: float = setting(
        30.0, "On SIGTERM: how long requests in flight may take to finish before the server stops.", minimum=0
    )


def validate_server(section: ServerSettings) -> None:
    """Token names are owners (one per token), scopes are known, each secret is given exactly once;
    there is room for connections beyond the threads (idle ones are parked, not refused)."""
    if section.max_connections <= section.threads:
        raise ConfigError("server.max_connections must be greater than server.threads")
    secrets: set[str] = set()
    for name, token in section.tokens.items():
        where = f"server.tokens.{name}"
        if not name.replace("-", "").replace("_", "").isalnum() or not name.isascii():
            raise ConfigError(f"{where}: a token's name may hold only letters, digits, - and _")
        unknown = [s for s in token.scopes if s not in TOKEN_SCOPES]
        if unknown or not token.scopes:
            allowed = ", ".join(TOKEN_SCOPES)
            raise ConfigError(f"{where}.scopes must be a non-empty list of {allowed}, got {token.scopes}")
        if bool(token.token) == bool(token.token_file):
            raise ConfigError(f"{where}: give exactly one of token and token_file")
        if token.token and len(token.token) < 16:
            raise ConfigError(f"{where}.token must be at least 16 characters")
        if token.token in secrets and token.token:
            raise ConfigError(f"{where}.token is the same secret as another token's")
        secrets.add(token.token)


CORE_SECTIONS = (
    ConfigSection(
        "server",
        ServerSettings,
        validate=validate_server,
        doc="API tokens, input limits and shutdown of the HTTP server (see docs/security.md).",
    ),
)
"""Tables of the config file that the core itself owns (plugins declare theirs by ``config_sections``)."""


@dataclass
class Config:
    """Everything the server, nodes and plugins are configured with: the core settings, then
    ``sections``, the plugin-owned tables by name."""

    host: str = setting("127.0.0.1", "Address the HTTP server binds.")
    port: int = setting(8080, "Port of the HTTP server.")
    model: str = setting("lama", "Initial model.", choices=MODEL_NAMES)
    device: str = setting("cuda", "Device for models: cuda, cpu or mps.", choices=["cuda", "cpu", "mps"])
    no_half: bool = setting(False, "Use fp32 instead of fp16 where a model would use half precision.")
    cpu_offload: bool = setting(False, "Accepted for compatibility (diffusion models).")
    disable_nsfw: bool = setting(False, "Accepted for compatibility (diffusion models).")
    sd_cpu_textencoder: bool = setting(False, "Accepted for compatibility (diffusion models).")
    sd_controlnet: bool = setting(False, "ControlNet mode for SD1.5-family models.")
    sd_controlnet_method: str = setting(
        "control_v11p_sd15_canny", "Initial ControlNet method.", choices=CONTROLNET_METHODS
    )
    sd_local_model_path: str | None = setting(None, "Local SD checkpoint (diffusion models).")
    local_files_only: bool = setting(False, "Do not contact the Hugging Face hub.")
    enable_xformers: bool = setting(False, "Accepted for compatibility (diffusion models).")
    gui: bool = setting(False, "Desktop mode flag; only changes `/is_desktop` here.")
    no_gui_auto_close: bool = setting(False, "Accepted for compatibility.")
    gui_size: list[int] = setting([1600, 1000], "Accepted for compatibility.")
    input: str | None = setting(None, "An image file served by /inputimage, or a directory (file manager).")
    output_dir: str | None = setting(None, "Where /save_image writes; enables auto-saving.")
    model_dir: str | None = setting(None, "Model cache root (sets XDG_CACHE_HOME); default ~/.cache.")
    disable_model_switch: bool = setting(False, "Make POST /model answer 400.")
    quality: int = setting(95, "Encoder quality (0-100) of every image reply.")
    enable_interactive_seg: bool = setting(False, "Image plugin InteractiveSeg (needs SAM weights).")
    interactive_seg_model: str = setting("vit_l", "SAM size.", choices=["vit_b", "vit_l", "vit_h"])
    interactive_seg_device: str = setting("cpu", "SAM device.", choices=["cuda", "cpu", "mps"])
    enable_remove_bg: bool = setting(False, "Image plugin RemoveBG (needs rembg).")
    enable_anime_seg: bool = setting(False, "Image plugin AnimeSeg (needs its weights).")
    enable_realesrgan: bool = setting(False, "Image plugin RealESRGAN (needs realesrgan).")
    realesrgan_device: str = setting("cpu", "RealESRGAN device.", choices=["cpu", "cuda", "mps"])
    realesrgan_model: str = setting(
        "realesr-general-x4v3",
        "RealESRGAN model.",
        choices=["realesr-general-x4v3", "RealESRGAN_x4plus", "RealESRGAN_x4plus_anime_6B"],
    )
    realesrgan_no_half: bool = setting(False, "fp32 for RealESRGAN.")
    enable_gfpgan: bool = setting(False, "Image plugin GFPGAN (needs gfpgan).")
    gfpgan_device: str = setting("cpu", "GFPGAN device.", choices=["cpu", "cuda", "mps"])
    enable_restoreformer: bool = setting(False, "Image plugin RestoreFormer (needs gfpgan).")
    restoreformer_device: str = setting("cpu", "RestoreFormer device.", choices=["cpu", "cuda", "mps"])
    enable_gif: bool = setting(False, "Image plugin MakeGIF (no weights needed).")
    debug: bool = setting(False, "Flask debug mode.")
    plugins: list[str] = setting(
        [],
        "Pluggy plugins to enable: names of built-in plugins, entry-point "
        "names of the `lama_cleaner` group, or importable module paths.",
    )
    sections: dict[str, Any] = field(
        default_factory=_builtin_section_defaults,
        metadata={"help": "Plugin-owned sections by name: the config file's other top-level tables."},
    )

    # ------------------------------------------------------------------ plugin sections
    def __getattr__(self, name: str) -> Any:
        """``config.<name>`` reads ``config.sections[<name>]``.

        A convenience, not a second storage. Plugin code and its tests read their settings on many
        lines (``config.distributed.max_queued``); spelling each of those
        ``config.sections["distributed"]`` would add noise and no information. The attribute
        exists only because a plugin declared the section, so ``Config`` itself still names no
        plugin. Python calls this only when normal lookup fails: core settings are unaffected.
        """
        if name.startswith("_"):
            raise AttributeError(name)  # copy and pickle probe dunders before __init__ has run
        sections = self.__dict__.get("sections")
        if sections is not None and name in sections:
            return sections[name]
        raise AttributeError(f"no setting or config section {name!r} (is the plugin that declares it loaded?)")

    def __setattr__(self, name: str, value: Any) -> None:
        """``config.<name> = obj`` replaces a declared section, so the two spellings never diverge."""
        sections = self.__dict__.get("sections")
        if sections is not None and name in sections and name not in CORE_SETTINGS:
            sections[name] = value
        else:
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        """Plain data in the config-file format (sections at the top level), readable by ``load_config``."""
        data = {name: _to_plain(getattr(self, name)) for name in CORE_SETTINGS}
        data.update({name: _to_plain(value) for name, value in self.sections.items()})
        return data


CORE_SETTINGS = tuple(f.name for f in fields(Config) if f.name != "sections")
"""The core's top-level keys, in declaration order; any other top-level table is a plugin's section."""


def section_defaults(declared: Iterable[ConfigSection]) -> dict[str, Any]:
    """``{name: defaults}`` for ``Config.sections``; refuses a section named like a core setting."""
    out: dict[str, Any] = {}
    for section in declared:
        if section.name in CORE_SETTINGS or section.name == "sections":
            raise ConfigError(f"config section [{section.name}] clashes with the core setting {section.name}")
        out[section.name] = section.defaults()
    return out


def _to_plain(obj: Any) -> Any:
    if is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_plain(v) for v in obj]
    return obj


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


# ------------------------------------------------------------------ loading
def apply_mapping(target: Any, data: Mapping[str, Any], where: str = "") -> None:
    """Set the fields of ``target`` (a ``Config`` or a section's dataclass) from ``data``, recursing
    into nested tables.

    Unknown keys are an error, at the top level too: a typo would otherwise be ignored silently, and
    a table no loaded plugin declares is most likely a misspelt section or a plugin that is not
    installed. Each value is checked against its field's annotation here, at load, so that
    ``max_queued = "10"`` is refused with the key's name instead of failing later on every request.
    """
    if isinstance(target, Config):
        _apply_top_level(target, data)
        return
    known = {f.name for f in fields(target)}
    hints = _hints(type(target))
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in known:
            raise ConfigError(f"unknown setting {where}{key}")
        current = getattr(target, name)
        entry = table_entry_type(hints[name])
        if is_dataclass(current):
            apply_mapping(current, _table(value, f"{where}{key}"), f"{where}{key}.")
        elif entry is not None:
            for item_key, item in _table(value, f"{where}{key}").items():
                existing = current.get(item_key)
                applied = existing if isinstance(existing, entry) else entry()
                apply_mapping(applied, _table(item, f"{where}{key}.{item_key}"), f"{where}{key}.{item_key}.")
                current[item_key] = applied
        else:
            setattr(target, name, check_type(value, hints[name], f"{where}{key}"))


def _apply_top_level(config: Config, data: Mapping[str, Any]) -> None:
    """Core settings by name; a table named like a declared section fills that section."""
    hints = _hints(Config)
    for key, value in data.items():
        name = key.replace("-", "_")
        if name in CORE_SETTINGS:
            setattr(config, name, check_type(value, hints[name], key))
        elif name in config.sections:
            apply_mapping(config.sections[name], _table(value, key), f"{name}.")
        elif isinstance(value, dict):
            raise ConfigError(f"unknown config section [{key}] (no enabled plugin declares it)")
        else:
            raise ConfigError(f"unknown setting {key}")


def _table(value: Any, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{key} must be a table, got {_shown(value)}")
    return value


def table_entry_type(hint: Any) -> type | None:
    """``X`` for a ``dict[str, X]`` annotation whose ``X`` is a dataclass (a table of tables), else None."""
    if typing.get_origin(hint) is dict:
        args = typing.get_args(hint)
        if len(args) == 2 and isinstance(args[1], type) and is_dataclass(args[1]):
            return args[1]
    return None


# ------------------------------------------------------------------ checking
_TYPE_WORDS: dict[Any, tuple[str, str]] = {
    int: ("an integer", "integers"),
    float: ("a number", "numbers"),
    bool: ("true or false", "booleans"),
    str: ("a string", "strings"),
}


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


def check_bound(key: str, value: float, op: str, bound: float) -> None:
    """Refuse ``value`` unless ``value op bound`` (``op`` is ``>`` or ``>=``); NaN never fits."""
    fits = value > bound if op == ">" else value >= bound
    if not fits:  # also refuses NaN, which compares false either way
        raise ConfigError(f"{key} must be {op} {bound:g}, got {value!r}")


def bounds_of(meta: Mapping[str, Any]) -> list[tuple[str, float]]:
    """The ``(op, bound)`` rules a setting's metadata declares (``minimum`` and ``exclusive_minimum``)."""
    rules = []
    if "minimum" in meta:
        rules.append((">=", meta["minimum"]))
    if "exclusive_minimum" in meta:
        rules.append((">", meta["exclusive_minimum"]))
    return rules


def check_settings(section: Any, where: str) -> None:
    """Types, ranges and choices of every field of ``section`` (a dataclass), whoever set them: the
    file, a flag or a plugin's ``configure`` hook. Raises a ConfigError naming the first bad key
    (``where`` is its prefix, e.g. ``distributed.``). Normalises in place: ints in float fields become
    floats, and a string choice takes its declared spelling."""
    hints = _hints(type(section))
    for f in fields(section):
        key, value, hint = where + f.name, getattr(section, f.name), hints[f.name]
        entry = table_entry_type(hint)
        if is_dataclass(value):
            check_settings(value, key + ".")
            continue
        if entry is not None:
            for item_key, item in _table(value, key).items():
                if not isinstance(item, entry):
                    raise ConfigError(f"{key}.{item_key} must be a table, got {_shown(item)}")
                check_settings(item, f"{key}.{item_key}.")
            continue
        value = check_type(value, hint, key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            for op, bound in bounds_of(f.metadata):
                check_bound(key, value, op, bound)
        choices = f.metadata.get("choices")
        if choices and isinstance(value, str):
            matching = [c for c in choices if str(c).lower() == value.lower()]
            if not matching:
                raise ConfigError(f"{key} must be one of {', '.join(map(str, choices))}, got {value!r}")
            value = matching[0]
        setattr(section, f.name, value)


def validate_config(config: Config) -> None:
    """Check every plugin section: the generic checks, then the section's own ``validate``. Run once
    the file, the flags and the plugins' ``configure`` hooks are applied (core settings are checked
    by the command that uses them, e.g. ``serve``'s ``check_config``)."""
    for name, section in config.sections.items():
        check_settings(section, f"{name}.")
        declared = declaration_of(section)
        if declared is not None and declared.validate is not None:
            declared.validate(section)
