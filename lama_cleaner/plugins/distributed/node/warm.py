"""Which model a node loads before it takes work, so no request waits for a cold model (issue 11, item 2).

Why: the inference child used to load a model on its first task for it; with four nodes on one GPU the
first requests after a start waited seconds (p95 4.3 s against 0.46 s once warm). Now the child loads
the chosen model before it says ``ready``, and a node offers credit only once its child is ready, so a
node that takes a task already holds its model and the scheduler sees it in ``loaded_model`` (HELLO,
HEARTBEAT), which its dispatch prefers (``routing.choose_node``).

The child holds one model at a time (``ModelManager``), so one is chosen: the setting
``distributed.node_preload`` names it, or ``auto`` picks the first of the server's start-up model
(``--model``) and the offered models, in that order, that the node offers and has on disk
(``is_downloaded``: a preload never starts a download of its own); ``none`` keeps the lazy load.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)

AUTO = "auto"
NONE = "none"


def preload_model(setting: str, offered: Sequence[str], registry: Any, config: Any) -> str | None:
    """The model this node's inference child loads at start, or None for none (see the module doc)."""
    choice = (setting or AUTO).strip()
    if choice == NONE or not offered:
        return None
    if choice != AUTO:
        if choice not in offered:
            log.warning("node_preload %r is not among the models this node offers (%s)", choice, ", ".join(offered))
            return None
        return choice
    candidates = [config.model, *offered] if config.model in offered else list(offered)
    for name in dict.fromkeys(candidates):
        try:
            if registry.get(name).is_downloaded(config):
                return name
        except Exception as exc:  # noqa: BLE001 - a model that cannot answer is not preloaded
            log.debug("cannot tell whether %s is downloaded: %s", name, exc)
    return None


def load_in_child(models: Any, name: str | None) -> None:
    """In the inference child: load ``name`` now; a failure is logged, not fatal (the task that needs
    the model reports the error, as before)."""
    if not name:
        return
    try:
        models.switch(name)
    except Exception as exc:  # noqa: BLE001 - the node still serves its other models
        log.warning("preloading model %s failed: %s", name, exc)
