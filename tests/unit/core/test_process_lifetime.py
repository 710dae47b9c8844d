"""``die_with_parent`` also covers a parent that died before the child asked to die with it.

``PR_SET_PDEATHSIG`` only covers a parent death that comes after the request, and a spawned Python
child needs a good fraction of a second to get there: the chaos soak caught inference children
whose node was SIGKILLed in that window going on alone (loading their model for nobody, then
failing to say ``ready``). Given the pid of the process that started it, the child now checks,
right after asking, that this process is still its parent, and kills itself if not.

Real processes: a Python child is told either its real parent (it lives on) or a pid that is not
its parent, which is what an orphan sees (it is killed with the signal it asked for).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.support.server_process import REPO_ROOT, server_env

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")

CHILD = (
    "import signal, sys; from lama_cleaner.process_lifetime import die_with_parent; "
    "die_with_parent(signal.SIGTERM, parent_pid=int(sys.argv[1])); print('carried on')"
)


def _run(parent_pid: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(parent_pid)],
        cwd=REPO_ROOT, env=server_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_a_child_whose_starter_is_still_its_parent_carries_on():
    done = _run(os.getpid())
    assert (done.returncode, done.stdout.strip()) == (0, "carried on"), done.stderr


def test_a_child_whose_starter_is_gone_already_dies_with_the_signal_it_asked_for():
    not_my_parent = os.getpid() + 1_000_000  # no process has this pid; an orphan's getppid() differs likewise
    done = _run(not_my_parent)
    assert done.returncode == -signal.SIGTERM, (done.returncode, done.stdout, done.stderr)
    assert "carried on" not in done.stdout


def test_the_inference_child_names_the_node_that_started_it():
    from lama_cleaner.plugins.distributed.node import inference

    assert inference._starter_pid() is None  # this process was not started by multiprocessing
