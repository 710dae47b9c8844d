"""The built-in executor: hook wiring, current model, switch semantics and the events it emits."""

from __future__ import annotations

import pytest

from lama_cleaner.config import Config
from lama_cleaner.errors import ClientError, ModelNotSupported
from lama_cleaner.executor import InpaintExecutor
from lama_cleaner.inpaint_request import default_form
from lama_cleaner.tasks import TaskEvent, TaskRequest

from .images import encode, mask_bytes, pixels


class Recorder:
    def __init__(self) -> None:
        self.events: list[TaskEvent] = []

    def emit(self, event: TaskEvent) -> None:
        self.events.append(event)


@pytest.fixture
def setup(pm):
    events = Recorder()
    executor = pm.hook.inpaint_executor(config=Config(model="cv2", device="cpu", enable_gif=True), events=events)
    yield executor, events
    executor.close()


def task(**form: str) -> TaskRequest:
    files = {"image": encode(pixels(16, 16)), "mask": mask_bytes(16, 16, [(2, 2, 8, 8)])}
    return TaskRequest(kind="inpaint", name="cv2", form=default_form(**form), files=files, submitter="sid-1")


def test_hook_returns_a_local_executor_with_the_startup_model(setup):
    executor, _ = setup
    assert isinstance(executor, InpaintExecutor)
    assert executor.current_model() == "cv2"
    assert executor.image_plugins.names() == ["MakeGIF"]


def test_run_emits_processing_progress_completed_with_one_task_id(setup):
    executor, events = setup
    out = executor.run(task(sdSeed="5"))
    assert out.headers["X-Seed"] == "5"
    statuses = [e.status for e in events.events]
    assert statuses[0] == "processing" and statuses[-1] == "completed"
    assert len({e.task_id for e in events.events}) == 1
    assert all(e.submitter == "sid-1" and e.name == "cv2" for e in events.events)
    assert any(e.progress == 100.0 for e in events.events if e.status == "processing")


def test_failures_are_emitted_and_raised(setup):
    executor, events = setup
    with pytest.raises(ClientError):
        executor.run(task(ldmSteps="x"))
    assert events.events[-1].status == "failed"
    assert events.events[-1].error == "Invalid value for ldmSteps: x"


def test_switch_to_unsupported_keeps_current(setup):
    executor, _ = setup
    assert executor.switch_model("cv2") is False
    with pytest.raises(ModelNotSupported):
        executor.switch_model("sd1.5")
    assert executor.current_model() == "cv2"
    assert executor.run(task()).mimetype == "image/png"
