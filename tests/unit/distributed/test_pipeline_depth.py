"""node/depth.py: a node's pipeline depth, derived from its device unless configured."""

from __future__ import annotations

from lama_cleaner.plugins.distributed.node.depth import MAX_DEPTH, default_depth, pipeline_depth


def test_a_cpu_node_runs_one_task_at_a_time_whatever_its_cores():
    assert default_depth("cpu", 1) == 1 and default_depth("cpu", 64) == 1


def test_a_gpu_node_overlaps_two_tasks_and_three_from_eight_cores():
    assert default_depth("cuda", 1) == 2 and default_depth("cuda:1", 4) == 2
    assert default_depth("cuda", 8) == 3 and default_depth("mps", 16) == 3


def test_a_configured_depth_wins_and_is_capped():
    assert pipeline_depth(0, "cuda", 16) == 3 and pipeline_depth(0, "cpu", 16) == 1
    assert pipeline_depth(2, "cpu", 2) == 2 and pipeline_depth(1, "cuda", 16) == 1
    assert pipeline_depth(1000, "cuda", 16) == MAX_DEPTH
