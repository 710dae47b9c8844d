"""``lama-cleaner batch``: inpaint a whole folder through the task API, resumably.

Each image goes through ``/api/v1`` (of ``--server``, or of a server this command starts and stops
itself), so a batch gets the same queueing, retries and results as interactive use. What makes a
long batch safe to interrupt and rerun:

- an output is written atomically (temp file + rename), so an existing output is always complete
  and is skipped on the next run; a manifest in the output directory (also replaced atomically)
  records what was done, with which task, and why an image failed;
- each submission carries an ``Idempotency-Key`` derived from the image, mask, model and fields, so
  a retry after a lost reply (or a rerun while the server still knows the task) never runs the same
  work twice;
- connection errors, 503 (honouring ``Retry-After``) and other 5xx answers are retried with backoff;
  a bad image or a size mismatch fails that image only, with the server's message.

Tasks are submitted at priority 2 (``--priority``), below the default 5 of interactive requests, so
a long batch on a shared server never makes a user of the web UI wait behind it.

Exit status: 0 when every image is done or skipped, 1 when any failed (a summary lists them),
2 for bad arguments, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as _dt
import functools
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pluggy
import requests

from .client import ApiError, LamaCleanerClient, inpaint_form
from .config import Config, ConfigError, read_config_file, validate_config
from .plugins.config_loader import load_config, new_config
from .plugins.lifecycle import running
from .plugins.manager import create_plugin_manager, split_plugins
from .process_lifetime import die_with_parent
from .tasks import DEFAULT_PRIORITY, MAX_PRIORITY, MIN_PRIORITY, TERMINAL_STATES

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
MANIFEST_NAME = ".lama-cleaner-batch.json"
JOURNAL_NAME = ".lama-cleaner-batch-journal"
MANIFEST_VERSION = 1
EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
BATCH_PRIORITY = 2
"""Default task priority of a batch: below interactive work (5), so it only fills idle capacity."""
T = TypeVar("T")


class BatchError(Exception):
    """A usage problem reported before any work starts (exit status 2)."""


class Interrupted(Exception):
    """SIGINT/SIGTERM: stop taking new images, keep what is done."""


# ---------------------------------------------------------------------------------------------- plan


@dataclass
class Job:
    """One input image and where its mask and output are."""

    name: str
    image: Path
    mask: Path | None
    output: Path
    mask_problem: str | None = None


def list_images(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def plan_jobs(input_dir: Path, mask: Path, output_dir: Path) -> list[Job]:
    """Pair every image with its mask: one mask file for all, or ``<mask dir>/<same stem>.*``."""
    masks_by_stem: dict[str, Path] = {}
    if mask.is_dir():
        for candidate in list_images(mask):
            masks_by_stem.setdefault(candidate.stem, candidate)
    jobs = []
    for image in list_images(input_dir):
        job = Job(name=image.name, image=image, mask=None, output=output_dir / image.name)
        if mask.is_dir():
            job.mask = masks_by_stem.get(image.stem)
            if job.mask is None:
                job.mask_problem = f"no mask named {image.stem}.* in {mask}"
        else:
            job.mask = mask
        jobs.append(job)
    return jobs


# ---------------------------------------------------------------------------------------------- manifest


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` so that ``path`` is either the old file or the complete new one, never partial."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Manifest:
    """``<output>/.lama-cleaner-batch.json``: per image, done (with task id and seed) or failed (why)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.images: dict[str, dict[str, Any]] = {}
        if path.exists():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(data, dict) and isinstance(data.get("images"), dict):
                    self.images = data["images"]
            except (OSError, ValueError):
                self.images = {}  # unreadable: outputs on disk still say what is done

    def is_done(self, job: Job) -> bool:
        """Done = the output exists (it was written atomically) and no failure is recorded after it."""
        entry = self.images.get(job.name)
        return job.output.exists() and (entry is None or entry.get("status") == "done")

    def record(self, name: str, entry: dict[str, Any]) -> None:
        with self.lock:
            self.images[name] = {**entry, "at": now_iso()}
            body = {"version": MANIFEST_VERSION, "images": dict(sorted(self.images.items()))}
            write_atomic(self.path, json.dumps(body, indent=1).encode("utf-8"))


# ---------------------------------------------------------------------------------------------- work


@dataclass
class Outcome:
    job: Job
    status: str  # done | failed
    error: str | None = None
    task_id: str | None = None
    seed: int | None = None


@dataclass
class Runner:
    """Processes jobs against one API with retries; ``stop`` makes workers give up quickly."""

    client: LamaCleanerClient
    model: str | None
    fields: dict[str, str]
    retries: int
    task_timeout: float
    stop: threading.Event = field(default_factory=threading.Event)
    priority: int = BATCH_PRIORITY
    """Not part of the idempotency key: a rerun at another priority still finds its earlier tasks."""

    def _retrying(self, what: str, call: Callable[[], T]) -> T:
        """Run ``call``, retrying transient failures (network, 503, 5xx) with exponential backoff."""
        attempt = 0
        while True:
            try:
                return call()
            except (requests.ConnectionError, requests.Timeout) as exc:
                error: Exception = exc
                wait = None
            except ApiError as exc:
                if not exc.transient:
                    raise
                error, wait = exc, exc.retry_after
            attempt += 1
            if attempt > self.retries:
                raise RuntimeError(f"{what} failed after {self.retries} retries: {error}") from error
            delay = min(wait if wait is not None else 0.5 * 2 ** (attempt - 1), 30.0)
            if self.stop.wait(delay):
                raise Interrupted()

    def idempotency_key(self, image: bytes, mask: bytes) -> str:
        digest = hashlib.sha256()
        for part in (image, mask, (self.model or "").encode(), json.dumps(self.fields, sort_keys=True).encode()):
            digest.update(hashlib.sha256(part).digest())
        return "batch-" + digest.hexdigest()[:48]

    def run(self, job: Job) -> Outcome:
        if job.mask is None:
            return Outcome(job, "failed", job.mask_problem or "no mask")
        if self.stop.is_set():
            raise Interrupted()
        try:
            image, mask = job.image.read_bytes(), job.mask.read_bytes()
        except OSError as exc:
            return Outcome(job, "failed", f"cannot read input: {exc.strerror or exc}")
        key = self.idempotency_key(image, mask)
        try:
            task = self._submit(image, mask, key)
            if task["status"] in ("failed", "cancelled"):
                # an earlier run's task under this key ended badly: this run tries again, under a key
                # derived from that task so a retry of this submission still finds its own task
                task = self._submit(image, mask, f"{key}-after-{task['id'][:12]}")
            task_id = task["id"]
            try:
                task = self._wait(task_id)
            except TimeoutError:
                self._cancel_quietly(task_id)  # free the node for the next image
                raise
            if task["status"] != "completed":
                return Outcome(job, "failed", task.get("error") or f"task {task['status']}", task_id)
            result = self._retrying("download", lambda: self.client.result(task_id))
        except ApiError as exc:
            return Outcome(job, "failed", exc.message)
        except (RuntimeError, TimeoutError) as exc:
            return Outcome(job, "failed", str(exc))
        write_atomic(job.output, result.body)
        return Outcome(job, "done", None, task_id, result.seed)

    def _submit(self, image: bytes, mask: bytes, key: str) -> dict[str, Any]:
        return self._retrying(
            "submit",
            lambda: self.client.submit(
                image, mask, self.model, idempotency_key=key, priority=self.priority, **self.fields
            ),
        )

    def _cancel_quietly(self, task_id: str) -> None:
        try:
            self.client.cancel(task_id)
        except (ApiError, requests.RequestException):
            pass

    def _wait(self, task_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.task_timeout
        delay = 0.05
        while True:
            task = self._retrying("status", lambda: self.client.get(task_id))
            if task["status"] in TERMINAL_STATES:
                return task
            if time.monotonic() > deadline:
                raise TimeoutError(f"task {task_id} not finished after {self.task_timeout:g}s")
            if self.stop.wait(delay):
                raise Interrupted()
            delay = min(delay * 1.5, 1.0)


# ---------------------------------------------------------------------------------------------- embedded server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedServer:
    """``lama-cleaner --plugins distributed`` on free loopback ports, stopped with its process group.

    Its journal lives in ``<output>/.lama-cleaner-batch-journal`` (unless the config file names one), so
    a rerun after an interruption finds the tasks of the first run by their idempotency keys instead of
    computing them again.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        plugins = list(dict.fromkeys(["distributed", *split_plugins(args.plugins)]))  # once, in order
        self.cmd = [
            sys.executable,
            "-m",
            "lama_cleaner",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--device",
            args.device,
            "--plugins",
            ",".join(plugins),
        ]
        if args.model:
            self.cmd += ["--model", args.model]
        section: dict[str, Any] = {}
        if args.config:
            self.cmd += ["--config", str(args.config)]
            try:
                section = read_config_file(args.config).get("distributed") or {}
            except ConfigError as exc:
                raise BatchError(str(exc)) from None
        self.journal: Path | None = None
        if not section.get("data_dir") and not section.get("data-dir"):
            self.journal = args.output / JOURNAL_NAME
            self.cmd += ["--data-dir", str(self.journal)]
        if not any(section.get(k) for k in ("scheduler", "scheduler_bind", "scheduler-bind")):
            self.cmd += ["--scheduler-bind", "tcp://127.0.0.1:0"]  # free ports, picked by the scheduler
        self.log = tempfile.NamedTemporaryFile(prefix="lama-cleaner-batch-server-", suffix=".log", delete=False)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float) -> None:
        kwargs: dict[str, Any] = {"start_new_session": True}
        if sys.platform.startswith("linux"):
            # SIGTERM if this batch process dies (even by SIGKILL): the server stops cleanly, never orphaned.
            kwargs["preexec_fn"] = functools.partial(die_with_parent, signal.SIGTERM)
        self.proc = subprocess.Popen(
            self.cmd, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kwargs
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BatchError(f"the embedded server exited with code {self.proc.returncode}:\n{self.output()}")
            try:
                if requests.get(self.url + "/api/v1/queues", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)  # start-up poll interval
        self.stop()
        raise BatchError(f"the embedded server did not answer within {timeout:g}s:\n{self.output()}")

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc is None:
            return
        for sig, wait in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
            if self.proc.poll() is not None:
                break
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything left in its group (its local nodes, in sessions
            # of their own, follow the server's death through --parent-pid)
        except ProcessLookupError:
            pass
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)
        self.proc = None

    def remove_journal(self) -> None:
        if self.journal is not None:
            shutil.rmtree(self.journal, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- CLI


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except empty ones (``None``, ``[]``) whose meaning the help text gives."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, [], False):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lama-cleaner batch",
        description="Inpaint every image of a folder through the task API (resumable).",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("--input", required=True, type=Path, metavar="DIR", help="Folder of images.")
    p.add_argument(
        "--mask",
        required=True,
        type=Path,
        metavar="FILE|DIR",
        help="One mask for every image, or a folder of masks named like the images (same stem).",
    )
    p.add_argument("--output", required=True, type=Path, metavar="DIR", help="Folder for results (same file names).")
    p.add_argument("--model", default=None, help="Model to use (default: the server's current model).")
    p.add_argument(
        "--server",
        default=None,
        metavar="URL",
        help="URL of a running server with the distributed plugin; default: start one here.",
    )
    p.add_argument("--concurrency", type=int, default=2, metavar="N", help="Images in flight at once.")
    p.add_argument("--retries", type=int, default=5, metavar="N", help="Retries of a transient error per request.")
    p.add_argument("--task-timeout", type=float, default=600.0, metavar="S", help="Seconds to wait for one image.")
    p.add_argument(
        "--priority",
        type=int,
        choices=range(MIN_PRIORITY, MAX_PRIORITY + 1),
        default=BATCH_PRIORITY,
        metavar="N",
        help=f"Task priority {MIN_PRIORITY}-{MAX_PRIORITY}, higher runs first; interactive requests use "
        f"{DEFAULT_PRIORITY}, so the default lets them go ahead of the batch.",
    )
    p.add_argument(
        "--field",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="An /inpaint field to change, e.g. --field hdStrategy=Original (repeatable).",
    )
    p.add_argument("--config", type=Path, default=None, metavar="FILE", help="Config file for the embedded server.")
    p.add_argument(
        "--plugins",
        action="append",
        default=None,
        metavar="NAME[,NAME]",
        help="Extra plugins for the embedded server (distributed is always on).",
    )
    p.add_argument("--device", default="cpu", help="Device of the embedded server's local nodes.")
    p.add_argument(
        "--start-timeout", type=float, default=120.0, metavar="S", help="Seconds to wait for the embedded server."
    )
    p.add_argument("--quiet", action="store_true", help="No progress bar.")
    return p


def _plugin_manager(parser: argparse.ArgumentParser, argv: Sequence[str]) -> pluggy.PluginManager:
    """The manager of the plugins named by ``--plugins`` (and installed entry points); they add
    their ``batch`` options here, as the ``add_cli_options`` hook promises."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--plugins", action="append", default=None)
    known, _ = pre.parse_known_args(argv)
    pm = create_plugin_manager(split_plugins(known.plugins))
    pm.hook.add_cli_options(parser=parser, command="batch")
    return pm


def batch_config(args: argparse.Namespace, pm: pluggy.PluginManager) -> Config:
    """The configuration the ``batch`` role's lifecycle hooks receive: ``--config`` (the file the
    embedded server also reads; checked here, before any work) with ``--plugins`` applied."""
    config = load_config(args.config, plugin_manager=pm) if args.config else new_config(pm)
    config.plugins = list(dict.fromkeys([*config.plugins, *split_plugins(args.plugins)]))
    pm.hook.configure(config=config, args=args)
    validate_config(config)
    return config


def parse_fields(pairs: Sequence[str], model: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BatchError(f"--field expects KEY=VALUE, got {pair!r}")
        out[key.strip()] = value
    try:
        inpaint_form(model, **out)  # unknown names fail here, before anything is sent
    except TypeError as exc:
        raise BatchError(str(exc)) from None
    return out


def _check_dirs(args: argparse.Namespace) -> None:
    if not args.input.is_dir():
        raise BatchError(f"--input {args.input} is not a folder")
    if not args.mask.exists():
        raise BatchError(f"--mask {args.mask} does not exist")
    if args.output.resolve() == args.input.resolve():
        raise BatchError("--output must differ from --input (results would overwrite the originals)")
    if args.concurrency < 1 or args.retries < 0:
        raise BatchError("--concurrency must be >= 1 and --retries >= 0")
    args.output.mkdir(parents=True, exist_ok=True)


def summarize(done: int, skipped: int, failed: list[Outcome], out: Any = None) -> None:
    out = out or sys.stdout
    print(f"done: {done}  skipped: {skipped}  failed: {len(failed)}", file=out)
    for outcome in failed:
        print(f"  failed {outcome.job.name}: {outcome.error}", file=out)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry of ``lama-cleaner batch``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        pm = _plugin_manager(parser, argv)
    except ConfigError as exc:
        print(f"lama-cleaner batch: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    args = parser.parse_args(argv)
    try:
        _check_dirs(args)
        fields = parse_fields(args.field, args.model)
        config = batch_config(args, pm)
    except (BatchError, ConfigError) as exc:
        parser.print_usage(sys.stderr)
        print(f"lama-cleaner batch: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        if stop.is_set():
            return  # already stopping: let the clean-up finish
        stop.set()
        raise Interrupted()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with running(pm, config, "batch"):  # shutdown runs on every way out, a signal included
            return _batch(args, fields, stop)
    except ConfigError as exc:  # a plugin's startup refusing its settings
        print(f"lama-cleaner batch: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Interrupted:
        print("interrupted: finished images are kept; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        stop.set()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _batch(args: argparse.Namespace, fields: dict[str, str], stop: threading.Event) -> int:
    """Plan, then run every pending image (inside the ``batch`` role's ``startup``/``shutdown``)."""
    jobs = plan_jobs(args.input, args.mask, args.output)
    manifest = Manifest(args.output / MANIFEST_NAME)
    pending = [job for job in jobs if not manifest.is_done(job)]
    skipped = len(jobs) - len(pending)
    for job in jobs:
        if job.name not in manifest.images and job.output.exists():
            # finished by an interrupted run after its last manifest update: the output is complete
            manifest.record(
                job.name, {"status": "done", "output": job.output.name, "task_id": None, "note": "found on disk"}
            )
    if not pending:
        summarize(0, skipped, [])
        return 0

    server: EmbeddedServer | None = None
    try:
        if args.server:
            base_url = args.server
        else:
            server = EmbeddedServer(args)
            print(f"starting an embedded server on {server.url} ...", file=sys.stderr, flush=True)
            server.start(args.start_timeout)
            base_url = server.url
        with LamaCleanerClient(base_url, timeout=60.0) as client:
            runner = Runner(client, args.model, fields, args.retries, args.task_timeout, stop, args.priority)
            status = _run_all(runner, pending, skipped, manifest, args)
        if server is not None and status == 0:
            server.stop()
            server.remove_journal()  # every image is done: nothing left to resume
        return status
    except BatchError as exc:
        print(f"lama-cleaner batch: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        stop.set()
        if server is not None:
            server.stop()


def _run_all(runner: Runner, pending: list[Job], skipped: int, manifest: Manifest, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    done, failed = 0, []
    bar = tqdm(
        total=len(pending) + skipped,
        initial=skipped,
        unit="img",
        disable=args.quiet,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    bar.set_postfix(done=0, skipped=skipped, failed=0)
    pool = cf.ThreadPoolExecutor(max_workers=args.concurrency, thread_name_prefix="batch")
    try:
        futures = {pool.submit(runner.run, job): job for job in pending}
        for future in cf.as_completed(futures):
            try:
                outcome = future.result()
            except Interrupted:
                raise
            except Exception as exc:  # noqa: BLE001 - one image's unexpected error must not end the batch
                outcome = Outcome(futures[future], "failed", f"{type(exc).__name__}: {exc}")
            if outcome.status == "done":
                done += 1
                manifest.record(
                    outcome.job.name,
                    {
                        "status": "done",
                        "output": outcome.job.output.name,
                        "task_id": outcome.task_id,
                        "seed": outcome.seed,
                    },
                )
            else:
                failed.append(outcome)
                manifest.record(
                    outcome.job.name, {"status": "failed", "error": outcome.error, "task_id": outcome.task_id}
                )
            bar.update(1)
            bar.set_postfix(done=done, skipped=skipped, failed=len(failed))
    finally:
        runner.stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    summarize(done, skipped, failed)
    return EXIT_FAILED if failed else 0
