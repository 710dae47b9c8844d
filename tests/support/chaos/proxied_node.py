"""``python -m tests.support.chaos.proxied_node node ...``: ``lama-cleaner node`` whose queue
connections go through the soak's proxies too.

Why: a node reaches the scheduler's control socket at the address it is given (the soak gives it a
proxy) but each queue at the address the scheduler grants in WELCOME, which is the scheduler's own
port. A link cut at the proxy would then leave the queue connection up, a half cut. The soak passes
``LAMA_CHAOS_QUEUE_MAP`` (JSON, granted endpoint -> proxy endpoint) and this launcher applies it
where the node turns a grant into an address, then runs the real command line unchanged.
"""

from __future__ import annotations

import json
import os
import sys

from lama_cleaner.cli import main
from lama_cleaner.plugins.distributed.node import agent

QUEUE_MAP_ENV = "LAMA_CHAOS_QUEUE_MAP"


def _install(mapping: dict[str, str]) -> None:
    granted_address = getattr(agent, "queue_endpoint_for", None)
    if granted_address is None:  # renamed in the product: say so rather than soak with half cuts
        raise SystemExit("proxied_node: lama_cleaner...node.agent.queue_endpoint_for is gone; update the launcher")

    def through_proxy(granted: str, control: str) -> str:
        return mapping.get(granted) or granted_address(granted, control)

    agent.queue_endpoint_for = through_proxy


if __name__ == "__main__":
    _install(json.loads(os.environ.get(QUEUE_MAP_ENV) or "{}"))
    sys.exit(main(sys.argv[1:]))
