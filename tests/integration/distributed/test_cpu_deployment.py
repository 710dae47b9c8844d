"""``lama-cleaner --model lama --device cpu --plugins distributed`` on a box without a GPU.

lama's ``resource_class`` is ``gpu`` (on a mixed cluster it belongs on a GPU), but CPU nodes may not
join the ``gpu`` queue, so on a CPU-only deployment its tasks would wait until the 504. A server
started with ``--device cpu`` routes gpu-class models that declare ``runs_on_cpu`` to ``cpu``;
the diffusion family (and the fake ``gpu_sleep``) stay on ``gpu``; ``distributed.routes`` win.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from lama_cleaner.models.registry import build_model_registry
from lama_cleaner.plugins.distributed.node.capabilities import routing_resource_class
from lama_cleaner.plugins.distributed.scheduler.routing import route_task
from lama_cleaner.plugins.manager import create_plugin_manager

from .conftest import (
    FAKE_PLUGIN,
    FAST,
    DistServer,
    api_submit,
    api_task,
    mask_png,
    merged,
    png,
    task_form,
    wait_nodes,
    write_config,
)

QUEUES = ["gpu", "cpu"]


@pytest.fixture(scope="module")
def registry():
    return build_model_registry(create_plugin_manager([FAKE_PLUGIN]))


@pytest.mark.parametrize("name", ["lama", "ldm", "zits", "mat", "fcf", "manga"])
def test_erase_models_run_on_cpu_and_go_to_the_cpu_queue_of_a_cpu_server(registry, name: str):
    model = registry.get(name)
    assert model.resource_class == "gpu" and model.runs_on_cpu is True
    assert routing_resource_class(model, "cpu") == "cpu"
    assert routing_resource_class(model, "cuda") == "gpu"  # a GPU deployment keeps them on the GPU
    assert routing_resource_class(model, "mps") == "gpu"


@pytest.mark.parametrize(
    "name", ["sd1.5", "sd2", "anything4", "realisticVision1.4", "paint_by_example", "instruct_pix2pix", "gpu_sleep"]
)
def test_models_that_need_a_gpu_stay_on_the_gpu_queue(registry, name: str):
    model = registry.get(name)
    assert model.runs_on_cpu is False
    assert routing_resource_class(model, "cpu") == "gpu"


def test_cpu_models_stay_cpu(registry):
    assert routing_resource_class(registry.get("cv2"), "cpu") == "cpu"
    assert routing_resource_class(registry.get("cv2"), "cuda") == "cpu"
    assert routing_resource_class(registry.get("sleep"), "cuda") == "cpu"


def test_explicit_routes_still_win(registry):
    def resource_class_of(kind: str, name: str) -> str | None:
        return routing_resource_class(registry.get(name), "cpu")

    assert route_task("inpaint", "lama", resource_class_of=resource_class_of, rules={}, queues=QUEUES) == "cpu"
    rules = {"lama": "gpu"}
    assert route_task("inpaint", "lama", resource_class_of=resource_class_of, rules=rules, queues=QUEUES) == "gpu"
    rules = {"inpaint:lama": "gpu"}
    assert route_task("inpaint", "lama", resource_class_of=resource_class_of, rules=rules, queues=QUEUES) == "gpu"


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_lama_on_a_cpu_only_distributed_server_answers(tmp_path: Path, servers: list[DistServer]):
    torch = pytest.importorskip("torch")

    class Grey(torch.nn.Module):
        """big-lama's TorchScript contract, in a few bytes: fill the hole with grey."""

        def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return image * (1 - mask) + mask * 0.5

    weights = tmp_path / "tiny-lama.pt"
    torch.jit.script(Grey()).save(str(weights))
    env = {"LAMA_MODEL_URL": str(weights), "TORCH_HOME": str(tmp_path / "torch")}
    config = write_config(tmp_path, merged(FAST, {"distributed": {"request_timeout_s": 30.0}}))
    dist = DistServer(tmp_path / "data", config, local_nodes=1, env=env, model="lama")  # --device cpu
    servers.append(dist.start())
    [node] = wait_nodes(dist.url, 1)
    assert node["queues"] == ["cpu"] and "lama" in node["capabilities"]["models"]

    response = requests.post(
        f"{dist.url}/inpaint",
        data=task_form(),
        files={"image": ("i.png", png(64, 40)), "mask": ("m.png", mask_png(64, 40))},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    assert response.content[:8] == b"\x89PNG\r\n\x1a\n"
    [task] = requests.get(f"{dist.url}/api/v1/tasks", timeout=10).json()["tasks"]
    assert task["name"] == "lama" and task["queue"] == "cpu" and task["status"] == "completed"

    # A model that really needs a GPU is not rerouted: it waits for a GPU node.
    gpu_task = api_submit(dist.url, "gpu_sleep", "10")
    assert api_task(dist.url, gpu_task["id"])["queue"] == "gpu"
