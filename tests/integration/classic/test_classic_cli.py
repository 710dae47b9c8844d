"""The ``lama-cleaner`` command: help, start-up refusals, config-file precedence, install-frontend."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile

import pytest
import requests

from lama_cleaner import cli
from lama_cleaner.config import Config, ConfigError
from lama_cleaner.plugins.manager import build_plugin_manager
from tests.support.server_process import REPO_ROOT, server_env


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lama_cleaner", *args],
        cwd=REPO_ROOT,
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def test_help_lists_classic_flags_with_defaults():
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    for flag in (
        "--host",
        "--port",
        "--model",
        "--device",
        "--input",
        "--output-dir",
        "--model-dir",
        "--quality",
        "--disable-model-switch",
        "--no-half",
        "--enable-gif",
        "--enable-remove-bg",
        "--plugins",
        "--config",
    ):
        assert flag in text, flag
    assert "(default: lama)" in text and "(default: cuda)" in text and "(default: 8080)" in text
    assert "--sd-run-local" not in text, "hidden aliases stay hidden"


def test_device_cuda_without_cuda_is_one_line_and_exit_2():
    if cuda_available():
        print("\nSKIPPED LOUDLY: this machine has CUDA, so --device cuda is valid here", file=sys.stderr)
        pytest.skip("this machine has CUDA: --device cuda is valid here, nothing to refuse")
    result = run_cli("--model", "cv2", "--device", "cuda", "--port", "1")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "CUDA" in lines[0] and "--device cpu" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--plugins", "no_such_plugin_xyz"], "no_such_plugin_xyz"),
        (["--input", "/definitely/not/here.png"], "--input"),
        (["--quality", "120"], "--quality"),
        (["--config", "/definitely/not/here.toml"], "here.toml"),
    ],
)
def test_bad_settings_are_refused_in_one_line(args, needle):
    result = run_cli("--model", "cv2", "--device", "cpu", "--port", "1", *args)
    assert result.returncode == 2
    assert needle in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_input_directory_requires_output_dir(tmp_path):
    result = run_cli("--model", "cv2", "--device", "cpu", "--input", str(tmp_path))
    assert result.returncode == 2 and "--output-dir" in result.stderr


EXAMPLE_PLUGIN = "tests.support.example_plugin.lama_cleaner_example_plugin"


def test_precedence_default_file_flag(tmp_path):
    path = tmp_path / "settings.toml"
    path.write_text(
        'port = 9000\nquality = 50\nmodel = "lama"\n[distributed]\nlocal_nodes = 3\n[example]\ngreeting = "x"\n'
    )
    parser = cli.build_serve_parser()
    argv = ["--config", str(path), "--port", "8080", "--model", "cv2"]
    args = parser.parse_args(argv)
    pm = build_plugin_manager([EXAMPLE_PLUGIN], autoload=False)
    config = cli.build_config(cli.read_config_file(path), args, cli.explicit_dests(parser, argv), pm)
    assert config.port == 8080, "an explicit flag wins even when it equals the default"
    assert config.model == "cv2"
    assert config.quality == 50, "the file wins over a default the user did not type"
    assert config.host == Config().host
    assert config.distributed.local_nodes == 3, "a built-in plugin's table is read without enabling it"
    assert config.example.greeting == "x", "an enabled plugin's own table"
    with pytest.raises(
        ConfigError, match=re.escape("unknown config section [example] (no enabled plugin declares it)")
    ):
        cli.build_config(cli.read_config_file(path), args, cli.explicit_dests(parser, argv))


def test_plugins_flag_splits_commas_and_repeats():
    parser = cli.build_serve_parser()
    argv = ["--plugins", "a, b", "--plugins", "c"]
    config = cli.build_config({}, parser.parse_args(argv), cli.explicit_dests(parser, argv))
    assert config.plugins == ["a", "b", "c"]


def test_hidden_aliases_map_to_config_fields():
    parser = cli.build_serve_parser()
    argv = ["--sd-run-local", "--sd-disable-nsfw", "--sd-enable-xformers"]
    config = cli.build_config({}, parser.parse_args(argv), cli.explicit_dests(parser, argv))
    assert config.local_files_only and config.disable_nsfw and config.enable_xformers


def test_config_file_applies_to_a_running_server(server_factory, tmp_path):
    path = tmp_path / "settings.json"
    path.write_text('{"disable_model_switch": true, "model": "lama", "quality": 80}')
    server = server_factory("--config", str(path))  # --model cv2 given explicitly by the fixture
    assert requests.get(server.url + "/model", timeout=30).text == "cv2"
    assert requests.get(server.url + "/server_config", timeout=30).json()["isDisableModelSwitchState"] is True


def test_sigterm_stops_the_server_cleanly(server_factory):
    server = server_factory()
    assert server.stop() == 0
    assert "Traceback" not in server.output()


def _fake_wheel(path, with_index: bool = True):
    with zipfile.ZipFile(path, "w") as zf:
        if with_index:
            zf.writestr("lama_cleaner/app/build/index.html", "<html>build</html>")
        zf.writestr("lama_cleaner/app/build/static/js/main.1.js", "js")
        zf.writestr("lama_cleaner/app/build/.DS_Store", "junk")
        zf.writestr("lama_cleaner/server.py", "print('not extracted')")
    return path


def test_install_frontend_from_a_local_wheel(tmp_path):
    wheel = _fake_wheel(tmp_path / "lama_cleaner-1.2.5-py3-none-any.whl")
    dest = tmp_path / "frontend"
    result = run_cli("install-frontend", "--wheel", str(wheel), "--dest", str(dest))
    assert result.returncode == 0, result.stderr
    assert (dest / "index.html").read_text() == "<html>build</html>"
    assert (dest / "static" / "js" / "main.1.js").is_file()
    assert not (dest / ".DS_Store").exists() and not (dest / "server.py").exists()


def test_install_frontend_refuses_a_wheel_without_build(tmp_path):
    wheel = _fake_wheel(tmp_path / "lama_cleaner-1.2.5-py3-none-any.whl", with_index=False)
    dest = tmp_path / "frontend"
    result = run_cli("install-frontend", "--wheel", str(wheel), "--dest", str(dest))
    assert result.returncode == 1
    assert "index.html" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not dest.exists(), "a failed install leaves nothing half-written"


def test_model_dir_moves_the_weight_cache(server_factory, tmp_path, monkeypatch):
    """``--model-dir`` sets XDG_CACHE_HOME before anything reads it: torch-hub weights are looked up there."""
    monkeypatch.delenv("TORCH_HOME", raising=False)
    monkeypatch.delenv("LAMA_MODEL_URL", raising=False)
    model_dir = tmp_path / "models"
    server = server_factory("--model-dir", str(model_dir))
    assert model_dir.is_dir()
    assert requests.get(server.url + "/model_downloaded/lama", timeout=30).text == "False"
    checkpoints = model_dir / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "big-lama.pt").write_bytes(b"placeholder")
    assert requests.get(server.url + "/model_downloaded/lama", timeout=30).text == "True"


def test_model_flag_is_not_mistaken_for_model_dir():
    """The pre-parser must not treat ``--model cv2`` as an abbreviation of ``--model-dir``."""
    pre = cli._preparse(["--model", "cv2", "--plugins", "x", "--config", "c.toml"])
    assert pre.model_dir is None and pre.plugins == ["x"] and pre.config == "c.toml"
    assert cli._preparse(["--model-dir", "/m"]).model_dir == "/m"


def test_upstream_installer_config_is_read_like_a_config_file(tmp_path):
    path = tmp_path / "installer.json"
    path.write_text('{"quality": 70, "disable_model_switch": true}')
    config, _pm, _args = cli.prepare(
        ["--model", "cv2", "--device", "cpu", "--load-installer-config", "--installer-config", str(path)]
    )
    assert config.quality == 70 and config.disable_model_switch is True


@pytest.mark.parametrize("flag", ["--config-installer", "--install-plugins-package"])
def test_unsupported_upstream_flags_are_refused_in_one_line(flag):
    result = run_cli("--model", "cv2", "--device", "cpu", flag)
    assert result.returncode == 2 and flag in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
