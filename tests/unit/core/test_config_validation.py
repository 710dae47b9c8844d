"""``[distributed]`` (and ``[distributed.retry.*]``) values are type- and range-checked at load.

Before, ``apply_mapping`` stored whatever the file held: ``max_queued = "10"`` raised TypeError on
every SUBMIT, ``queues = "cpu"`` became the queues c, p and u, ``heartbeat_interval_s = 0`` marked
every node offline. Each case below is a real file read by the real loader (or the real command
line), refused with a ConfigError that names the key and what it expects.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lama_cleaner import cli
from lama_cleaner.config import Config, ConfigError, validate_config
from lama_cleaner.plugins.config_loader import load_config
from tests.support.server_process import REPO_ROOT, server_env


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _json(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("section", "key_and_expectation"),
    [
        ('max_queued = "10"', "distributed.max_queued must be an integer, got '10'"),
        ('queues = "cpu"', "distributed.queues must be a list of strings, got 'cpu'"),
        ("queues = [1, 2]", "distributed.queues must be a list of strings"),
        ("heartbeat_liveness = 2.5", "distributed.heartbeat_liveness must be an integer, got 2.5"),
        ("gpu_queue_requires_gpu = 1", "distributed.gpu_queue_requires_gpu must be true or false"),
        ("local_nodes = true", "distributed.local_nodes must be an integer, got True"),
        ('heartbeat_interval_s = "1"', "distributed.heartbeat_interval_s must be a number"),
        ("routes = { lama = 1 }", "distributed.routes must be a table of strings"),
        ('routes = "lama=cpu"', "distributed.routes must be a table of strings"),
        ("scheduler = 5570", "distributed.scheduler must be a string or null, got 5570"),
    ],
)
def test_wrong_types_are_refused_with_the_key_and_the_type(tmp_path, section, key_and_expectation):
    path = _toml(tmp_path, f"[distributed]\n{section}\n")
    with pytest.raises(ConfigError, match=re.escape(key_and_expectation)):
        load_config(path)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("heartbeat_interval_s = 0", "distributed.heartbeat_interval_s must be > 0"),
        ("heartbeat_interval_s = nan", "distributed.heartbeat_interval_s must be > 0"),
        ("heartbeat_liveness = 0", "distributed.heartbeat_liveness must be >= 1"),
        ("max_queued = 0", "distributed.max_queued must be >= 1"),
        ("max_queued_per_queue = -5", "distributed.max_queued_per_queue must be >= 1"),
        ("local_nodes = -1", "distributed.local_nodes must be >= 0"),
        ("retry_after_s = -1", "distributed.retry_after_s must be >= 0"),
        ("request_timeout_s = 0", "distributed.request_timeout_s must be > 0"),
        ("retention_s = -1.0", "distributed.retention_s must be > 0"),
        ("reconnect_min_s = 0", "distributed.reconnect_min_s must be > 0"),
        ("reconnect_min_s = 5\nreconnect_max_s = 1", "distributed.reconnect_min_s (5) must not exceed"),
        ('journal_synchronous = "SOMETIMES"', "distributed.journal_synchronous must be one of OFF, NORMAL, FULL"),
        ("queues = []", "distributed.queues must be a non-empty list of distinct names"),
        ('queues = ["cpu", "cpu"]', "distributed.queues must be a non-empty list of distinct names"),
        ('scheduler_bind = "127.0.0.1:5570"', "distributed.scheduler_bind must be a tcp://HOST:PORT endpoint"),
        ('scheduler_bind = "tcp://127.0.0.1:99999"', "distributed.scheduler_bind has a bad port"),
        ('scheduler_advertise = "tcp://0.0.0.0:5570"', "distributed.scheduler_advertise must name a host nodes"),
        ('scheduler_advertise = "tcp://gw.example.com:0"', "distributed.scheduler_advertise has a bad port"),
        ('scheduler_advertise = "gw.example.com:5570"', "distributed.scheduler_advertise must be a tcp://HOST:PORT"),
        (
            'scheduler_bind = "tcp://0.0.0.0:0"\nscheduler_advertise = "tcp://gw.example.com:15570"',
            "distributed.scheduler_advertise needs a fixed port in distributed.scheduler_bind",
        ),
        ('scheduler = "tcp://host"', "distributed.scheduler must be a tcp://HOST:PORT endpoint"),
        ('local_node_device = "gpu"', "distributed.local_node_device must be cpu, cuda, cuda:N or mps"),
    ],
)
def test_out_of_range_values_are_refused(tmp_path, section, message):
    path = _toml(tmp_path, f"[distributed]\n{section}\n")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("[distributed.retry.inpaint]\nmax_attempts = 0", "distributed.retry.inpaint.max_attempts must be >= 1"),
        ('[distributed.retry.plugin]\nmax_attempts = "3"', "distributed.retry.plugin.max_attempts must be an integer"),
        ("[distributed.retry.inpaint]\nbackoff_base_s = -1", "distributed.retry.inpaint.backoff_base_s must be >= 0"),
        (
            "[distributed.retry.inpaint]\nbackoff_base_s = 9\nbackoff_max_s = 1",
            "distributed.retry.inpaint.backoff_base_s must not exceed",
        ),
        ("[distributed.retry.inpaint]\nmax_attemps = 2", "unknown setting distributed.retry.inpaint.max_attemps"),
        ("[distributed.retry.inpaint_typo]\nmax_attempts = 2", "unknown task kind distributed.retry.inpaint_typo"),
        ("[distributed]\nretry = 3", "distributed.retry must be a table"),
    ],
)
def test_retry_policies_are_checked(tmp_path, section, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(_toml(tmp_path, section + "\n"))


def test_sections_must_be_tables_and_json_is_checked_the_same(tmp_path):
    with pytest.raises(ConfigError, match=re.escape("distributed must be a table, got 5")):
        load_config(_json(tmp_path, {"distributed": 5}))
    with pytest.raises(ConfigError, match=re.escape("distributed.max_queued must be an integer, got '10'")):
        load_config(_json(tmp_path, {"distributed": {"max_queued": "10"}}))
    with pytest.raises(ConfigError, match=re.escape("distributed.retry.inpaint must be a table")):
        load_config(_json(tmp_path, {"distributed": {"retry": {"inpaint": 3}}}))


def test_valid_files_still_load_and_are_normalised(tmp_path):
    path = _toml(
        tmp_path,
        """
        plugins = ["distributed"]
        [distributed]
        scheduler_bind = "tcp://0.0.0.0:6000"
        scheduler = "tcp://10.0.0.5:5570"
        queues = ["gpu", "cpu", "batch"]
        routes = { lama = "cpu" }
        local_nodes = 0
        local_node_queues = ["cpu"]
        local_node_device = "cuda:1"
        max_queued = 10
        retry_after_s = 0
        heartbeat_interval_s = 2        # an integer where a float is expected is fine
        heartbeat_liveness = 5
        reconnect_min_s = 1
        reconnect_max_s = 1
        retention_s = 60
        journal_synchronous = "full"
        request_timeout_s = 30.5
        [distributed.retry.inpaint]
        max_attempts = 1
        backoff_base_s = 0
        backoff_max_s = 0
        """.replace("\n        ", "\n"),
    )
    config = load_config(path)
    dist = config.distributed
    assert dist.queues == ["gpu", "cpu", "batch"] and dist.routes == {"lama": "cpu"}
    assert dist.heartbeat_interval_s == 2.0 and isinstance(dist.heartbeat_interval_s, float)
    assert dist.journal_synchronous == "FULL"
    assert dist.retry["inpaint"].max_attempts == 1 and dist.retry["plugin"].max_attempts == 3
    assert dist.local_node_device == "cuda:1" and dist.local_nodes == 0
    validate_config(Config())  # the defaults themselves are valid


def test_the_command_line_is_validated_after_the_flags_and_plugin_hooks(tmp_path):
    """``--scheduler-bind`` comes from the distributed plugin's own flag, set in its configure hook."""
    argv = ["--plugins", "distributed", "--model", "cv2", "--device", "cpu", "--scheduler-bind", "localhost:5570"]
    with pytest.raises(ConfigError, match=re.escape("distributed.scheduler_bind must be a tcp://HOST:PORT")):
        cli.prepare(argv)
    ok = ["--plugins", "distributed", "--model", "cv2", "--device", "cpu", "--scheduler-bind", "tcp://127.0.0.1:0"]
    config, _pm, _args = cli.prepare(ok)
    assert config.distributed.scheduler_bind == "tcp://127.0.0.1:0"


def test_plugins_in_a_file_must_be_a_list(tmp_path):
    """``plugins = "distributed"`` used to be read as the plugins d, i, s, ..."""
    path = _toml(tmp_path, 'plugins = "distributed"\n')
    with pytest.raises(ConfigError, match=re.escape("plugins must be a list of strings, got 'distributed'")):
        cli.prepare(["--config", str(path), "--model", "cv2", "--device", "cpu"])


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lama_cleaner", *args], cwd=REPO_ROOT, env=server_env(),
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


@pytest.mark.parametrize("command", [[], ["scheduler"], ["node"]])
def test_every_command_refuses_a_bad_file_without_a_traceback(tmp_path, command):
    path = _toml(tmp_path, '[distributed]\nmax_queued = "10"\n')
    args = [*command, "--config", str(path)]
    if not command:
        args += ["--plugins", "distributed", "--model", "cv2", "--device", "cpu", "--port", "1"]
    result = _run(*args)
    assert result.returncode == 2, result.stderr
    assert "distributed.max_queued must be an integer, got '10'" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
