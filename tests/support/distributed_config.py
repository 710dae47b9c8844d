"""The settings every test that runs a distributed server or node shares.

``FAST`` is a config-file section with a 0.2 s heartbeat and short reconnect/retry delays, so that
"offline after 3 missed heartbeats" or "retried after a backoff" takes well under a second; write it
with ``json.dumps`` (or merge extra settings into a copy) and pass the file with ``--config``.
``FAKE_PLUGIN`` is the ``--plugins`` module with the sleeping/stepping/counting test models, given to
servers and node subprocesses alike.
"""

from __future__ import annotations

from typing import Any

FAKE_PLUGIN = "tests.support.fake_models"

FAST: dict[str, Any] = {
    "distributed": {
        "heartbeat_interval_s": 0.2,
        "heartbeat_liveness": 3,
        "reconnect_min_s": 0.1,
        "reconnect_max_s": 0.4,
        "retry": {"inpaint": {"backoff_base_s": 0.05, "backoff_max_s": 0.2}},
    }
}
