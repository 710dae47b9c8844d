"""The built-in executor: hook wiring, current model, switch semantics and the events it emits."""

from __future__ import annotations

import pytest

from lama_cleaner.config import Config
from lama_cleaner.errors import ClientError, ModelNotSupported
from lama_cleaner.executor import InpaintExecutor
from lama_cleaner.inpaint_request import default_form
from lama_cleaner.tasks import TaskEvent, TaskRequest
from tests.support.waiting import wait_for

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


def test_inpaint_during_a_switch_uses_the_new_model_and_never_switches_back(pm):
    import threading

    import numpy as np

    from lama_cleaner.models.opencv import OpenCV2
    from lama_cleaner.plugins.hookspecs import hookimpl

    building, release = threading.Event(), threading.Event()

    class SlowBuild(OpenCV2):
        name = "slowbuild"

        def __init__(self, device, config):
            super().__init__(device, config)
            building.set()
            assert release.wait(timeout=20)

        def forward(self, image_rgb, mask, req):
            return np.zeros_like(image_rgb)  # recognisable: masked area turns black

    class Plugin:
        @hookimpl
        def register_models(self, registry):
            registry.register(SlowBuild)

    pm.register(Plugin())
    recorder = Recorder()
    executor = pm.hook.inpaint_executor(config=Config(model="cv2", device="cpu"), events=recorder)
    results = {}
    switcher = threading.Thread(target=lambda: results.update(switched=executor.switch_model("slowbuild")))
    switcher.start()
    assert building.wait(timeout=20)
    runner = threading.Thread(target=lambda: results.update(out=executor.run(task(hdStrategy="Original"))))
    runner.start()
    # The inpaint has started (and, in the old design, pinned the model name) while the switch is still building.
    wait_for(lambda: any(e.status == "processing" for e in recorder.events), 20, "inpaint started")
    release.set()
    switcher.join(timeout=20)
    runner.join(timeout=20)
    assert results["switched"] is True
    assert executor.current_model() == "slowbuild", "the inpaint must not switch back to the old model"
    from .images import decode

    out = np.asarray(decode(results["out"].body))
    assert out[2:8, 2:8].max() == 0, "ran on the new model"
    executor.close()
