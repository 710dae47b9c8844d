"""The ``[distributed]`` section: settings of the scheduler, the journal and the nodes.

Declared to the core through the plugin's ``config_sections`` hook (see ``plugin.py``), so the core
configuration never names this plugin. The loader checks every value's type, and the ranges and
choices declared with each :func:`~lama_cleaner.config.setting` (0 is allowed where it means
"off"/"none", 1 is the least count that allows something, intervals and timeouts must be strictly
positive: 0 would, for instance, mark every node offline at once). :func:`validate_distributed` then
checks what spans several keys. Every process reads the same section: the web server, ``lama-cleaner
scheduler`` and ``lama-cleaner node``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...config import ConfigError, ConfigSection, setting

RETRY_KINDS = ("inpaint", "plugin")
"""Task kinds with a retry policy (``distributed.retry.<kind>``)."""

DEVICE_PATTERN = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")
"""Devices a node accepts: `cpu`, `mps`, `cuda` or `cuda:N`."""


@dataclass
class RetryConfig:
    """Retry policy of one task kind. One table per kind, `inpaint` and `plugin` (another kind is an
    error); `backoff_base_s` at most `backoff_max_s`."""

    max_attempts: int = setting(3, "Attempts before a task is failed for good (1 = never retry).", minimum=1)
    backoff_base_s: float = setting(0.5, "Delay before the first retry; doubles on each further attempt.", minimum=0)
    backoff_max_s: float = setting(30.0, "Upper bound of the retry delay.", minimum=0)


@dataclass
class DistributedConfig:
    """Settings of the ``distributed`` plugin (scheduler, journal, nodes)."""

    scheduler_bind: str = setting(
        "tcp://127.0.0.1:5570",
        "Where the scheduler's control socket listens. Queue sockets bind the following ports "
        "(one per queue, in the order of `queues`). Loopback only by default.",
        flag="--scheduler-bind",
    )
    scheduler_advertise: str | None = setting(
        None,
        "The control address nodes reach this scheduler at when it is not `scheduler_bind` (a NAT, a port "
        "mapping, a TCP proxy): `tcp://HOST:PORT`, with the queues at the ports after PORT as at the bind. "
        "A node whose `--scheduler` is this address is granted those queue addresses in WELCOME; any other "
        "node (the server's local nodes, a node on the scheduler's own network) the bound ones, as when unset. "
        "Needs a fixed `scheduler_bind` port.",
        flag="--scheduler-advertise",
    )
    scheduler: str | None = setting(
        None,
        "Address of an external scheduler (`lama-cleaner scheduler`). When set, the web server "
        "only produces tasks and embeds no scheduler.",
        flag="--scheduler",
    )
    data_dir: str = setting(
        "~/.cache/lama-cleaner/distributed",
        "Directory of the SQLite journal (tasks, input and result blobs).",
        flag="--data-dir",
    )
    queues: list[str] = setting(["gpu", "cpu"], "Queue names; each gets its own ZeroMQ endpoint.")
    routes: dict[str, str] = setting(
        {},
        "Extra routing rules, `model-or-plugin name -> queue`, applied before the defaults "
        "(erase and diffusion models -> gpu; cv2 and CPU image plugins -> cpu; with `--device cpu`, "
        "models that run acceptably on a CPU, such as lama, -> cpu).",
    )
    gpu_queue_requires_gpu: bool = setting(True, "A node may join a queue named `gpu` only if it has a CUDA device.")
    local_nodes: int = setting(
        1, "Node subprocesses the web server spawns and keeps alive.", minimum=0, flag="--local-nodes"
    )
    local_nodes_ready_timeout_s: float = setting(
        120.0,
        "How long `serve` waits, before it accepts connections, for its local nodes to join and load the start-up "
        "model (as classic mode loads it before it serves), so no first request waits for a node to start; a node "
        "that exits while starting or joins no queue, or a scheduler that does not answer, ends the wait early. "
        "0 = do not wait.",
        minimum=0,
    )
    local_node_queues: list[str] = setting(
        [], "Queues the local nodes ask to join (empty = every queue they qualify for)."
    )
    local_node_device: str | None = setting(
        None,
        "`--device` passed to local nodes; unset = the server's `--device` (so `--device cuda` gives a "
        "CUDA node that may join the `gpu` queue lama is routed to).",
    )
    max_queued: int = setting(1000, "Queued tasks allowed in total; beyond this new work gets HTTP 503.", minimum=1)
    max_queued_per_queue: int = setting(500, "Queued tasks allowed per queue.", minimum=1)
    retry_after_s: int = setting(5, "`Retry-After` seconds sent with a 503 when full.", minimum=0)
    heartbeat_interval_s: float = setting(1.0, "Heartbeat period, both directions.", exclusive_minimum=0)
    heartbeat_liveness: int = setting(3, "Missed heartbeats before a peer counts as offline.", minimum=1)
    reconnect_min_s: float = setting(
        0.25, "First reconnect delay of a node; doubles up to the max.", exclusive_minimum=0
    )
    reconnect_max_s: float = setting(16.0, "Largest reconnect delay of a node.", exclusive_minimum=0)
    retention_s: float = setting(24 * 3600.0, "How long finished tasks and their blobs are kept.", exclusive_minimum=0)
    journal_synchronous: str = setting(
        "NORMAL",
        "SQLite `synchronous` pragma of the task journal (WAL mode): NORMAL survives a process crash "
        "and loses at most the last commits on a power cut; FULL fsyncs every commit; OFF is fastest.",
        choices=["OFF", "NORMAL", "FULL", "EXTRA"],
    )
    journal_spare_files: int = setting(
        4,
        "Files the scheduler keeps allocated and cached ahead of its blob writes (uploads and results of "
        "256 KiB or more): a write fills one instead of making a new file, which on a VM whose host reclaims "
        "freed memory took most of a large result's time before its DONE. Each takes the largest blob's size "
        "(up to 32 MiB) of disk and page cache. 0: none.",
        minimum=0,
    )
    shared_memory_mb: int = setting(
        16,
        "Nodes on the scheduler's host exchange uploads and results with it through shared memory "
        "instead of the network and the node's Pipe (protocol minor 4; found by the node offering its "
        "region and the scheduler mapping it, so nodes elsewhere simply keep sending bytes). This is the "
        "size in MiB of each of the two areas (files in, result out) a node keeps per pipeline slot; "
        "larger files travel as bytes. A node's region takes up to twice this per slot of memory once "
        "used (at most 1024). 0 turns it off: on a node, it offers none; on a scheduler, it maps none.",
        minimum=0,
    )
    request_timeout_s: float = setting(
        600.0, "How long a classic `/inpaint` waits for its task before answering 504.", exclusive_minimum=0
    )
    retry: dict[str, RetryConfig] = setting(
        {kind: RetryConfig() for kind in RETRY_KINDS},
        "Retry policy per task kind (`inpaint`, `plugin`).",
        key_name="kind",
    )
    node_max_tasks_per_child: int = setting(
        0,
        "A node replaces its inference process after it ran this many tasks, between tasks, never "
        "during one (0 = never; like Celery's max-tasks-per-child). `lama-cleaner node "
        "--max-tasks-per-child N` overrides it.",
        minimum=0,
    )
    node_pipeline_depth: int = setting(
        0,
        "How many tasks a node holds at once: while its model runs one, it decodes and prepares the "
        "next ones and encodes finished ones on other cores; the model call stays exclusive per device. "
        "0 = derived from the machine: 1 on a CPU device (model and image stages share the cores, so "
        "overlap buys nothing), 2 on a GPU, 3 on a GPU with 8 or more cores. At most 16. `lama-cleaner "
        "node --pipeline-depth N` overrides it.",
        minimum=0,
    )
    node_threads: int = setting(
        0,
        "Threads the math libraries of a node's inference process use (PyTorch's OpenMP, MKL, OpenBLAS, "
        "OpenCV). 0 = `OMP_NUM_THREADS` if set, else the libraries' defaults (about one per core). Nodes a "
        "server or the autoscaler's `local` provider starts together on one host keep them but wait "
        "passively (`OMP_WAIT_POLICY=PASSIVE` unless set), which measured as fast under load as dividing the "
        "cores and faster for a lone request. `lama-cleaner node --threads N` overrides it.",
        minimum=0,
    )
    node_preload: str = setting(
        "auto",
        "The model a node's inference process loads before the node takes work, so no request waits "
        "for a cold model: a model name, `auto` (the start-up `--model` if the node offers it and has "
        "it on disk, else the first offered model on disk) or `none` (load on the first task).",
    )
    node_max_child_rss_mb: int = setting(
        0,
        "A node replaces its inference process after a task that left its resident memory (VmRSS) "
        "above this many MiB (0 = no cap; like Celery's max-memory-per-child). `lama-cleaner node "
        "--max-child-rss-mb N` overrides it.",
        minimum=0,
    )
    expose_tracebacks: bool = setting(
        False,
        "Include the failed attempt's Python traceback in `GET /api/v1/tasks/{id}` (otherwise that field "
        "is null). Off by default because the API has no authentication and a traceback shows server "
        "paths and library versions to anyone who can reach it; the journal keeps the traceback either way.",
    )
    curve_secret_key: str | None = setting(
        None,
        "This process's CURVE secret key file (`lama-cleaner keys generate NAME` writes NAME.key_secret, "
        "mode 0600). On the scheduler (embedded or `lama-cleaner scheduler`) it turns CURVE on: traffic "
        "is encrypted and only allow-listed client keys may connect; required when `scheduler_bind` is "
        "not a loopback address. On a node or a web server using an external scheduler it is that "
        "peer's own key pair. Local nodes use the web server's key. Unset: plaintext, loopback only.",
    )
    curve_server_key: str | None = setting(
        None,
        "The scheduler's public key (its .key file, or the 40-character Z85 text `lama-cleaner keys "
        "show` prints), which nodes and remote web servers verify; needed with `curve_secret_key` "
        "there. The scheduler itself ignores it.",
    )
    curve_authorized_keys: str | None = setting(
        None,
        "Folder of the client public keys (*.key) the scheduler accepts, read again when it changes "
        "(no restart: add a file to admit a node, remove it to shut one out, open connections "
        "included). The scheduler's own key is always accepted.",
    )
    curve_node_keys: str | None = setting(
        None,
        "Folder of client public keys (*.key) the scheduler accepts as nodes only: they register, take "
        "tasks and report on their own, but every producer request from them (submit, read, fetch, cancel, "
        "list, drain, plugin calls) is refused 403, so a compromised worker cannot read or cancel other "
        "users' tasks. Put worker machines' keys here and web servers' in `curve_authorized_keys` (a key "
        "in both may do both). Read again when it changes.",
    )
    curve_producer_keys: str | None = setting(
        None,
        "Folder of client public keys (*.key) the scheduler accepts as producers (web servers) only: they "
        "submit and read tasks, but a HELLO from them is answered ERROR `forbidden`, so a compromised web "
        "server cannot register as a node and receive other servers' users' images. Read again when it changes.",
    )
    max_message_mb: int = setting(
        512,
        "Largest frame (MiB) any socket of the scheduler, its nodes and producers accepts; a peer that "
        "sends a larger one is disconnected before it is read. Keep it above `server.max_upload_mb` (a "
        "SUBMIT carries the upload) and the largest result a node may send back.",
        minimum=1,
    )
    unschedulable_timeout_s: float = setting(
        60.0,
        "A queued task that no online node can run (none granted its queue, none offers its model or "
        "plugin, or all of those are draining) for this long is failed with HTTP 503 and a message "
        "saying why, instead of waiting until `request_timeout_s`. Counted from the later of its "
        "submission and the last moment a node that could run it was online. 0 disables.",
        minimum=0,
    )


def check_endpoint(key: str, value: str, *, connect: bool = False) -> None:
    """``tcp://HOST:PORT``, the only transport the scheduler's port arithmetic understands. A bind
    may ask for any free port (``0`` or ``*``); a ``connect`` endpoint must name one."""
    host, sep, port = value.removeprefix("tcp://").rpartition(":")
    if not value.startswith("tcp://") or not sep or not host:
        raise ConfigError(f"{key} must be a tcp://HOST:PORT endpoint, got {value!r}")
    if (connect or port not in ("0", "*")) and not (port.isdigit() and 0 < int(port) < 65536):
        allowed = "1-65535" if connect else "1-65535, or 0/* for any"
        raise ConfigError(f"{key} has a bad port in {value!r} ({allowed})")


def validate_distributed(dist: DistributedConfig, where: str = "distributed.") -> None:
    """What spans several keys of the ``[distributed]`` section, or needs more than a type and a
    range; the core's generic checks (types, ranges, choices) ran before. Raises a ConfigError
    naming the first bad key."""
    if dist.reconnect_min_s > dist.reconnect_max_s:
        raise ConfigError(
            f"{where}reconnect_min_s ({dist.reconnect_min_s:g}) must not exceed "
            f"{where}reconnect_max_s ({dist.reconnect_max_s:g})"
        )
    if not dist.queues or any(not q.strip() for q in dist.queues) or len(set(dist.queues)) != len(dist.queues):
        raise ConfigError(f"{where}queues must be a non-empty list of distinct names, got {dist.queues!r}")
    check_endpoint(where + "scheduler_bind", dist.scheduler_bind)
    if dist.scheduler_advertise is not None:
        from .wire.endpoints import parse_tcp  # pure string logic; kept out of the plugin's import

        check_endpoint(where + "scheduler_advertise", dist.scheduler_advertise, connect=True)
        if parse_tcp(dist.scheduler_advertise).is_wildcard:  # type: ignore[union-attr]
            raise ConfigError(
                f"{where}scheduler_advertise must name a host nodes can connect to, got {dist.scheduler_advertise!r}"
            )
        if dist.scheduler_bind.rpartition(":")[2] in ("0", "*"):
            raise ConfigError(
                f"{where}scheduler_advertise needs a fixed port in {where}scheduler_bind (got "
                f"{dist.scheduler_bind!r}): the mapping forwards the queue ports that follow it"
            )
    if dist.scheduler is not None:
        check_endpoint(where + "scheduler", dist.scheduler, connect=True)
    if not dist.data_dir.strip():
        raise ConfigError(f"{where}data_dir must not be empty")
    if dist.local_node_device is not None and not DEVICE_PATTERN.match(dist.local_node_device):
        raise ConfigError(f"{where}local_node_device must be cpu, cuda, cuda:N or mps, got {dist.local_node_device!r}")
    for kind, policy in dist.retry.items():
        key = f"{where}retry.{kind}"
        if kind not in RETRY_KINDS:
            raise ConfigError(f"unknown task kind {key}; expected one of {', '.join(RETRY_KINDS)}")
        if policy.backoff_base_s > policy.backoff_max_s:
            raise ConfigError(f"{key}.backoff_base_s must not exceed {key}.backoff_max_s")


SECTION = ConfigSection(
    name="distributed",
    schema=DistributedConfig,
    validate=validate_distributed,
    doc=(
        "The web server, `lama-cleaner scheduler` and `lama-cleaner node` read this same table. "
        "Most settings are set in the file; the flags listed are those of "
        "`lama-cleaner --plugins distributed`. `lama-cleaner scheduler` takes `--scheduler-bind ADDR` "
        "(also spelled `--bind`), `--scheduler-advertise ADDR` (`--advertise`) and `--data-dir DIR`. "
        "Besides the ranges below: `queues` must be a non-empty list of distinct names, `scheduler_bind`, "
        "`scheduler_advertise` and `scheduler` `tcp://HOST:PORT` endpoints (`scheduler_advertise` with a "
        "host that is not a wildcard), `reconnect_min_s` at most `reconnect_max_s`, and `local_node_device` one of "
        "`cpu`, `cuda`, `cuda:N`, `mps` (unset: the server's `--device`)."
    ),
)
"""What the plugin's ``config_sections`` hook returns."""
