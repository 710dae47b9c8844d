"""Test-only probe of a pipelined node, enabled on a node with ``--plugins
tests.support.fake_models,tests.support.pipeline_probe``.

It wraps ``imaging.decode_image`` (the pipeline looks it up on the module at each call) so that the
inference process records when each image decoding starts and ends, next to the model-call lines
of ``fake_models``' ``probe-pipe`` model, in ``LAMA_TEST_PIPE_FILE``: ``decode-start <thread>
<time.monotonic()>`` and ``decode-end ...``. Decoding comes before the model sees the task's
prompt, so these lines name the thread instead of a marker. A task's own decoding ends before its
model call starts, so a decode that lies inside a model call is always another task's.
"""

from __future__ import annotations

import threading
from typing import Any

from lama_cleaner import imaging
from lama_cleaner.plugins.hookspecs import hookimpl
from tests.support.fake_models import record_event

_original_decode = imaging.decode_image


def _recording_decode(*args: Any, **kwargs: Any) -> Any:
    who = threading.current_thread().name
    record_event("decode-start", who)
    try:
        return _original_decode(*args, **kwargs)
    finally:
        record_event("decode-end", who)


@hookimpl
def register_models(registry: Any) -> None:
    """Not a model: the hook every process that runs models calls, the moment to wrap the decoder."""
    imaging.decode_image = _recording_decode
