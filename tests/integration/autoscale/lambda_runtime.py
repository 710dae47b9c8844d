"""The runtime side of the test platform: ``python -m tests.integration.autoscale.lambda_runtime LIMIT_S``.

Reads one invocation's event (JSON) on stdin, calls the shipped AWS Lambda handler with a context
whose ``get_remaining_time_in_millis`` counts down from ``LIMIT_S`` (as Lambda's does), and prints
the handler's return value as one JSON line.
"""

from __future__ import annotations

import json
import sys
import time

from lama_cleaner.plugins.autoscale.serverless.aws_lambda import handler


class Context:
    def __init__(self, limit_s: float) -> None:
        self.deadline = time.monotonic() + limit_s
        self.function_name = "lama-cleaner-node"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def main() -> int:
    limit_s = float(sys.argv[1])
    event = json.loads(sys.stdin.read())
    result = handler(event, Context(limit_s))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
