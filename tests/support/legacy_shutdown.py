"""Test plugin with the older one-argument ``shutdown(config)``: it must keep working now that the
hook also passes ``role`` (pluggy passes only the arguments an implementation names)."""

from __future__ import annotations

from lama_cleaner.plugins.hookspecs import hookimpl

from .lifecycle_recorder import record


@hookimpl
def shutdown(config):
    record("legacy-shutdown")
