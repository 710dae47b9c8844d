"""A classic ``/inpaint`` tied to no socket, through the distributed plugin: its submitter ("*")
travels through the journal and back in the scheduler's events, and its step events are broadcast
to every connected client, as in classic mode and as upstream did."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from .conftest import FAST, DistServer, mask_png, png, task_form, wait_for, wait_nodes, write_config

pytestmark = pytest.mark.slow


def test_untied_request_broadcasts_steps_and_finish(tmp_path: Path, servers: list[DistServer]):
    import socketio

    dist = DistServer(tmp_path / "data", write_config(tmp_path, FAST), local_nodes=1)
    servers.append(dist.start())
    wait_nodes(dist.url, 1)
    seen: dict[str, list[object]] = {"a": [], "b": []}
    clients = {name: socketio.Client() for name in seen}
    for name, client in clients.items():
        client.on("diffusion_progress", lambda data, n=name: seen[n].append(data["step"]))
        client.on("diffusion_finish", lambda n=name: seen[n].append("finish"))
        client.on("task_status", lambda data, n=name: seen[n].append(data["status"]))
        client.connect(dist.url, transports=["websocket"])
    try:
        assert requests.post(f"{dist.url}/model", data={"name": "steps"}, timeout=30).status_code == 200
        response = requests.post(
            f"{dist.url}/inpaint",
            data=task_form("steps=3 20"),
            files={"image": ("i.png", png()), "mask": ("m.png", mask_png())},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        for name in seen:
            wait_for(lambda n=name: "finish" in seen[n], 10, f"diffusion_finish at client {name}")
            assert seen[name] == [0, 1, 2, "finish"], f"steps in order, then finish, no task_status: {seen[name]}"
    finally:
        for client in clients.values():
            client.disconnect()
