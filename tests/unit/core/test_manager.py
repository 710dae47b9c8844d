"""ModelManager: switches without gaps, failed switches keep the old model, inference is serialised."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from lama_cleaner import pipeline
from lama_cleaner.config import Config
from lama_cleaner.errors import InferenceError, ModelNotSupported, TaskCancelled
from lama_cleaner.image_plugins.registry import ImagePluginRegistry
from lama_cleaner.inpaint_request import default_form
from lama_cleaner.models.base import InpaintModel
from lama_cleaner.models.manager import ModelManager
from lama_cleaner.models.opencv import OpenCV2
from lama_cleaner.models.registry import ModelRegistry
from lama_cleaner.models.unsupported import SD15
from lama_cleaner.tasks import TaskRequest
from tests.support.waiting import wait_for

from .images import decode, encode, mask_bytes, pixels


class Broken(InpaintModel):
    name = "broken"
    resource_class = "cpu"

    def __init__(self, device, config):
        raise RuntimeError("weights are corrupt")


class Witness(InpaintModel):
    """Records which model was still loaded while it was being built."""

    name = "witness"
    resource_class = "cpu"
    manager: ModelManager | None = None
    seen_loaded: list[str | None] = []

    def __init__(self, device, config):
        super().__init__(device, config)
        Witness.seen_loaded.append(Witness.manager.loaded_model())


class Unsafe(InpaintModel):
    """Keeps per-call state on the instance (like upstream's shared pipelines) and counts overlap."""

    name = "unsafe"
    resource_class = "cpu"
    pad_mod = 1
    supports_hd = False
    active = 0
    max_active = 0
    guard = threading.Lock()

    def forward(self, image_rgb, mask, req):
        with Unsafe.guard:
            Unsafe.active += 1
            Unsafe.max_active = max(Unsafe.max_active, Unsafe.active)
        self.current = image_rgb.copy()
        time.sleep(0.002)  # widens the window in which an unserialised caller would overwrite self.current
        out = self.current[:, :, ::-1].copy()
        with Unsafe.guard:
            Unsafe.active -= 1
        return out


def manager(*classes, exclusive: bool = False) -> ModelManager:
    registry = ModelRegistry()
    for cls in (OpenCV2, SD15, *classes):
        registry.register(cls)
    return ModelManager(registry, Config(model="cv2", device="cpu"), "cpu", exclusive=exclusive)


def test_switch_to_same_model_is_a_no_op():
    m = manager()
    assert m.switch("cv2") is True
    assert m.switch("cv2") is False
    assert m.name == "cv2" and m.loaded_model() == "cv2"


def test_failed_switch_keeps_the_old_model():
    m = manager(Broken)
    m.switch("cv2")
    old = m.get()
    with pytest.raises(InferenceError, match="^Failed to load model broken: weights are corrupt$"):
        m.switch("broken")
    assert m.loaded_model() == "cv2" and m.get() is old


def test_unknown_and_unsupported_names():
    m = manager()
    m.switch("cv2")
    with pytest.raises(ModelNotSupported) as err:
        m.switch("nope")
    assert str(err.value) == "nope not implemented" and err.value.status == 403
    with pytest.raises(ModelNotSupported, match=r"^sd1\.5 is not supported by this server yet \(diffusion"):
        m.switch("sd1.5")
    assert m.loaded_model() == "cv2"


def test_new_model_is_built_before_the_old_one_is_dropped():
    m = manager(Witness)
    Witness.manager, Witness.seen_loaded = m, []
    m.switch("cv2")
    m.switch("witness")
    assert Witness.seen_loaded == ["cv2"]
    assert m.loaded_model() == "witness"


class WarmsUp(InpaintModel):
    """Records, when it is warmed up, whether the manager already offers it (it must not yet)."""

    name = "warms-up"
    resource_class = "cpu"
    manager: ModelManager | None = None
    loaded_while_warming: list[str | None] = []
    fail = False

    def warm_up(self):
        WarmsUp.loaded_while_warming.append(WarmsUp.manager.loaded_model())
        if WarmsUp.fail:
            raise RuntimeError("CUDA error: out of memory")


def test_a_model_is_warmed_up_once_before_it_is_offered(caplog):
    m = manager(WarmsUp)
    WarmsUp.manager, WarmsUp.loaded_while_warming, WarmsUp.fail = m, [], False
    m.switch("cv2")
    m.switch("warms-up")
    m.get("warms-up")
    assert WarmsUp.loaded_while_warming == ["cv2"], "once, while the previous model was still the one served"


def test_a_failed_warm_up_is_logged_and_the_model_still_loads(caplog):
    m = manager(WarmsUp)
    WarmsUp.manager, WarmsUp.loaded_while_warming, WarmsUp.fail = m, [], True
    assert m.switch("warms-up") is True
    assert m.loaded_model() == "warms-up"
    assert "warming up model warms-up failed (its first request pays the start-up costs): CUDA error" in caplog.text


def test_get_loads_on_demand_and_keeps_one_model():
    m = manager(Witness)
    Witness.manager, Witness.seen_loaded = m, []
    assert m.loaded_model() is None
    assert isinstance(m.get("witness"), Witness)
    assert isinstance(m.get("cv2"), OpenCV2)
    assert m.loaded_model() == "cv2"


def test_concurrent_requests_are_serialised_and_never_mix():
    m = manager(Unsafe)
    Unsafe.active = Unsafe.max_active = 0
    config = Config(model="unsafe", device="cpu")
    n = 16
    images = [pixels(12, 12, seed=i) for i in range(n)]
    results: list[bytes | None] = [None] * n
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def worker(i: int) -> None:
        task = TaskRequest(
            kind="inpaint",
            name="unsafe",
            form=default_form(sdSeed="1"),
            files={"image": encode(images[i]), "mask": mask_bytes(12, 12, [(0, 0, 12, 12)])},
        )
        try:
            start.wait(timeout=10)
            out = pipeline.execute_task(task, models=m, image_plugins=ImagePluginRegistry(), config=config)
            results[i] = out.body
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert Unsafe.max_active == 1, "inference on one model must never overlap"
    for i, body in enumerate(results):
        assert body is not None
        np.testing.assert_array_equal(np.asarray(decode(body)), images[i], err_msg=f"request {i} got another image")


def test_a_task_waiting_for_an_exclusive_device_leaves_when_cancelled():
    """A pipelined node's child: one task in its model call, another waiting for the device. The
    waiting one sees its cancel without waiting for the call, and ``holds_device`` tells the two
    apart (the node kills the process only for a task inside an uninterruptible call)."""
    m = manager(exclusive=True)
    release, inside = threading.Event(), threading.Event()
    idents: dict[str, int] = {}
    cancel = threading.Event()
    outcome: list[BaseException | None] = []

    def running_task() -> None:
        idents["running"] = threading.get_ident()
        with m.running("cv2"):
            inside.set()
            release.wait(timeout=30)

    def waiting_task() -> None:
        idents["waiting"] = threading.get_ident()
        try:
            with m.running("cv2", cancel.is_set):
                outcome.append(None)
        except TaskCancelled as exc:
            outcome.append(exc)

    first = threading.Thread(target=running_task)
    first.start()
    assert inside.wait(timeout=30)
    second = threading.Thread(target=waiting_task)
    second.start()
    wait_for(lambda: "waiting" in idents, 10, "the waiting task to start")
    assert m.holds_device(idents["running"]) and not m.holds_device(idents["waiting"])
    assert not m.holds_device(None)
    cancel.set()
    second.join(timeout=10)
    assert not second.is_alive() and isinstance(outcome[0], TaskCancelled), outcome
    assert first.is_alive(), "the model call went on undisturbed"
    release.set()
    first.join(timeout=10)
    assert not m.holds_device(idents["running"])


def test_a_task_cancelled_before_it_takes_a_free_device_never_enters_the_model():
    m = manager(exclusive=True)
    with pytest.raises(TaskCancelled):
        with m.running("cv2", lambda: True):
            pytest.fail("the model was entered after the cancel")
    with m.running("cv2") as model:  # the device was released
        assert model.name == "cv2"


class Closable(InpaintModel):
    """Like LaMa: ``close`` drops the weights, so a call after it fails. Records when it was closed."""

    name = "closable"
    resource_class = "cpu"
    pad_mod = 1
    supports_hd = False
    closed: list[Closable] = []

    def __init__(self, device, config):
        super().__init__(device, config)
        self.weights: str | None = "weights"

    def forward(self, image_rgb, mask, req):
        if self.weights is None:
            raise RuntimeError("'NoneType' object is not callable")
        return np.ascontiguousarray(image_rgb[:, :, ::-1])

    def close(self):
        self.weights = None
        Closable.closed.append(self)


def _run_once(model: InpaintModel) -> None:
    image = pixels(8, 8, seed=3)
    mask = np.full((8, 8), 255, np.uint8)
    from lama_cleaner.inpaint_request import InpaintRequest

    model(image, mask, InpaintRequest.from_form(default_form()))


def test_a_switch_closes_the_old_model_only_after_its_running_calls_end():
    """``POST /model`` while another user's request runs on the old model (classic mode): the request
    finishes on the old model, which is closed when it ends, not under it (a closed LaMa raised
    ``'NoneType' object is not callable``)."""
    m = manager(Closable)
    Closable.closed = []
    m.switch("closable")
    inside, release = threading.Event(), threading.Event()
    outcome: list[BaseException | None] = []

    def request() -> None:
        try:
            with m.running() as model:
                inside.set()
                release.wait(timeout=30)
                _run_once(model)
            outcome.append(None)
        except BaseException as exc:  # reported below
            outcome.append(exc)

    thread = threading.Thread(target=request)
    thread.start()
    assert inside.wait(timeout=30)
    assert m.switch("cv2")
    assert m.loaded_model() == "cv2"
    assert Closable.closed == [], "the old model was closed under a running call"
    release.set()
    thread.join(timeout=30)
    assert outcome == [None]
    assert len(Closable.closed) == 1, "the old model is closed once its last call ended"


def test_a_replaced_model_nobody_uses_is_closed_by_the_switch():
    m = manager(Closable)
    Closable.closed = []
    m.switch("closable")
    with m.running():
        pass
    m.switch("cv2")
    assert len(Closable.closed) == 1
    m.switch("closable")
    m.close()
    assert len(Closable.closed) == 2


class SlowToBuild(InpaintModel):
    """A model whose load waits for ``release`` (weights downloading)."""

    name = "slow-to-build"
    resource_class = "cpu"
    building = threading.Event()
    release = threading.Event()

    def __init__(self, device, config):
        super().__init__(device, config)
        SlowToBuild.building.set()
        assert SlowToBuild.release.wait(timeout=30)


def test_a_call_ending_does_not_wait_for_a_switch_still_building_its_model():
    m = manager(Closable, SlowToBuild)
    Closable.closed = []
    SlowToBuild.building.clear()
    SlowToBuild.release.clear()
    m.switch("closable")
    ended = threading.Event()

    def request() -> None:
        with m.running() as model:
            assert SlowToBuild.building.wait(timeout=30)
            _run_once(model)
        ended.set()

    caller = threading.Thread(target=request)
    caller.start()
    switcher = threading.Thread(target=m.switch, args=("slow-to-build",))
    switcher.start()
    try:
        assert ended.wait(timeout=10), "the call's end waited for the switch's build"
        assert Closable.closed == [], "still current while the new model builds"
    finally:
        SlowToBuild.release.set()
        switcher.join(timeout=30)
        caller.join(timeout=30)
    assert m.loaded_model() == "slow-to-build"
    assert len(Closable.closed) == 1, "the switch closed the model nobody used any more"


def test_the_cuda_cache_is_freed_after_a_task_only_when_no_other_call_runs(monkeypatch):
    """Emptying the cache waits for the device while holding the allocator: a call inside ``running``
    (a pipelined node's next task, a concurrent classic request) would stall mid-forward. A task that
    ends beside one leaves the cache; the last to end frees it."""
    from lama_cleaner.models import manager as manager_module

    freed: list[str] = []
    monkeypatch.setattr(manager_module, "torch_gc", lambda: freed.append("gc"))
    m = manager()
    task = TaskRequest(
        kind="inpaint",
        name="cv2",
        form=default_form(),
        files={"image": encode(pixels(12, 12)), "mask": mask_bytes(12, 12, [(2, 2, 6, 6)])},
    )

    def execute() -> None:
        pipeline.execute_task(task, models=m, image_plugins=ImagePluginRegistry(), config=Config(device="cpu"))

    execute()
    assert freed == ["gc"], "alone, a task frees the cache after it, as upstream does"

    inside, release = threading.Event(), threading.Event()

    def other_call() -> None:
        with m.running("cv2"):
            inside.set()
            release.wait(timeout=30)
        m.release_cache()  # as execute_task does when it ends

    other = threading.Thread(target=other_call)
    other.start()
    try:
        assert inside.wait(timeout=30)
        execute()  # cv2 is thread-safe: this task runs and ends while the other call is inside its model
        assert freed == ["gc"], "the cache was emptied under another call"
    finally:
        release.set()
        other.join(timeout=30)
    assert freed == ["gc", "gc"], "the last call to end frees it"
