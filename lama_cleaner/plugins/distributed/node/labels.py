"""The labels a node advertises in its capabilities: ``--labels``, then every plugin's ``node_labels``.

Why a module of its own: the merge order and the checks on what a plugin returns are a small
policy a reader should find in one place. A plugin label replaces a ``--labels`` one of the same key
(the hook's contract: merged *over* the flag); between plugins, the one pluggy calls first (the most
recently registered) wins, as for a ``firstresult`` hook. A plugin that returns something other than
``str -> str`` is refused at start-up in one line naming it, rather than sending a HELLO the
scheduler cannot read.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ....config import ConfigError

log = logging.getLogger(__name__)


def advertised_labels(pm: Any, config: Any, flags: Mapping[str, str]) -> dict[str, str]:
    """``flags`` (from ``--labels``) with each plugin's ``node_labels(config)`` merged over them."""
    labels = dict(flags)
    hook = getattr(pm.hook, "node_labels", None)
    if hook is None:  # the distributed plugin (which declares the hook) is not registered
        return labels
    for impl in hook.get_hookimpls():  # pluggy calls the last one first: it wins, as for firstresult hooks
        kwargs = {"config": config}
        returned = impl.function(*(kwargs[name] for name in impl.argnames))
        for key, value in checked(impl.plugin_name, returned).items():
            if key in labels and labels[key] != value:
                log.info("label %s=%s from plugin %s replaces %s=%s", key, value, impl.plugin_name, key, labels[key])
            labels[key] = value
    return labels


def checked(plugin: str, returned: Any) -> dict[str, str]:
    """What one ``node_labels`` returned, as a dict of non-empty str keys to str values (None = no labels)."""
    if returned is None:
        return {}
    if not isinstance(returned, Mapping) or not all(
        isinstance(key, str) and key.strip() and isinstance(value, str) for key, value in returned.items()
    ):
        raise ConfigError(f"plugin {plugin!r}: node_labels must return a dict of str to str, got {returned!r}")
    return {key.strip(): value for key, value in returned.items()}
