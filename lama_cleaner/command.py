"""``Command``: one ``lama-cleaner`` subcommand, as the ``register_commands`` hook returns it.

Its own module so that hookspecs and plugins can name it without importing the CLI, which imports
the plugin machinery in turn; ``lama_cleaner.cli.Command`` is the same class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    """A ``lama-cleaner`` subcommand, returned by a plugin's ``register_commands`` hook.

    ``main(argv)`` gets the arguments after the command's name and returns the exit status. Keep
    the module that defines it light and import the command's machinery inside ``main``: every
    ``lama-cleaner`` invocation collects every command.
    """

    name: str
    help: str
    main: Callable[[list[str]], int | None]
