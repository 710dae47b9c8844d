"""Lama Cleaner: a 1.2.x wire-compatible inpainting server and pluggy plugin host."""

__version__ = "2.0.0.dev0"


def entry_point() -> None:
    """Console-script entry (kept for the upstream ``lama_cleaner:entry_point`` name)."""
    from .cli import entry_point as _main

    _main()
