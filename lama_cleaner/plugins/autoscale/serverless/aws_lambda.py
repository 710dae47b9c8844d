"""AWS Lambda entry point: ``lama_cleaner.plugins.autoscale.serverless.aws_lambda.handler``.

The ``aws-lambda`` provider invokes the function asynchronously with an :class:`InstancePayload`;
the handler runs one node for it (:func:`run_instance`) and returns when the node has left. The
remaining time comes from the Lambda context (``get_remaining_time_in_millis``), so the node hands
its task back ``stop_before_limit_s`` before the 15-minute limit.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from .instance import forward_sigterm, run_instance
from .payload import InstancePayload

log = logging.getLogger(__name__)


def handler(event: Any, context: Any) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO)
    payload = InstancePayload.from_json(event)
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    stop = threading.Event()
    forward_sigterm(stop)
    time_left = (lambda: remaining() / 1000.0) if callable(remaining) else None
    return run_instance(payload, time_left, stop=stop).to_dict()
