"""The soak's clients: threads that submit with idempotency keys, retry with the same key, follow
each task to its end and check its image against the oracle.

A client does what a careful user of ``/api/v1`` does under faults: a connection error, a timeout
or a 5xx on ``POST /api/v1/tasks`` is retried with the same ``Idempotency-Key`` (the first try may
have been accepted before the server died), and so are the polls and the result download. Every
task id any answer names for a key is kept in that key's :class:`Ledger`; one key with two ids is
a duplicate the verdict reports.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import requests

from .workload import TaskSpec, result_digest

TERMINAL = ("completed", "failed", "cancelled")
RETRYABLE_STATUS = (500, 502, 503, 504)
"""Answers a client retries: the server or its scheduler is restarting, or a request was cut short."""
TIMEOUT = (3.0, 15.0)
"""(connect, read) seconds of one HTTP request; a slow answer is retried like a lost one."""
CLASSIC_READ_TIMEOUT_S = 120.0
"""A classic ``/inpaint`` holds its connection for the whole task, retries on nodes included."""
_SAW_LOCK = threading.Lock()
GONE_AFTER_S = 20.0
"""A task the server keeps answering 404 for this long is declared lost (a restart takes seconds)."""


@dataclass
class Ledger:
    """Everything the clients learned about one key."""

    spec: TaskSpec
    task_ids: list[str] = field(default_factory=list)
    """Every distinct task id an answer named for this key, in order (more than one: a duplicate)."""
    posts: int = 0
    retried: Counter[str] = field(default_factory=Counter)
    """Why requests about this key were retried (``connection``, ``timeout``, ``http 503``, ...)."""
    accepted_at: float | None = None
    final_seen_at: float | None = None
    status: str | None = None
    error: str | None = None
    attempts: int | None = None
    digest: str | None = None
    problems: list[str] = field(default_factory=list)
    """Violations seen by the clients: a lost task, a wrong image, a final state that changed."""
    gone_since: float | None = None
    classic: bool = False
    """Sent to the classic ``/inpaint`` (no key, the answer is the image) instead of ``/api/v1``."""

    @property
    def task_id(self) -> str | None:
        return self.task_ids[0] if self.task_ids else None

    def saw(self, task_id: str) -> None:
        with _SAW_LOCK:  # two racing submissions of one key may answer at the same moment
            if task_id not in self.task_ids:
                self.task_ids.append(task_id)


class Stopped(Exception):
    """The soak's deadline passed while a request was being retried."""


class ApiClient:
    """``/api/v1`` calls with the soak's retry rule; one per thread (a ``requests.Session`` is not shared)."""

    def __init__(self, url: str, stop: threading.Event) -> None:
        self.url = url
        self.stop = stop
        self.session = requests.Session()

    def close(self) -> None:
        self.session.close()

    def _retrying(self, ledger: Ledger, call: Callable[[], requests.Response]) -> requests.Response:
        """``call`` until it is answered with something other than a retryable status."""
        delay = 0.05
        while True:
            if self.stop.is_set():
                raise Stopped()
            try:
                reply = call()
            except requests.Timeout:
                ledger.retried["timeout"] += 1
            except requests.RequestException:
                ledger.retried["connection"] += 1
            else:
                if reply.status_code not in RETRYABLE_STATUS:
                    return reply
                ledger.retried[f"http {reply.status_code}"] += 1
            self.stop.wait(delay)  # the backoff between two tries, not a wait for an outcome
            delay = min(delay * 2, 1.0)

    def submit(self, ledger: Ledger) -> requests.Response:
        """POST the task with its key until an answer that is not retryable; a 200/202 names the
        task, and its id is recorded in the ledger."""
        spec = ledger.spec

        def post() -> requests.Response:
            ledger.posts += 1
            return self.session.post(
                f"{self.url}/api/v1/tasks",
                data=spec.form(),
                files={"image": ("image.png", spec.image_png), "mask": ("mask.png", spec.mask_png)},
                headers={"Idempotency-Key": spec.key},
                timeout=TIMEOUT,
            )

        reply = self._retrying(ledger, post)
        if reply.status_code in (200, 202):
            ledger.saw(reply.json()["id"])
        return reply

    def inpaint(self, ledger: Ledger) -> requests.Response:
        """POST ``/inpaint`` until an answer that is not retryable. Without a key, each retry is a
        new task: the classic route promises the image, not a single execution."""
        spec = ledger.spec

        def post() -> requests.Response:
            ledger.posts += 1
            return self.session.post(
                f"{self.url}/inpaint",
                data=spec.classic_form(),
                files={"image": ("image.png", spec.image_png), "mask": ("mask.png", spec.mask_png)},
                timeout=(TIMEOUT[0], CLASSIC_READ_TIMEOUT_S),
            )

        return self._retrying(ledger, post)

    def get(self, ledger: Ledger, task_id: str) -> requests.Response:
        return self._retrying(ledger, lambda: self.session.get(f"{self.url}/api/v1/tasks/{task_id}", timeout=TIMEOUT))

    def result(self, ledger: Ledger, task_id: str) -> requests.Response:
        return self._retrying(
            ledger, lambda: self.session.get(f"{self.url}/api/v1/tasks/{task_id}/result", timeout=TIMEOUT)
        )


class Progress:
    """How many tasks the clients have seen finish; the fault plan is triggered by it."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.finished = 0
        self._cond = threading.Condition()

    def add(self) -> None:
        with self._cond:
            self.finished += 1
            self._cond.notify_all()

    def fraction(self) -> float:
        return self.finished / self.total if self.total else 1.0

    def wait_fraction(self, fraction: float, stop: threading.Event, timeout: float) -> bool:
        """Block until ``fraction`` of the tasks finished (True), ``stop`` is set or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.fraction() < fraction:
                left = deadline - time.monotonic()
                if stop.is_set() or left <= 0:
                    return False
                self._cond.wait(min(left, 0.2))
        return True


class SoakClients:
    """``threads`` client threads, each with up to ``window`` of its tasks in flight at once."""

    def __init__(
        self,
        url: str,
        specs: Sequence[TaskSpec],
        *,
        threads: int = 4,
        window: int = 4,
        poll_interval_s: float = 0.1,
        race_every: int = 10,
        classic_every: int = 0,
    ) -> None:
        """``race_every``: every n-th key is POSTed twice at the same moment, from two connections,
        as a client does that retries after its own timeout while the first try is still running.
        ``classic_every``: every n-th task goes to the classic ``/inpaint`` instead (0: none)."""
        self.url = url
        self.ledgers = [
            Ledger(spec, classic=bool(classic_every) and spec.index % classic_every == classic_every - 1)
            for spec in specs
        ]
        self.threads = threads
        self.window = window
        self.poll_interval_s = poll_interval_s
        self.race_every = race_every
        self.progress = Progress(len(self.ledgers))
        self.stop = threading.Event()
        self._next = 0
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.crashes: list[str] = []
        self.rechecked_all = False

    def start(self) -> SoakClients:
        for i in range(self.threads):
            thread = threading.Thread(target=self._run, name=f"chaos-client-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def join(self, timeout: float) -> bool:
        """Wait for every client thread to finish its share; False if ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def _take(self) -> list[Ledger]:
        with self._lock:
            batch = self.ledgers[self._next : self._next + self.window]
            self._next += len(batch)
        return batch

    def _run(self) -> None:
        api = ApiClient(self.url, self.stop)
        try:
            while batch := self._take():
                self._serve(api, batch)
        except Stopped:
            pass
        except Exception as exc:  # noqa: BLE001 - a harness bug must show in the report, not kill silently
            self.crashes.append(f"{threading.current_thread().name}: {exc!r}")
            self.stop.set()
        finally:
            api.close()

    def _serve(self, api: ApiClient, batch: list[Ledger]) -> None:
        pending: list[Ledger] = []
        for ledger in batch:
            if ledger.classic:
                self._classic(api, ledger)
                self.progress.add()
                continue
            racer = self._race(ledger) if self.race_every and ledger.spec.index % self.race_every == 0 else None
            reply = api.submit(ledger)
            if racer is not None:
                racer.join()
            if reply.status_code not in (200, 202):
                ledger.status = "refused"
                ledger.error = f"POST answered {reply.status_code}: {reply.text[:200]}"
                self.progress.add()
                continue
            ledger.accepted_at = time.time()
            pending.append(ledger)
        while pending:
            for ledger in list(pending):
                if self._poll(api, ledger):
                    pending.remove(ledger)
                    self.progress.add()
            if pending:
                self.stop.wait(self.poll_interval_s)  # the poll period, not a guess at the task's length
                if self.stop.is_set():
                    raise Stopped()

    @staticmethod
    def _classic(api: ApiClient, ledger: Ledger) -> None:
        reply = api.inpaint(ledger)
        ledger.final_seen_at = time.time()
        if reply.status_code != 200:
            ledger.status = "failed"
            ledger.error = f"/inpaint answered {reply.status_code}: {reply.text[:200]}"
            return
        ledger.status = "completed"
        ledger.digest = result_digest(reply.content)
        if ledger.digest != ledger.spec.expected_digest:
            ledger.problems.append("wrong: the /inpaint image is not the expected one")

    def _race(self, ledger: Ledger) -> threading.Thread:
        """A second POST of ``ledger``'s key on its own connection, started now; the ids it is
        answered with land in the same ledger (two different ones: a duplicate)."""

        def post_again() -> None:
            api = ApiClient(self.url, self.stop)
            try:
                api.submit(ledger)
            except Stopped:
                pass
            finally:
                api.close()

        thread = threading.Thread(target=post_again, name="chaos-racer", daemon=True)
        thread.start()
        return thread

    def _poll(self, api: ApiClient, ledger: Ledger) -> bool:
        """One look at the task; True once it is final (and its image fetched and checked) or lost."""
        task_id = ledger.task_id
        assert task_id is not None
        reply = api.get(ledger, task_id)
        if reply.status_code == 404:
            now = time.monotonic()
            ledger.gone_since = ledger.gone_since or now
            if now - ledger.gone_since > GONE_AFTER_S:
                ledger.problems.append(f"lost: GET answered 404 for {GONE_AFTER_S:.0f}s after it was accepted")
                ledger.status = "lost"
                return True
            return False
        ledger.gone_since = None
        if reply.status_code != 200:
            ledger.problems.append(f"lost: GET answered {reply.status_code}: {reply.text[:200]}")
            ledger.status = "lost"
            return True
        task = reply.json()
        if task["status"] not in TERMINAL:
            return False
        ledger.final_seen_at = time.time()
        ledger.status = task["status"]
        ledger.error = task.get("error")
        ledger.attempts = task.get("attempts")
        if ledger.status == "completed":
            ledger.digest = self._check_result(api, ledger, task_id)
        return True

    @staticmethod
    def _check_result(api: ApiClient, ledger: Ledger, task_id: str) -> str | None:
        reply = api.result(ledger, task_id)
        if reply.status_code != 200:
            ledger.problems.append(f"lost: completed but GET result answered {reply.status_code}: {reply.text[:200]}")
            return None
        digest = result_digest(reply.content)
        if digest != ledger.spec.expected_digest:
            ledger.problems.append("wrong: the result image is not the expected one")
        return digest

    # ------------------------------------------------------------------ after the faults
    def recheck(self, ledger: Ledger, api: ApiClient) -> None:
        """Ask again once the faults are over: the same key must still name the same task, in the
        same final state, with the same image."""
        if ledger.status not in TERMINAL:
            return
        first = ledger.task_id
        reply = api.submit(ledger)
        if reply.status_code not in (200, 202):
            ledger.problems.append(f"changed: resubmitting the key answered {reply.status_code}: {reply.text[:200]}")
            return
        task = reply.json()
        if task["id"] != first:
            ledger.problems.append(f"duplicate: resubmitting the key created task {task['id']} (first {first})")
            return
        if task["status"] != ledger.status:
            ledger.problems.append(f"changed: final state {ledger.status} became {task['status']}")
            return
        if ledger.status == "completed":
            reply = api.result(ledger, first)
            if reply.status_code != 200 or result_digest(reply.content) != ledger.digest:
                ledger.problems.append("changed: the result image differs from the one first delivered")

    def recheck_all(self, deadline_s: float) -> None:
        """:meth:`recheck` every finished key from ``threads`` threads, bounded by ``deadline_s``."""
        self.stop.clear()
        timer = threading.Timer(deadline_s, self.stop.set)
        timer.start()
        todo = [ledger for ledger in self.ledgers if ledger.status in TERMINAL and not ledger.classic]
        lock = threading.Lock()

        def work() -> None:
            api = ApiClient(self.url, self.stop)
            try:
                while True:
                    with lock:
                        if not todo:
                            return
                        ledger = todo.pop()
                    self.recheck(ledger, api)
            except Stopped:
                pass
            finally:
                api.close()

        workers = [threading.Thread(target=work, daemon=True) for _ in range(self.threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        timer.cancel()
        self.rechecked_all = not todo and not self.stop.is_set()
