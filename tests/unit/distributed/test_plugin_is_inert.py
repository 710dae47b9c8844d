"""Registering the ``distributed`` plugin starts nothing: the scheduler and node processes (and the
inference child) register it like any other plugin, so it must cost nothing until a hook of its acts.

Checked in a fresh interpreter, where nothing else has imported or started anything yet.
"""

from __future__ import annotations

import json
import subprocess
import sys

from lama_cleaner.plugins.distributed.roles import process_plugins
from tests.support.server_process import REPO_ROOT, server_env

PROBE = """
import json, sys, threading
from lama_cleaner.config import Config
from lama_cleaner.plugins.lifecycle import running
from lama_cleaner.plugins.manager import create_plugin_manager
from lama_cleaner.plugins.distributed.roles import process_plugins

before = {t.name for t in threading.enumerate()}
pm = create_plugin_manager(process_plugins([]), autoload=False)
seen = []
for role in ("scheduler", "node", "inference"):
    with running(pm, Config(), role):
        seen.append(sorted({t.name for t in threading.enumerate()} - before))
modules = sorted(m for m in sys.modules if m.startswith("lama_cleaner.plugins.distributed."))
names = [name for name, _ in pm.list_name_plugin()]
print(json.dumps({"plugins": names, "threads": seen, "modules": modules, "zmq": "zmq" in sys.modules}))
"""


def test_process_plugins_puts_distributed_first_once():
    assert process_plugins(["a", "distributed", " b "], ["a", "", "c"]) == ["distributed", "a", "b", "c"]
    assert process_plugins() == ["distributed"]


def test_registering_the_plugin_starts_no_thread_and_imports_none_of_the_system():
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO_ROOT, env=server_env(), capture_output=True,
                            text=True, timeout=120, check=True)  # fmt: skip
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert "distributed" in seen["plugins"]
    assert seen["threads"] == [[], [], []], "startup of a role started a thread"
    assert not seen["zmq"], "no socket library is even imported"
    # Its face only: the hooks it publishes and its settings; no scheduler, node or producer module.
    assert set(seen["modules"]) <= {
        "lama_cleaner.plugins.distributed.plugin",
        "lama_cleaner.plugins.distributed.hookspecs",
        "lama_cleaner.plugins.distributed.config",
        "lama_cleaner.plugins.distributed.roles",
        "lama_cleaner.plugins.distributed.commands",
    }, seen["modules"]
