"""Pure parts of the node's race and recycling rules: remembered cancels, recycle decisions, RSS
reading, the new protocol fields and the node's command-line limits."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lama_cleaner.plugins.config_loader import load_config
from lama_cleaner.plugins.distributed.config import DistributedConfig
from lama_cleaner.plugins.distributed.node.current_work import RecentCancels
from lama_cleaner.plugins.distributed.node.inference import child_rss_mb, recycle_reason
from lama_cleaner.plugins.distributed.node.main import build_parser
from lama_cleaner.plugins.distributed.wire import protocol as p


def test_recent_cancels_match_task_and_attempt_once():
    cancels = RecentCancels()
    cancels.add("t", 1, now=0.0)
    assert not cancels.take("t", 2, now=1.0)  # another attempt is another dispatch
    assert not cancels.take("u", 1, now=1.0)
    assert cancels.take("t", 1, now=1.0)
    assert not cancels.take("t", 1, now=1.0)  # answered once, then forgotten


def test_recent_cancels_are_bounded_by_count_and_age():
    cancels = RecentCancels(limit=3, ttl_s=10.0)
    for i in range(5):
        cancels.add(f"t{i}", 1, now=float(i))
    assert len(cancels) == 3
    assert not cancels.take("t0", 1, now=5.0) and not cancels.take("t1", 1, now=5.0)  # oldest dropped
    assert not cancels.take("t2", 1, now=12.5)  # older than ttl_s
    assert cancels.take("t4", 1, now=12.5)


@pytest.mark.parametrize(
    ("tasks", "rss", "max_tasks", "max_rss", "expect"),
    [
        (5, 9000.0, 0, 0, None),  # both limits off
        (1, None, 2, 0, None),
        (2, None, 2, 0, "ran 2 tasks (limit 2)"),
        (1, 300.0, 0, 200, "RSS 300 MiB over the 200 MiB limit"),
        (1, 200.0, 0, 200, None),  # at the cap is not over it
        (1, None, 0, 200, None),  # unreadable RSS never triggers a recycle
    ],
)
def test_recycle_reason(tasks, rss, max_tasks, max_rss, expect):
    assert recycle_reason(tasks, rss, max_tasks, max_rss) == expect


def test_child_rss_reads_a_live_process_and_gives_none_for_a_dead_one():
    own = child_rss_mb(os.getpid())
    assert own is not None and own > 1.0
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert child_rss_mb(int(done.stdout)) is None  # exited and reaped: no /proc entry


def test_new_optional_fields_are_type_checked():
    base = {"node_id": "n", "task_id": "t", "attempt": 1, "error": "e", "retryable": True}
    msg = p.decode(p.encode(p.FAILED, {**base, "handed_back": True}), receiver="scheduler")
    assert msg.header["handed_back"] is True
    with pytest.raises(p.ProtocolError, match="handed_back"):
        p.decode(p.encode(p.FAILED, {**base, "handed_back": "yes"}), receiver="scheduler")
    assert p.decode(p.encode(p.BYE, {"node_id": "n", "task_id": None}), receiver="scheduler").header["task_id"] is None
    with pytest.raises(p.ProtocolError, match="task_id"):
        p.decode(p.encode(p.BYE, {"node_id": "n", "task_id": 3}), receiver="scheduler")


def test_recycling_limits_default_off_and_load_from_a_config_file(tmp_path):
    assert DistributedConfig().node_max_tasks_per_child == 0 and DistributedConfig().node_max_child_rss_mb == 0
    path = tmp_path / "c.toml"
    path.write_text("[distributed]\nnode_max_tasks_per_child = 50\nnode_max_child_rss_mb = 4096\n")
    cfg = load_config(path)
    assert (cfg.distributed.node_max_tasks_per_child, cfg.distributed.node_max_child_rss_mb) == (50, 4096)


def test_node_flags_take_whole_non_negative_numbers(capsys):
    args = build_parser().parse_args(["--max-tasks-per-child", "3", "--max-child-rss-mb", "0"])
    assert (args.max_tasks_per_child, args.max_child_rss_mb) == (3, 0)
    assert build_parser().parse_args([]).max_tasks_per_child is None  # the config decides
    for bad in (["--max-tasks-per-child", "-1"], ["--max-child-rss-mb", "2.5"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(bad)
    err = capsys.readouterr().err
    assert "must be 0 or more" in err and "expected a whole number" in err


def test_max_idle_takes_positive_seconds(capsys):
    assert build_parser().parse_args(["--max-idle-s", "2.5"]).max_idle_s == 2.5
    assert build_parser().parse_args([]).max_idle_s is None  # never idles out by default
    for bad in ("0", "-1", "soon", "inf"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--max-idle-s", bad])
    assert "must be a finite number above 0" in capsys.readouterr().err
