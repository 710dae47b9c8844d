"""A real third-party plugin package, pip-installed and found through its entry point."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import requests

from tests.support.example_package import install_example_plugin
from tests.support.server_process import REPO_ROOT, server_env
from tests.support.waiting import wait_for

from .media_helpers import decode, image_array, image_bytes, mask_array, mask_bytes, post_inpaint


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    """``pip install`` the example package into a private target dir (the test env stays untouched)."""
    return install_example_plugin(tmp_path_factory.mktemp("plugin-site"), tmp_path_factory.mktemp("plugin-src"))


@pytest.fixture
def plugin_server(server_factory, plugin_site):
    return server_factory("--example-greeting", "tester", env={"PYTHONPATH": f"{REPO_ROOT}:{plugin_site}"})


def test_plugin_route_option_and_model(plugin_server):
    base = plugin_server.url
    assert requests.get(base + "/hello-plugin", timeout=30).text == "hello from example plugin, tester"
    assert requests.get(base + "/model_downloaded/example-invert", timeout=30).text == "True"
    switched = requests.post(base + "/model", data={"name": "example-invert"}, timeout=30)
    assert switched.text == "ok, switch to example-invert"
    assert requests.get(base + "/model", timeout=30).text == "example-invert"

    response = post_inpaint(base, image_bytes(64, 48, seed=9), mask_bytes(64, 48))
    assert response.status_code == 200, response.text
    source, result, masked = image_array(64, 48, seed=9), decode(response.content), mask_array(64, 48)
    assert np.array_equal(result[masked], 255 - source[masked]), "the plugin model inverts masked pixels"
    assert np.array_equal(result[~masked], source[~masked])

    # Observers run on their own thread: the count follows the reply, it does not come with it.
    wait_for(
        lambda: requests.get(base + "/hello-plugin/events", timeout=30).json().get("completed", 0) >= 1,
        30,
        "the plugin's task_event observer to count the completed task",
    )


def test_plugin_command_is_found_through_the_entry_point(plugin_site):
    """``register_commands`` of an installed package: dispatched, and listed by ``--help``."""
    env = server_env({"PYTHONPATH": f"{REPO_ROOT}:{plugin_site}"})

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "lama_cleaner", *args], cwd=REPO_ROOT, env=env,
                              capture_output=True, text=True, timeout=120, check=False)  # fmt: skip

    hello = run("example-hello", "tester")
    assert hello.returncode == 0, hello.stderr
    assert hello.stdout.strip() == "hello from example plugin, tester"
    listed = " ".join(run("--help").stdout.split())
    assert "example-hello: print a greeting (example plugin)" in listed, listed[-800:]
    assert "node: run a worker node" in listed and "batch: " in listed


def test_plugin_section_is_read_from_the_config_file(server_factory, plugin_site, tmp_path):
    """The plugin's ``[example]`` table (its ``config_sections``); a typo in it stops start-up."""
    env = {"PYTHONPATH": f"{REPO_ROOT}:{plugin_site}"}
    path = tmp_path / "settings.toml"
    path.write_text('[example]\ngreeting = "from the file"\n', encoding="utf-8")
    server = server_factory("--config", str(path), env=env)
    assert requests.get(server.url + "/hello-plugin", timeout=30).text == "hello from example plugin, from the file"
    path.write_text('[example]\ngreetin = "typo"\n', encoding="utf-8")
    refused = subprocess.run(
        [sys.executable, "-m", "lama_cleaner", "--config", str(path), "--model", "cv2", "--device", "cpu"],
        cwd=REPO_ROOT, env=server_env(env), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == ["lama-cleaner: error: unknown setting example.greetin"]


def test_without_the_package_the_route_does_not_exist(classic_server):
    assert requests.get(classic_server.url + "/hello-plugin", timeout=30).status_code == 404
    assert requests.post(classic_server.url + "/model", data={"name": "example-invert"}, timeout=30).status_code == 403
