"""One serverless instance's life: run a node for the payload's queue until it idles out, is drained,
or the platform's time limit comes near; shared by every platform's entry point.

The node is an ordinary ``lama-cleaner node`` subprocess that connects *out* to the scheduler
(nothing connects in: a function has no address), advertises the labels that name its provider
and instance, and leaves by itself: ``--max-idle-s`` (scale to zero) or ``--exit-on-drain`` (the
autoscaler scaled in). Before the time limit it is asked to stop (SIGTERM) ``stop_before_limit_s``
ahead: it takes no new task, lets the current one finish for half of that margin, then hands it back
(BYE names the task, the scheduler re-queues it without charging an attempt). Should it still run
when less than a second is left, it is killed; the scheduler then re-queues its task as for any lost
node. ``--parent-pid`` ties the node to the handler, so a platform that kills the handler kills the node.

Deployment knobs come from the environment, not the payload (they belong to the image):
``LAMA_CLEANER_NODE_CONFIG`` (a config file for the node), ``LAMA_CLEANER_NODE_ARGS`` (more
``lama-cleaner node`` arguments, e.g. ``--device cuda --models lama``).
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ..labels import instance_labels, labels_argument
from .payload import InstancePayload

log = logging.getLogger(__name__)

CONFIG_ENV = "LAMA_CLEANER_NODE_CONFIG"
ARGS_ENV = "LAMA_CLEANER_NODE_ARGS"
KILL_MARGIN_S = 1.0
"""The node is killed when this little time is left (the platform would kill everything anyway)."""

IDLE = "idle"
DRAINED_OR_STOPPED = "exited"
TIME_LIMIT = "time_limit"
STOP_REQUESTED = "stop_requested"
KILLED = "killed"


@dataclass
class InstanceResult:
    """What the handler returns to the platform (and logs)."""

    instance_id: str
    exit_code: int | None
    ended: str
    """``exited`` (idled out, drained or stopped, code 0), ``time_limit`` (stopped before the limit),
    ``stop_requested`` (stopped on the platform's signal: SIGTERM, FC's PreStop),
    ``killed`` (killed at the last moment) or ``failed`` (the node exited with an error)."""
    ran_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def node_command(
    payload: InstancePayload, *, stop_grace_s: float, env: Mapping[str, str], python: str | None = None
) -> list[str]:
    """The ``lama-cleaner node`` command line for ``payload``."""
    labels = {**payload.labels, **instance_labels(payload.provider, payload.instance_id)}
    cmd = [python or sys.executable, "-m", "lama_cleaner", "node", "--scheduler", payload.scheduler]
    cmd += ["--queues", ",".join(payload.queues), "--name", payload.instance_id, "--labels", labels_argument(labels)]
    cmd += ["--max-idle-s", f"{payload.idle_timeout_s:g}", "--exit-on-drain", "--stop-grace", f"{stop_grace_s:g}"]
    cmd += ["--parent-pid", str(os.getpid())]
    if env.get(CONFIG_ENV):
        cmd += ["--config", env[CONFIG_ENV]]
    return cmd + shlex.split(env.get(ARGS_ENV, ""))


def run_instance(
    payload: InstancePayload,
    time_left_s: Callable[[], float] | None,
    *,
    env: Mapping[str, str] | None = None,
    poll_s: float = 0.1,
    stop: threading.Event | None = None,
) -> InstanceResult:
    """Run the node until it exits; ``time_left_s()`` is the platform's remaining time (None: no limit).
    Setting ``stop`` (a platform's pre-stop signal) asks the node to stop as the time limit does."""
    environ = dict(os.environ if env is None else env)
    stop_grace_s = max(0.5, payload.stop_before_limit_s / 2)
    cmd = node_command(payload, stop_grace_s=stop_grace_s, env=environ)
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=environ, stdin=subprocess.DEVNULL)
    log.info(
        "instance %s: node pid %s serves %s via %s", payload.instance_id, proc.pid, payload.queues, payload.scheduler
    )
    ended = ""
    while proc.poll() is None:
        left = time_left_s() if time_left_s is not None else float("inf")
        if not ended and (left <= payload.stop_before_limit_s or (stop is not None and stop.is_set())):
            ended = TIME_LIMIT if left <= payload.stop_before_limit_s else STOP_REQUESTED
            log.info(
                "instance %s: %.1f s left; asking the node to hand its work back and stop", payload.instance_id, left
            )
            proc.send_signal(signal.SIGTERM)
        elif ended and left <= KILL_MARGIN_S:
            ended = KILLED
            log.warning(
                "instance %s: node still running %.1f s before the limit; killing it", payload.instance_id, left
            )
            proc.kill()
        try:
            proc.wait(poll_s)
        except subprocess.TimeoutExpired:
            pass
    code = proc.returncode
    if not ended:
        ended = DRAINED_OR_STOPPED if code == 0 else "failed"
    result = InstanceResult(payload.instance_id, code, ended, round(time.monotonic() - started, 3))
    log.info("instance %s ended: %s (exit code %s) after %.1f s", payload.instance_id, ended, code, result.ran_s)
    return result


def forward_sigterm(stop: threading.Event) -> None:
    """A SIGTERM to the handler (a platform reclaiming the instance) asks the node to stop, as the
    time limit does; only possible from the main thread."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
