"""Which model a node preloads (``node.warm.preload_model``): pure choice over the offered models."""

from __future__ import annotations

from dataclasses import dataclass

from lama_cleaner.plugins.distributed.node.warm import load_in_child, preload_model


@dataclass
class _Model:
    downloaded: bool = True

    def is_downloaded(self, config) -> bool:
        return self.downloaded


class _Registry:
    def __init__(self, **models: _Model) -> None:
        self.models = models

    def get(self, name: str) -> _Model:
        return self.models[name]


@dataclass
class _Config:
    model: str = "lama"


REGISTRY = _Registry(lama=_Model(downloaded=False), cv2=_Model(), sleep=_Model())


def test_auto_prefers_the_start_up_model_when_offered_and_on_disk():
    assert preload_model("auto", ["lama", "cv2", "sleep"], REGISTRY, _Config(model="sleep")) == "sleep"


def test_auto_never_preloads_a_model_that_would_need_a_download():
    assert preload_model("auto", ["lama", "cv2"], REGISTRY, _Config(model="lama")) == "cv2"
    assert preload_model("auto", ["lama"], REGISTRY, _Config(model="lama")) is None


def test_a_named_model_is_preloaded_only_when_offered_and_none_turns_it_off():
    assert preload_model("lama", ["lama", "cv2"], REGISTRY, _Config()) == "lama"
    assert preload_model("sleep", ["lama", "cv2"], REGISTRY, _Config()) is None
    assert preload_model("none", ["cv2"], REGISTRY, _Config(model="cv2")) is None
    assert preload_model("auto", [], REGISTRY, _Config()) is None


def test_a_failed_preload_is_not_fatal():
    class Failing:
        def switch(self, name):
            raise RuntimeError("no weights")

    load_in_child(Failing(), "lama")  # logged, not raised
