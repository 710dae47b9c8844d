"""A scheduler behind a NAT, a port mapping or a proxy (``distributed.scheduler_advertise``).

A node reaches the control socket at the address it is given, but each queue at the address the
scheduler grants in WELCOME, which is the one it bound: from outside the scheduler's network that
address is wrong (another host, other ports). With ``--advertise`` the scheduler also tells the node
the outside addresses (protocol minor 3), and a node that came in through the advertised control
address joins the queues through them; any other node, like the server's local nodes, keeps the
bound ones, so it never has to go out and back in through the mapping.

The real parts: ``lama-cleaner scheduler`` and two ``lama-cleaner node`` subprocesses; the mapping is a
loopback TCP forwarder per port (the outside ports -> the bound ports), whose connection counts show
which way each link went.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import zmq

from lama_cleaner.plugins.distributed.wire import protocol as p
from tests.integration.scheduler.peers import Producer
from tests.support.tcp_proxy import LoopbackProxy

from .conftest import FAKE_PLUGIN, Proc, free_port_block, mask_png, png, start_node, task_form, wait_for

PORTS = 3
"""Control, then the default queues ``gpu`` and ``cpu`` at the two ports after it."""


def _two_port_blocks() -> tuple[int, int]:
    bound = free_port_block(PORTS)
    while abs((outside := free_port_block(PORTS)) - bound) < PORTS:
        pass
    return bound, outside


def _credit(producer: Producer, name: str) -> list[str] | None:
    for node in producer.request(p.NODES, {}).header["nodes"]:
        if node["name"] == name:
            return node["credit"]
    return None


def test_a_node_through_the_advertised_address_joins_its_queues_through_the_mapping_too(
    tmp_path: Path, procs: list[Proc], tmp_config: Path
):
    bound, outside = _two_port_blocks()
    argv = ["scheduler", "--bind", f"tcp://127.0.0.1:{bound}", "--advertise", f"tcp://127.0.0.1:{outside}",
            "--data-dir", str(tmp_path / "data"), "--config", str(tmp_config), "--plugins", FAKE_PLUGIN]  # fmt: skip
    scheduler = Proc(argv)
    procs.append(scheduler)
    mapping = [LoopbackProxy(bound + i, listen_port=outside + i) for i in range(PORTS)]
    ctx = zmq.Context()
    producer = Producer(ctx, SimpleNamespace(control_endpoint=f"tcp://127.0.0.1:{bound}"))
    try:
        wait_for(lambda: "scheduler ready" in scheduler.output(), 60, "the scheduler to listen")
        outer = start_node(procs, f"tcp://127.0.0.1:{outside}", tmp_config, "--name", "outer")
        wait_for(lambda: _credit(producer, "outer") == ["cpu"], 60, "the outside node to offer credit")
        assert f"joining queue cpu at tcp://127.0.0.1:{outside + 2}" in outer.output()
        through = [m.connections for m in mapping]
        assert through[0] >= 1 and through[1] == 0 and through[2] >= 1, f"control and cpu queue mapped: {through}"

        task = {"kind": "inpaint", "name": "sleep", "form": task_form("0"), "submitter": None, "idempotency_key": None}
        reply = producer.request(p.SUBMIT, {"task": task}, {"image": png(), "mask": mask_png()})
        assert reply.command == p.ACCEPTED, reply.header
        task_id = reply.header["task"]["id"]
        done = wait_for(lambda: (t := producer.get(task_id))["status"] == "completed" and t, 30, "the task to complete")
        assert done["attempts"] == 1

        # A node on the scheduler's own side of the mapping is granted the bound addresses, as before.
        inner = start_node(procs, f"tcp://127.0.0.1:{bound}", tmp_config, "--name", "inner")
        wait_for(lambda: _credit(producer, "inner") == ["cpu"], 60, "the inside node to offer credit")
        assert f"joining queue cpu at tcp://127.0.0.1:{bound + 2}" in inner.output()
        assert [m.connections for m in mapping] == through, "nothing of the inside node went through the mapping"
    finally:
        producer.close()
        ctx.destroy(linger=0)
        for proxy in mapping:
            proxy.close()


def test_an_advertised_wildcard_is_refused_in_one_line(tmp_path: Path, procs: list[Proc]):
    scheduler = Proc(["scheduler", "--bind", f"tcp://127.0.0.1:{free_port_block(PORTS)}", "--advertise",
                      "tcp://0.0.0.0:5570", "--data-dir", str(tmp_path / "data")])  # fmt: skip
    procs.append(scheduler)
    wait_for(lambda: not scheduler.alive(), 60, "the scheduler to refuse its settings")
    assert scheduler.proc.returncode == 2
    assert "distributed.scheduler_advertise must name a host nodes can connect to" in scheduler.output()
    assert "Traceback" not in scheduler.output()
