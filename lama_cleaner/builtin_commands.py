"""The core's own subcommands, registered through ``register_commands`` like any plugin's.

Built-in behaviour is itself a plugin (as pytest and datasette register their defaults), so the
command seam is exercised by the product: ``serve`` (also the default when no command is named),
``batch`` and ``install-frontend``. Each ``main`` imports its module only when run.
"""

from __future__ import annotations

from .command import Command
from .plugins.hookspecs import hookimpl


def _serve(argv: list[str]) -> int:
    from .cli import serve_main

    return serve_main(argv)


def _batch(argv: list[str]) -> int:
    from .batch import main

    return main(argv)


def _install_frontend(argv: list[str]) -> int:
    from .frontend import main

    return main(argv)


COMMANDS = (
    Command("serve", "run the web server (the 1.2.x routes and Socket.IO)", _serve),
    Command("batch", "inpaint every image of a folder through the task API, resumably", _batch),
    Command("install-frontend", "fetch the lama-cleaner 1.2.5 web front end into the user cache", _install_frontend),
)


@hookimpl
def register_commands() -> list[Command]:
    return list(COMMANDS)
