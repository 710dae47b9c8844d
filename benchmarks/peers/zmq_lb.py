"""A bare pyzmq load-balancing broker, its workers and a client: the no-persistence peer baseline.

Written from the ZeroMQ Guide's description of the load-balancing broker (ch. 3): a ROUTER facing
clients, a ROUTER facing workers, and a queue of idle workers. A worker announces itself with
READY; every reply it sends is also its next READY; the broker gives one task per READY to the
least recently used idle worker and reads clients only while some worker is idle. There is no
journal, no retry and no heartbeat, so this is the cost floor of "ZeroMQ credit dispatch in
Python" that our durable scheduler is compared with.

Frames (after the ROUTER identity):
  client -> broker: [task_id, op, body]
  broker -> worker: [client_id, task_id, op, body]
  worker -> broker: [b"READY"] or [b"REPLY", client_id, task_id, body]
  broker -> client: [task_id, body]
``op`` is ``noop`` (empty reply), ``echo`` (body back) or ``sleep:<ms>`` (simulated model).

Run ``python -m benchmarks.peers.zmq_lb broker FRONT BACK`` / ``... worker BACK``; both stop on
SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import collections
import signal
import sys
import time

import zmq

READY = b"READY"
REPLY = b"REPLY"


class _Stop:
    """Set by SIGTERM/SIGINT; loops poll with a timeout and check it, so they end by themselves."""

    flag = False

    @classmethod
    def install(cls) -> None:
        def handler(_signum: int, _frame: object) -> None:
            cls.flag = True

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


def run_broker(frontend: str, backend: str) -> None:
    """Route client tasks to idle workers, one task per READY credit, until stopped."""
    ctx = zmq.Context()
    front = ctx.socket(zmq.ROUTER)
    back = ctx.socket(zmq.ROUTER)
    for sock in (front, back):
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
    front.bind(frontend)
    back.bind(backend)
    idle: collections.deque[bytes] = collections.deque()
    poll_back = zmq.Poller()
    poll_back.register(back, zmq.POLLIN)
    poll_both = zmq.Poller()
    poll_both.register(back, zmq.POLLIN)
    poll_both.register(front, zmq.POLLIN)
    while not _Stop.flag:
        events = dict((poll_both if idle else poll_back).poll(200))
        if back in events:
            frames = back.recv_multipart(copy=False)
            worker = frames[0].bytes
            kind = frames[1].bytes
            if kind == REPLY:
                # [worker, REPLY, client, task_id, body] -> [client, task_id, body]
                front.send_multipart([frames[2], frames[3], frames[4]], copy=False)
            idle.append(worker)
        if front in events and idle:
            frames = front.recv_multipart(copy=False)
            # [client, task_id, op, body] -> [worker, client, task_id, op, body]
            back.send_multipart([idle.popleft(), *frames], copy=False)
    front.close()
    back.close()
    ctx.term()


def run_worker(backend: str) -> None:
    """Announce READY, then execute one task at a time; each reply is the next READY."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(backend)
    sock.send(READY)
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    while not _Stop.flag:
        if not poller.poll(200):
            continue
        client, task_id, op, body = sock.recv_multipart(copy=False)
        opname = op.bytes
        if opname == b"echo":
            out: object = body
        elif opname.startswith(b"sleep:"):
            time.sleep(int(opname[6:]) / 1000.0)
            out = b""
        else:
            out = b""
        sock.send_multipart([REPLY, client, task_id, out], copy=False)
    sock.close()
    ctx.term()


class LBClient:
    """A DEALER client of the broker: ``submit`` never blocks on the reply, ``recv`` collects one."""

    def __init__(self, frontend: str, ctx: zmq.Context | None = None) -> None:
        self._ctx = ctx or zmq.Context.instance()
        self.sock = self._ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, 0)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        self.sock.connect(frontend)

    def submit(self, task_id: bytes, op: bytes = b"noop", body: bytes = b"") -> None:
        self.sock.send_multipart([task_id, op, body], copy=len(body) < 65536)

    def recv(self, timeout_s: float) -> tuple[bytes, bytes]:
        """The next reply ``(task_id, body)``; TimeoutError after ``timeout_s`` (loops stay bounded)."""
        if not self.sock.poll(int(timeout_s * 1000)):
            raise TimeoutError(f"no reply from the load-balancing broker within {timeout_s}s")
        task_id, body = self.sock.recv_multipart()
        return task_id, body

    def call(self, task_id: bytes, op: bytes = b"noop", body: bytes = b"", timeout_s: float = 10.0) -> bytes:
        """Submit and wait for this task's reply (the round-trip measurement)."""
        self.submit(task_id, op, body)
        got, reply = self.recv(timeout_s)
        if got != task_id:
            raise RuntimeError(f"reply for {got!r} while waiting for {task_id!r}")
        return reply

    def close(self) -> None:
        self.sock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers.zmq_lb", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="role", required=True)
    b = sub.add_parser("broker", help="run the broker")
    b.add_argument("frontend", help="client-facing endpoint, e.g. tcp://127.0.0.1:6000")
    b.add_argument("backend", help="worker-facing endpoint, e.g. tcp://127.0.0.1:6001")
    w = sub.add_parser("worker", help="run one worker")
    w.add_argument("backend")
    args = parser.parse_args(argv)
    _Stop.install()
    if args.role == "broker":
        run_broker(args.frontend, args.backend)
    else:
        run_worker(args.backend)
    return 0


if __name__ == "__main__":
    sys.exit(main())
