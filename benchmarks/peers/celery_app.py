"""The Celery + Redis peer, configured the way one would for long GPU tasks.

Settings follow Celery's own advice for long-running tasks (and the complaints collected in
shared/research/queue-anchors.md section 3): ``acks_late`` so a task is acknowledged only after it
ran, ``worker_prefetch_multiplier=1`` so an idle worker does not hoard tasks, and
``task_reject_on_worker_lost`` so a killed worker's task is redelivered instead of acked. Results
go to a Redis result backend so a producer can wait for them, which is what a web server would do.

The broker URL comes from ``LC_BENCH_REDIS_URL`` (the benchmark starts its own ``redis-server`` on
a free loopback port). Start workers with
``celery -A benchmarks.peers.celery_app worker -P prefork -c 1 -n w1@%h`` from the repo root
(``-P solo`` for the reference column).
Serializer: Celery's default JSON, so binary payloads travel as base64 text (what a web app would
send; pickle is refused by a worker running as root and is unsafe, msgpack is not installed).
"""

from __future__ import annotations

import base64
import os
import time

from celery import Celery

REDIS_URL = os.environ.get("LC_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def create_app(url: str) -> Celery:
    """A Celery app on ``url`` (broker and result backend) with the benchmark's settings.

    The benchmark's client side makes one per measured system, so a second Celery column starts
    from fresh connections instead of a closed app pointed at a stopped Redis."""
    celery_app = Celery("lc_bench", broker=url, backend=url)
    celery_app.conf.update(
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        task_reject_on_worker_lost=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        result_expires=600,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_disable_rate_limits=True,
        # Long GPU tasks: a visibility timeout longer than any task so Redis never redelivers a
        # running task to a second worker (the 1 h default is already long; set explicitly).
        broker_transport_options={"visibility_timeout": 3600},
    )
    return celery_app


app = create_app(REDIS_URL)
"""The workers' app (``celery -A benchmarks.peers.celery_app``); tasks are registered on it."""


@app.task(name="lc_bench.noop")
def noop() -> None:
    """An empty task: measures pure queueing overhead."""
    return None


@app.task(name="lc_bench.echo")
def echo(body_b64: str) -> str:
    """Decode the base64 payload and send it back encoded: payload transfer in and out."""
    return base64.b64encode(base64.b64decode(body_b64)).decode("ascii")


@app.task(name="lc_bench.sleep")
def sleep_ms(ms: int) -> None:
    """A simulated model that holds its worker for ``ms`` milliseconds."""
    time.sleep(ms / 1000.0)
    return None
