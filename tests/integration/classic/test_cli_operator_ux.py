"""What an operator sees from the ``lama-cleaner`` command: help texts, and start-up refusals that
come at once, in one line, with exit status 2, instead of a process that runs but can do nothing.

Each case runs the real command in a subprocess. A node pointed at a scheduler that is not there
would otherwise keep reconnecting for ever, so "exits at start-up" is checked by the subprocess
finishing before its deadline.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.server_process import HOST, REPO_ROOT, free_port, server_env

DEADLINE_S = 60.0
"""Interpreter start-up, plugin loading and the refusal, on a loaded 2-core machine."""
DIST_FLAGS = ("--local-nodes", "--scheduler", "--scheduler-bind", "--data-dir")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lama_cleaner", *args], cwd=REPO_ROOT, env=server_env(),
                          capture_output=True, text=True, timeout=DEADLINE_S, check=False)  # fmt: skip


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def one_error_line(result: subprocess.CompletedProcess[str], exit_code: int = 2) -> str:
    """The single stderr line of a refused start; fails on a traceback or any other output."""
    assert result.returncode == exit_code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert ": error: " in lines[0], lines[0]
    return lines[0]


def unreachable_scheduler() -> str:
    """A well-formed address where nothing listens (the node would retry it for ever)."""
    return f"tcp://{HOST}:{free_port()}"


# ------------------------------------------------------------------ help
def _flat(text: str) -> str:
    return " ".join(text.split())


def test_serve_help_says_how_to_see_the_distributed_flags():
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    text = _flat(result.stdout)
    assert "lama-cleaner --plugins distributed --help" in text, text[-600:]
    for flag in DIST_FLAGS:
        assert flag in text, flag
    assert "(default: None)" not in text


def test_plugin_flags_state_their_real_default_once():
    result = run_cli("--plugins", "distributed", "--help")
    assert result.returncode == 0, result.stderr
    text = _flat(result.stdout)
    section = text[text.index("distributed plugin:") :]
    for flag in DIST_FLAGS:
        assert f"{flag} " in section, flag
    assert "(default: None)" not in text, "a None default contradicts the real one the help states"
    assert "default: 1)" in section and "default: tcp://127.0.0.1:5570)" in section
    assert "config: distributed.local_nodes" in section
    assert "(default: cuda)" in text and "(default: 8080)" in text, "generated flags keep their defaults"


def test_node_help_shows_the_stop_grace_default():
    result = run_cli("node", "--help")
    assert result.returncode == 0, result.stderr
    text = _flat(result.stdout)
    options = text[text.index("options:") :]
    grace = options[options.index("--stop-grace STOP_GRACE") : options.index("--max-tasks-per-child")]
    assert grace.rstrip().endswith("(default: 10.0)."), grace


# ------------------------------------------------------------------ node refusals
def test_node_with_an_unknown_model_exits_naming_it_and_the_known_ones():
    result = run_cli("node", "--scheduler", unreachable_scheduler(), "--device", "cpu", "--models", "nonexistent")
    line = one_error_line(result)
    assert "unknown model nonexistent" in line
    assert "known models:" in line and "lama" in line and "cv2" in line


def test_node_with_one_typo_among_good_models_still_refuses():
    result = run_cli("node", "--scheduler", unreachable_scheduler(), "--device", "cpu", "--models", "cv2,lamma")
    line = one_error_line(result)
    assert "unknown model lamma" in line and "cv2," not in line.split("unknown model")[1].split(";")[0]


def test_node_whose_models_cannot_run_here_exits_saying_why():
    result = run_cli("node", "--scheduler", unreachable_scheduler(), "--device", "cpu", "--models", "sd1.5")
    line = one_error_line(result)
    assert "sd1.5" in line and "diffusers" in line and "it could offer: lama, cv2" in line


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_node_with_an_explicit_cuda_device_and_no_gpu_exits_like_serve(device):
    if cuda_available():
        print("\nSKIPPED LOUDLY: this machine has CUDA, so --device cuda is valid here", file=sys.stderr)
        pytest.skip("this machine has CUDA: --device cuda is valid here, nothing to refuse")
    node = run_cli("node", "--scheduler", unreachable_scheduler(), "--device", device, "--models", "cv2")
    line = one_error_line(node)
    assert "CUDA is not available" in line and "--device cpu" in line
    # The same words as the classic server's refusal of --device cuda.
    serve = run_cli("--model", "cv2", "--device", "cuda", "--port", "1")
    assert line.split(": error: ")[1] == one_error_line(serve).split(": error: ")[1]


def test_serve_refuses_a_local_node_device_this_host_cannot_use(tmp_path):
    """Local nodes get ``distributed.local_node_device`` as an explicit ``--device``, which they would
    refuse: the server says so once, at start-up, instead of respawning failing nodes."""
    if cuda_available():
        pytest.skip("this machine has CUDA: a cuda local node device is valid here")
    config = tmp_path / "settings.toml"
    config.write_text('[distributed]\nlocal_node_device = "cuda"\n')
    result = run_cli("--plugins", "distributed", "--model", "cv2", "--device", "cpu", "--port", "1",
                     "--config", str(config), "--data-dir", str(tmp_path / "data"))  # fmt: skip
    line = one_error_line(result)
    assert "distributed.local_node_device" in line and "CUDA is not available" in line
    assert not (tmp_path / "data").exists(), "refused before the scheduler opened its journal"
