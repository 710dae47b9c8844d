"""``lama-cleaner batch`` logic without a server: planning, manifest, retries, argument errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from lama_cleaner import batch
from lama_cleaner.client import ApiError


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_plan_with_one_mask_file(tmp_path: Path):
    for name in ("b.png", "a.jpg", ".hidden.png", "notes.txt"):
        _touch(tmp_path / "in" / name)
    mask = _touch(tmp_path / "mask.png")
    jobs = batch.plan_jobs(tmp_path / "in", mask, tmp_path / "out")
    assert [j.name for j in jobs] == ["a.jpg", "b.png"]
    assert all(j.mask == mask and j.output.parent == tmp_path / "out" for j in jobs)


def test_plan_with_a_mask_folder_matches_stems(tmp_path: Path):
    _touch(tmp_path / "in" / "a.jpg")
    _touch(tmp_path / "in" / "b.png")
    _touch(tmp_path / "masks" / "a.png")
    jobs = {j.name: j for j in batch.plan_jobs(tmp_path / "in", tmp_path / "masks", tmp_path / "out")}
    assert jobs["a.jpg"].mask == tmp_path / "masks" / "a.png"
    assert jobs["b.png"].mask is None and "no mask named b.*" in (jobs["b.png"].mask_problem or "")


def test_manifest_is_atomic_and_decides_what_is_done(tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    job = batch.Job("a.png", tmp_path / "a.png", None, out / "a.png")
    manifest = batch.Manifest(out / batch.MANIFEST_NAME)
    assert not manifest.is_done(job)
    _touch(job.output)
    assert manifest.is_done(job)  # an output on disk is complete (written atomically)
    manifest.record("a.png", {"status": "failed", "error": "boom"})
    assert not manifest.is_done(job)
    manifest.record("a.png", {"status": "done", "task_id": "t"})
    reread = batch.Manifest(out / batch.MANIFEST_NAME)
    assert reread.is_done(job) and reread.images["a.png"]["task_id"] == "t"
    assert json.loads((out / batch.MANIFEST_NAME).read_text())["version"] == batch.MANIFEST_VERSION
    assert sorted(p.name for p in out.iterdir()) == sorted(["a.png", batch.MANIFEST_NAME])  # no temp files left
    (out / batch.MANIFEST_NAME).write_text("{broken")
    assert batch.Manifest(out / batch.MANIFEST_NAME).images == {}


class FlakyClient:
    """Fails ``failures`` times with ``error``, then answers ``value``."""

    def __init__(self, failures: int, error: Exception, value: object = "ok") -> None:
        self.failures, self.error, self.value, self.calls = failures, error, value, 0

    def __call__(self):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return self.value


def _runner(retries: int = 3) -> batch.Runner:
    return batch.Runner(client=None, model=None, fields={}, retries=retries, task_timeout=5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "error",
    [
        requests.ConnectionError("refused"),
        ApiError(503, "overloaded", "full", retry_after=0.01),
        ApiError(500, "internal_error", "oops"),
    ],
    ids=["connection", "503", "500"],
)
def test_transient_errors_are_retried(error, monkeypatch):
    monkeypatch.setattr(batch.threading.Event, "wait", lambda self, timeout=None: False)  # no real backoff
    call = FlakyClient(2, error)
    assert _runner()._retrying("x", call) == "ok" and call.calls == 3


def test_permanent_errors_and_exhausted_retries(monkeypatch):
    monkeypatch.setattr(batch.threading.Event, "wait", lambda self, timeout=None: False)
    call = FlakyClient(1, ApiError(400, "bad_request", "Mask shape"))
    with pytest.raises(ApiError):
        _runner()._retrying("x", call)
    assert call.calls == 1
    call = FlakyClient(10, requests.ConnectionError("down"))
    with pytest.raises(RuntimeError, match="after 2 retries"):
        _runner(retries=2)._retrying("submit", call)
    assert call.calls == 3


def test_idempotency_key_depends_on_inputs_and_settings():
    a = batch.Runner(None, "cv2", {}, 0, 1).idempotency_key(b"i", b"m")  # type: ignore[arg-type]
    assert a == batch.Runner(None, "cv2", {}, 0, 1).idempotency_key(b"i", b"m")  # type: ignore[arg-type]
    assert a != batch.Runner(None, "lama", {}, 0, 1).idempotency_key(b"i", b"m")  # type: ignore[arg-type]
    assert a != batch.Runner(None, "cv2", {"prompt": "x"}, 0, 1).idempotency_key(b"i", b"m")  # type: ignore[arg-type]
    assert a != batch.Runner(None, "cv2", {}, 0, 1).idempotency_key(b"i2", b"m")  # type: ignore[arg-type]


def test_bad_arguments_exit_2(tmp_path: Path, capsys):
    _touch(tmp_path / "in" / "a.png")
    mask = _touch(tmp_path / "m.png")
    base = ["--input", str(tmp_path / "in"), "--mask", str(mask)]
    assert batch.main([*base, "--output", str(tmp_path / "in")]) == 2
    assert "must differ" in capsys.readouterr().err
    assert batch.main(["--input", str(tmp_path / "nope"), "--mask", str(mask), "--output", str(tmp_path / "o")]) == 2
    assert batch.main([*base, "--output", str(tmp_path / "o"), "--field", "radius=3"]) == 2
    assert "unknown inpaint field" in capsys.readouterr().err
    assert batch.main([*base, "--output", str(tmp_path / "o"), "--field", "novalue"]) == 2
    with pytest.raises(SystemExit) as info:
        batch.main(["--input", "x"])
    assert info.value.code == 2


def test_nothing_to_do_when_every_output_exists(tmp_path: Path, capsys):
    _touch(tmp_path / "in" / "a.png")
    _touch(tmp_path / "out" / "a.png")
    mask = _touch(tmp_path / "m.png")
    code = batch.main(
        [
            "--input",
            str(tmp_path / "in"),
            "--mask",
            str(mask),
            "--output",
            str(tmp_path / "out"),
            "--server",
            "http://127.0.0.1:9",
        ]
    )
    assert code == 0 and "done: 0  skipped: 1  failed: 0" in capsys.readouterr().out


class FakeApi:
    """Just enough of LamaCleanerClient for Runner.run."""

    def __init__(self, by_key: dict[str, dict], statuses: dict[str, str]) -> None:
        self.by_key, self.statuses = by_key, statuses
        self.keys: list[str] = []
        self.cancelled: list[str] = []

    def submit(self, image, mask, model, idempotency_key=None, **fields):
        self.keys.append(idempotency_key)
        return self.by_key.get(idempotency_key, {"id": "new", "status": "queued"})

    def get(self, task_id):
        return {"id": task_id, "status": self.statuses[task_id]}

    def result(self, task_id):
        from lama_cleaner.client import TaskResult

        return TaskResult(b"RESULT", "image/png", {"X-Seed": "5"})

    def cancel(self, task_id):
        self.cancelled.append(task_id)
        return {"id": task_id, "status": "cancelled"}


def _job(tmp_path: Path) -> batch.Job:
    image, mask = _touch(tmp_path / "in" / "a.png", b"I"), _touch(tmp_path / "m.png", b"M")
    (tmp_path / "out").mkdir()
    return batch.Job("a.png", image, mask, tmp_path / "out" / "a.png")


def test_a_failed_task_from_an_earlier_run_is_not_reused(tmp_path: Path):
    job = _job(tmp_path)
    runner = batch.Runner(None, "cv2", {}, 0, 5)  # type: ignore[arg-type]
    key = runner.idempotency_key(b"I", b"M")
    api = FakeApi({key: {"id": "old-task-id-1234", "status": "failed"}}, {"new": "completed"})
    runner.client = api  # type: ignore[assignment]
    outcome = runner.run(job)
    assert outcome.status == "done" and outcome.task_id == "new" and outcome.seed == 5
    assert api.keys == [key, f"{key}-after-old-task-id-"] and job.output.read_bytes() == b"RESULT"


def test_a_task_that_does_not_finish_in_time_is_cancelled(tmp_path: Path):
    job = _job(tmp_path)
    api = FakeApi({}, {"new": "processing"})
    outcome = batch.Runner(api, None, {}, 0, task_timeout=0.05).run(job)  # type: ignore[arg-type]
    assert outcome.status == "failed" and "not finished after" in (outcome.error or "")
    assert api.cancelled == ["new"] and not job.output.exists()


def _args(tmp_path: Path, *extra: str) -> list[str]:
    return ["--input", str(tmp_path), "--mask", str(tmp_path), "--output", str(tmp_path / "out"), *extra]


def test_priority_option_defaults_below_interactive_work(tmp_path: Path):
    assert batch.build_parser().parse_args(_args(tmp_path)).priority == batch.BATCH_PRIORITY == 2
    assert batch.build_parser().parse_args(_args(tmp_path, "--priority", "9")).priority == 9
    assert batch.build_parser().parse_args(_args(tmp_path, "--priority", "0")).priority == 0


@pytest.mark.parametrize("bad", ["10", "-1", "high", "2.5"])
def test_a_bad_priority_option_is_a_usage_error(tmp_path: Path, capsys, bad: str):
    with pytest.raises(SystemExit) as info:
        batch.build_parser().parse_args(_args(tmp_path, "--priority", bad))
    assert info.value.code == 2 and "--priority" in capsys.readouterr().err


class RecordingApi(FakeApi):
    def __init__(self) -> None:
        super().__init__({}, {"new": "completed"})
        self.priorities: list[object] = []

    def submit(self, image, mask, model, idempotency_key=None, **fields):
        self.priorities.append(fields.pop("priority", "absent"))
        return super().submit(image, mask, model, idempotency_key, **fields)


def test_the_runner_submits_at_its_priority_and_the_key_ignores_it(tmp_path: Path):
    api = RecordingApi()
    assert batch.Runner(api, None, {}, 0, 5).run(_job(tmp_path)).status == "done"  # type: ignore[arg-type]
    low = batch.Runner(api, None, {}, 0, 5, priority=7)  # type: ignore[arg-type]
    assert low.run(_job(tmp_path / "again")).status == "done"
    assert api.priorities == [2, 7]
    assert api.keys[0] == api.keys[1]  # same image and mask: a rerun at another priority finds the same task
