"""A process that sets up logging like a real role and logs one of everything; its test reads its output.

``python -m tests.integration.monitor.log_scenario ROLE FORMAT [--dir DIR] [--diagnose] [--rotation R]
[--retention N] [--lines N]``
"""

from __future__ import annotations

import argparse
import logging
import warnings

from loguru import logger

from lama_cleaner.plugins.monitor.config import MonitorConfig, validate_monitor
from lama_cleaner.plugins.monitor.logs import setup_logging, shutdown_logging, task_context


def fail_with_a_secret() -> int:
    api_token = "SECRET-TOKEN-123"  # what loguru's diagnose would print next to the failing line
    tiles = 0
    return len(api_token) // tiles


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role")
    parser.add_argument("format")
    parser.add_argument("--dir")
    parser.add_argument("--instance")
    parser.add_argument("--diagnose", action="store_true")
    parser.add_argument("--rotation", default="100 MB")
    parser.add_argument("--retention", default="14 days")
    parser.add_argument("--lines", type=int, default=0)
    args = parser.parse_args()
    retention: str | int = int(args.retention) if args.retention.isdigit() else args.retention
    cfg = MonitorConfig(
        log_format=args.format,
        log_dir=args.dir,
        log_diagnose=args.diagnose,
        log_rotation=args.rotation,
        log_retention=retention,
    )
    validate_monitor(cfg)
    # A library that configured its own handler before we set up: its lines must still come through us.
    werkzeug = logging.getLogger("werkzeug")
    werkzeug.addHandler(logging.StreamHandler())
    setup_logging(args.role, cfg, instance=args.instance)

    ours = logging.getLogger("lama_cleaner.plugins.distributed.scheduler")
    ours.debug("not shown at INFO")
    ours.info(
        "task %s dispatched to node %s",
        "t-1",
        "n1",
        extra={"task_id": "t-1", "queue": "gpu", "node": "n1", "attempt": 1},
    )
    with task_context("t-1", queue="gpu", node="n1", attempt=2):
        logger.info("started on {}", "cuda:0")
        logging.getLogger("lama_cleaner.plugins.distributed.node").warning("retrying after a lost connection")
        ours.info("explicit wins", extra={"node": "n2"})
    werkzeug.info('127.0.0.1 - - "POST /inpaint HTTP/1.1" 200 -')
    logging.getLogger("some.library").error("literal {braces} and <red>markup</red> stay as they are")
    warnings.warn("a deprecated call", UserWarning, stacklevel=1)
    try:
        fail_with_a_secret()
    except ZeroDivisionError:
        ours.exception("task %s failed", "t-1", extra={"task_id": "t-1"})
    for i in range(args.lines):
        ours.info("filler line %d %s", i, "x" * 100)
    shutdown_logging()


if __name__ == "__main__":
    main()
