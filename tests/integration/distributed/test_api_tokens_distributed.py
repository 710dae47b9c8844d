"""API tokens through the whole distributed stack (web server, embedded scheduler, journal, node):
the owner travels with SUBMIT, the journal keeps it, LIST filters by it, and a restart keeps the
rules. Also the one start-up warning of a server bound beyond loopback without tokens."""

from __future__ import annotations

from pathlib import Path

import requests

from tests.support.distributed_config import FAST
from tests.support.server_process import ServerProcess
from tests.support.waiting import wait_for

from .conftest import DistServer, mask_png, merged, png, write_config

TIMEOUT = 30
SECRETS = {"alice": "alice-0123456789abcdef", "bob": "bob-0123456789abcdefgh", "ops": "ops-0123456789abcdefgh"}


def _auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {SECRETS[name]}"}


def _submit(url: str, who: str) -> str:
    reply = requests.post(
        f"{url}/api/v1/tasks",
        data={"model": "sleep", "prompt": "10", "hdStrategy": "Original"},
        files={"image": ("i.png", png()), "mask": ("m.png", mask_png())},
        headers=_auth(who),
        timeout=TIMEOUT,
    )
    assert reply.status_code == 202, reply.text
    return reply.json()["id"]


def _listed(url: str, who: str) -> set[str]:
    reply = requests.get(f"{url}/api/v1/tasks", params={"limit": 100}, headers=_auth(who), timeout=TIMEOUT)
    assert reply.status_code == 200, reply.text
    return {t["id"] for t in reply.json()["tasks"]}


def test_owners_survive_the_journal_and_a_restart(tmp_path: Path, servers):
    tokens = {
        "alice": {"token": SECRETS["alice"], "scopes": ["tasks"]},
        "bob": {"token": SECRETS["bob"], "scopes": ["tasks"]},
        "ops": {"token": SECRETS["ops"], "scopes": ["admin"]},
    }
    config = write_config(tmp_path, merged(FAST, {"server": {"tokens": tokens}}))
    first = DistServer(tmp_path / "data", config, model="sleep").start()
    servers.append(first)
    assert requests.get(f"{first.url}/api/v1/tasks", timeout=TIMEOUT).status_code == 401
    alice = {_submit(first.url, "alice") for _ in range(2)}
    bob = _submit(first.url, "bob")
    assert _listed(first.url, "alice") == alice
    assert _listed(first.url, "ops") >= alice | {bob}
    assert requests.get(f"{first.url}/api/v1/tasks/{bob}", headers=_auth("alice"), timeout=TIMEOUT).status_code == 404
    wait_for(
        lambda: (
            requests.get(f"{first.url}/api/v1/tasks/{bob}", headers=_auth("bob"), timeout=TIMEOUT).json()["status"]
            == "completed"
        ),
        TIMEOUT,
        "bob's task to complete",
    )
    first.stop()

    second = DistServer(tmp_path / "data", config, model="sleep", scheduler_port=first.scheduler_port).start()
    servers.append(second)
    assert _listed(second.url, "alice") == alice and _listed(second.url, "bob") == {bob}
    result = requests.get(f"{second.url}/api/v1/tasks/{bob}/result", headers=_auth("alice"), timeout=TIMEOUT)
    assert result.status_code == 404
    assert requests.get(f"{second.url}/api/v1/tasks/{bob}/result", headers=_auth("bob"), timeout=TIMEOUT).ok
    drain = requests.post(f"{second.url}/api/v1/nodes/nope/drain", headers=_auth("bob"), timeout=TIMEOUT)
    assert drain.status_code == 403 and drain.json()["error"]["code"] == "forbidden"


def test_binding_beyond_loopback_without_tokens_warns_once():
    with ServerProcess(["--host", "0.0.0.0"]) as server:
        lines = [line for line in server.output().splitlines() if "without API tokens" in line]
    assert len(lines) == 1, server.output()[-2000:]
    assert "0.0.0.0" in lines[0] and "docs/security.md" in lines[0]
    with ServerProcess() as quiet:
        assert "without API tokens" not in quiet.output()
