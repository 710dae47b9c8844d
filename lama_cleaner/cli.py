"""The ``lama-cleaner`` command: serve by default (as upstream), plus the commands plugins register.

``lama-cleaner [serve] [options]`` builds its options from the ``Config`` dataclass (one source of
truth for names, defaults, choices and help), reads ``--config FILE`` and applies only the flags the
user actually typed on top of it: default < file < explicit flag.

Every other subcommand is a :class:`Command` returned by some plugin's ``register_commands`` hook:
the core's own (``batch``, ``install-frontend``) by the built-in ``lama_cleaner.builtin_commands``,
the others by built-in plugins, whether or not they are enabled, and by installed entry points. This
module names none of them.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import signal
import sys
import textwrap
import typing
from collections.abc import Sequence
from dataclasses import MISSING, Field, fields
from importlib import metadata
from pathlib import Path
from typing import Any

from . import __version__
from .command import Command
from .config import (
    CORE_SETTINGS,
    Config,
    ConfigError,
    apply_mapping,
    check_type,
    read_config_file,
    validate_config,
)
from .errors import LamaCleanerError
from .plugins.config_loader import new_config
from .plugins.manager import split_plugins

__all__ = ["Command", "main", "entry_point"]

log = logging.getLogger("lama_cleaner")

PROG = "lama-cleaner"
DEFAULT_COMMAND = "serve"


NOT_FLAGS = {"plugins", "sections"}
"""Config fields without a generated flag (``--plugins`` is handwritten; sections come from files)."""
HIDDEN_FIELDS = {"debug"}
HIDDEN_ALIASES = {
    "--sd-disable-nsfw": "disable_nsfw",
    "--sd-run-local": "local_files_only",
    "--sd-enable-xformers": "enable_xformers",
}
"""Upstream's hidden spellings, kept so old start scripts still work."""
BANNER_PACKAGES = (
    "torch",
    "torchvision",
    "Pillow",
    "opencv-python-headless",
    "numpy",
    "flask",
    "flask-socketio",
    "python-socketio",
    "pyzmq",
    "pluggy",
    "diffusers",
    "transformers",
    "rembg",
    "realesrgan",
    "gfpgan",
)
CONFIG_EXIT_CODE = 2
"""Exit code of every refused setting (argparse uses 2 for usage errors too), --device cuda included."""


# ------------------------------------------------------------------ parser
def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_field_option(parser: argparse.ArgumentParser, f: Field[Any], hint: Any, choices: Sequence[str] | None) -> None:
    """One option generated from one Config field (type, default, choices and help come from it)."""
    default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
    help_text = argparse.SUPPRESS if f.name in HIDDEN_FIELDS else f.metadata.get("help", "")
    kwargs: dict[str, Any] = {"dest": f.name, "default": default, "help": help_text}
    args = typing.get_args(hint)
    base = next((a for a in args if a is not type(None)), hint) if args and type(None) in args else hint
    if base is bool:
        kwargs["action"] = "store_true"
    elif typing.get_origin(base) is list:
        item = (typing.get_args(base) or (str,))[0]
        kwargs.update(type=item, nargs=len(default) if default else "+")
    else:
        kwargs["type"] = base if base in (int, float, str) else str
        if choices:
            kwargs["choices"] = list(choices)
        if base is str and default is None:
            kwargs["metavar"] = f.name.upper()
    parser.add_argument(_flag(f.name), **kwargs)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: X)`` only where it informs: not for a ``None`` default (a plugin's flag
    defaults to None so that the config file still applies, and its help names the real default
    itself) and not when the help text already states its default."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        """The epilog, wrapped without splitting a flag at its hyphen (``--scheduler-`` / ``bind``)."""
        flat = " ".join(text.split())
        return textwrap.fill(flat, width, initial_indent=indent, subsequent_indent=indent, break_on_hyphens=False)

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default is None or "(default:" in text or "%(default)" in text:
            return text
        return super()._get_help_string(action)


SERVE_EPILOG = (
    f"Run '{PROG} <command> --help' for a command's options. Plugins add their own options, "
    f"listed here once the plugin is enabled ('{PROG} --plugins NAME --help')."
)


def build_serve_parser(model_names: Sequence[str] | None = None, epilog: str = SERVE_EPILOG) -> argparse.ArgumentParser:
    """The ``serve`` parser, generated from ``Config``. ``model_names`` replaces ``--model`` choices
    (plugins may register more models than the 13 built-in names); ``epilog`` ends ``--help``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Lama Cleaner 1.2.x compatible inpainting server. Without a subcommand it serves.",
        formatter_class=HelpFormatter,
        epilog=epilog,
    )
    parser.add_argument(
        "--config", metavar="FILE", default=None, help="TOML or JSON file with settings; explicit flags override it."
    )
    parser.add_argument(
        "--plugins",
        metavar="NAME[,NAME]",
        action="append",
        default=None,
        help="Plugins to enable: built-in plugin names, entry-point names, module paths.",
    )
    hints = typing.get_type_hints(Config)
    for f in fields(Config):
        if f.name in NOT_FLAGS:
            continue
        choices = f.metadata.get("choices")
        if f.name == "model" and model_names:
            choices = list(model_names)
        _add_field_option(parser, f, hints[f.name], choices)
    for alias, dest in HIDDEN_ALIASES.items():
        parser.add_argument(alias, dest=dest, action="store_true", default=False, help=argparse.SUPPRESS)
    parser.add_argument("--hf_access_token", dest="hf_access_token", default="", help=argparse.SUPPRESS)
    # Upstream's Windows-installer flags: the JSON file is read like --config; the rest is refused clearly.
    parser.add_argument("--load-installer-config", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--installer-config", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--config-installer", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--install-plugins-package", action="store_true", help=argparse.SUPPRESS)
    return parser


def explicit_dests(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """Names of the options the user actually typed: parse again with every default suppressed."""
    saved = [(action, action.default) for action in parser._actions]
    try:
        for action, _ in saved:
            action.default = argparse.SUPPRESS
        namespace, _ = parser.parse_known_args(list(argv))
    finally:
        for action, default in saved:
            action.default = default
    return set(vars(namespace))


def _preparse(argv: Sequence[str]) -> argparse.Namespace:
    """``--config``, ``--plugins`` and ``--model-dir`` are needed before the full parser exists."""
    # allow_abbrev=False: otherwise "--model cv2" would be read as an abbreviation of "--model-dir".
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config", default=None)
    pre.add_argument("--plugins", action="append", default=None)
    pre.add_argument("--model-dir", dest="model_dir", default=None)
    pre.add_argument("--load-installer-config", action="store_true")
    pre.add_argument("--installer-config", default=None)
    pre.add_argument("--config-installer", action="store_true")
    pre.add_argument("--install-plugins-package", action="store_true")
    namespace, _ = pre.parse_known_args(list(argv))
    return namespace


def _config_file(pre: argparse.Namespace) -> str | None:
    """``--config FILE``, or upstream's ``--load-installer-config --installer-config FILE`` (JSON)."""
    if pre.config_installer:
        raise ConfigError("--config-installer (the gradio installer page) is not supported; edit a --config file")
    if pre.install_plugins_package:
        raise ConfigError("--install-plugins-package is not supported; run: pip install rembg realesrgan gfpgan")
    if pre.load_installer_config:
        if not pre.installer_config:
            raise ConfigError("--load-installer-config needs --installer-config FILE")
        return pre.config or pre.installer_config
    return pre.config


def build_config(file_data: dict[str, Any], args: argparse.Namespace, explicit: set[str], pm: Any = None) -> Config:
    """Defaults, then the file, then the explicitly given flags. The sections known are every
    built-in plugin's and those the plugins of ``pm`` declare."""
    config = new_config(pm)
    apply_mapping(config, file_data)
    overrides = {name: getattr(args, name) for name in explicit if name in CORE_SETTINGS and name != "plugins"}
    apply_mapping(config, overrides)
    if "plugins" in explicit:
        config.plugins = split_plugins(args.plugins)
    return config


# ------------------------------------------------------------------ checks
def apply_model_dir(model_dir: str | None) -> None:
    """Upstream's ``--model-dir``: set ``XDG_CACHE_HOME`` and ``U2NET_HOME`` before torch is imported."""
    if not model_dir:
        return
    path = Path(os.path.expanduser(model_dir))
    path.mkdir(parents=True, exist_ok=True)
    os.environ["XDG_CACHE_HOME"] = str(path)
    os.environ["U2NET_HOME"] = str(path)


def check_config(config: Config, model_names: Sequence[str]) -> None:
    """Refuse settings the server cannot start with, each with a one-line ConfigError."""
    from .models.device import resolve_device

    validate_config(config)  # the plugins' sections, after the file, the flags and the plugins' hooks
    if config.model not in model_names:
        raise ConfigError(f"unknown model {config.model!r}; choose one of: {', '.join(model_names)}")
    if not 0 <= int(config.quality) <= 100:
        raise ConfigError(f"--quality must be between 0 and 100, got {config.quality}")
    try:
        resolve_device(config.device)
    except (ValueError, RuntimeError, LamaCleanerError) as exc:
        raise ConfigError(str(exc)) from exc
    if config.input:
        path = Path(os.path.expanduser(config.input))
        if not path.exists():
            raise ConfigError(f"--input {config.input} does not exist")
        if path.is_dir() and not config.output_dir:
            raise ConfigError("--output-dir is required when --input is a directory (file manager mode)")
    if config.output_dir:
        Path(os.path.expanduser(config.output_dir)).mkdir(parents=True, exist_ok=True)


# ------------------------------------------------------------------ banner
def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def banner(config: Config, plugin_names: Sequence[str]) -> str:
    """Start-up environment summary (upstream prints one too; it makes bug reports useful)."""
    versions = ", ".join(f"{name} {v}" for name in BANNER_PACKAGES if (v := _version(name)))
    return "\n".join(
        [
            f"lama-cleaner {__version__} | Python {platform.python_version()} | {platform.platform()}",
            f"packages: {versions}",
            f"plugins: {', '.join(plugin_names) or '-'}",
            f"model {config.model} on {config.device}; serving http://{config.host}:{config.port}",
        ]
    )


# ------------------------------------------------------------------ commands
def _fail(message: str, code: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


def startup_error_message(exc: BaseException) -> str | None:
    """The one line to print for an error that stops the server from starting, or None for a bug.

    Binding a socket (the HTTP port, a ZeroMQ endpoint of the scheduler) and opening the journal
    (another scheduler holds the data directory, migrations missing) fail for reasons the operator
    must fix, so they get a message, not a traceback. ``StoreError`` is a ``RuntimeError``.
    """
    if isinstance(exc, LamaCleanerError):
        return exc.message
    if isinstance(exc, OSError):
        return f"cannot start: {exc.strerror or exc}"
    if type(exc).__module__.startswith("zmq"):  # zmq.ZMQError, without importing zmq in classic mode
        return f"cannot start: ZeroMQ: {exc}"
    if isinstance(exc, RuntimeError):
        return f"cannot start: {exc}"
    return None


def _stop_on_sigterm(_signum: int, _frame: Any) -> None:
    """SIGTERM stops the server like Ctrl+C: serving ends, then executors and plugins shut down."""
    raise KeyboardInterrupt


def prepare(argv: Sequence[str]) -> tuple[Config, Any, argparse.Namespace]:
    """Resolve ``serve``'s configuration and plugin manager (raises ConfigError)."""
    from .models.registry import build_model_registry
    from .plugins.manager import create_plugin_manager

    pre = _preparse(argv)
    config_file = _config_file(pre)
    file_data = read_config_file(config_file) if config_file else {}
    apply_model_dir(pre.model_dir or file_data.get("model_dir") or file_data.get("model-dir"))
    file_plugins = check_type(file_data.get("plugins") or [], list[str], "plugins")  # not "abc" -> a, b, c
    enabled = split_plugins(pre.plugins) if pre.plugins else file_plugins
    pm = create_plugin_manager(enabled)
    model_names = build_model_registry(pm).names()
    wants_help = any(arg in ("-h", "--help") for arg in argv)
    parser = build_serve_parser(model_names, serve_epilog(enabled) if wants_help else SERVE_EPILOG)
    pm.hook.add_cli_options(parser=parser, command="serve")
    args = parser.parse_args(list(argv))
    config = build_config(file_data, args, explicit_dests(parser, argv), pm)
    config.plugins = enabled  # what the manager actually loaded
    pm.hook.configure(config=config, args=args)
    check_config(config, model_names)
    return config, pm, args


def serve_main(argv: Sequence[str]) -> int:
    """``lama-cleaner [serve]``: start the web server and block until it stops.

    Runs the ``serve`` role: ``startup`` before the app is built (so a plugin's logging or metrics
    cover the executor's start), ``shutdown`` after the executor and the event observers are closed,
    on every way out (a normal stop, Ctrl+C, SIGTERM, an error while starting).
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config, pm, _args = prepare(argv)
    except ConfigError as exc:
        return _fail(str(exc), CONFIG_EXIT_CODE)

    from .plugins.lifecycle import running
    from .plugins.manager import plugin_names
    from .server import http_server
    from .server.app import close_app, create_app

    print(banner(config, plugin_names(pm)), flush=True)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    app = None
    serving = False  # past start-up: the HTTP server itself runs
    try:
        with running(pm, config, "serve"):
            try:
                app, socketio, _executor = create_app(config, pm)
                pm.hook.server_started(config=config, app=app)
                serving = True
                if config.debug:  # Flask's debugger needs Werkzeug's development server
                    socketio.run(app, host=config.host, port=config.port, debug=True, use_reloader=False,
                                 allow_unsafe_werkzeug=True)  # fmt: skip
                else:
                    http_server.serve(app, socketio, config)
            finally:
                if app is not None:
                    close_app(app)  # the executor, then the observers' queued events, before shutdown
    except ConfigError as exc:  # a plugin refusing its settings while starting
        return _fail(str(exc), CONFIG_EXIT_CODE)
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        if serving:  # binding the HTTP port failed
            return _fail(f"cannot serve on {config.host}:{config.port}: {exc.strerror or exc}", 1)
        return _fail(startup_error_message(exc) or str(exc), 1)
    except Exception as exc:
        message = None if serving else startup_error_message(exc)
        if message is None:
            raise
        return _fail(message, 1)
    return 0


# ------------------------------------------------------------------ commands
def discover_commands(pm: Any = None) -> dict[str, Command]:
    """``{name: Command}`` from every ``register_commands`` implementation: the core's, every
    built-in plugin's (enabled or not) and installed entry points'. Two plugins registering one
    name is a ConfigError naming both."""
    from .plugins.manager import catalog_plugin_manager

    pm = pm if pm is not None else catalog_plugin_manager()
    found: dict[str, tuple[Command, str]] = {}
    for impl in pm.hook.register_commands.get_hookimpls():  # registration order: the core first
        for command in impl.function() or ():
            if not isinstance(command, Command):
                raise ConfigError(f"plugin {impl.plugin_name!r}: register_commands must return Command objects")
            if command.name in found and found[command.name][0] != command:
                raise ConfigError(
                    f"command {command.name!r} is registered by {found[command.name][1]!r} and by {impl.plugin_name!r}"
                )
            found.setdefault(command.name, (command, impl.plugin_name))
    return {name: found[name][0] for name in sorted(found)}


def serve_epilog(enabled: Sequence[str] = ()) -> str:
    """The end of ``lama-cleaner --help``: every command, and the options each built-in plugin that
    is not enabled would add (so an operator learns they exist without reading the docs)."""
    from .plugins.manager import builtin_plugins, catalog_plugin_manager

    try:
        catalog = catalog_plugin_manager()
        commands = discover_commands(catalog)
    except (ConfigError, ImportError):
        return SERVE_EPILOG
    order = sorted(commands, key=lambda name: (name != DEFAULT_COMMAND, name))
    listed = "; ".join(
        f"{name}{' (default)' if name == DEFAULT_COMMAND else ''}: {commands[name].help}" for name in order
    )
    parts = [f"Commands: {listed}.", f"Run '{PROG} <command> --help' for a command's options."]
    for name in builtin_plugins():
        flags = [] if name in enabled else _serve_flags_of(catalog, name)
        if flags:
            shown = ", ".join(flags)
            parts.append(f"Plugin {name} adds options once enabled: '{PROG} --plugins {name} --help' shows {shown}.")
    return " ".join(parts)


def _serve_flags_of(pm: Any, plugin_name: str) -> list[str]:
    """The flags one plugin's ``add_cli_options`` adds to ``serve``, found on a scratch parser."""
    scratch = argparse.ArgumentParser(add_help=False)
    kwargs = {"parser": scratch, "command": DEFAULT_COMMAND}
    for impl in pm.hook.add_cli_options.get_hookimpls():
        if impl.plugin_name == plugin_name:
            impl.function(*(kwargs[name] for name in impl.argnames))
    return [action.option_strings[0] for action in scratch._actions if action.option_strings]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lama-cleaner`` with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0].startswith("-"):
        return serve_main(args)
    try:
        commands = discover_commands()
    except (ConfigError, ImportError) as exc:
        return _fail(str(exc), CONFIG_EXIT_CODE)
    command = commands.get(args[0])
    if command is None:
        return serve_main(args)  # argparse names the stray argument
    return int(command.main(args[1:]) or 0)


def entry_point() -> None:
    """Console script ``lama-cleaner``."""
    sys.exit(main())
