"""Task context on log lines: which task, queue, node and attempt a line is about."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from loguru import logger

TASK_FIELDS = ("task_id", "queue", "node", "attempt")
"""The context keys, the same whether set by :func:`task_context`, by ``logger.bind`` or as a standard-library
record's ``extra``; the JSON lines carry them as top-level fields, the text lines as ``[task=… queue=…]``."""


@contextmanager
def task_context(
    task_id: str, *, queue: str | None = None, node: str | None = None, attempt: int | None = None
) -> Iterator[None]:
    """Every line logged in this thread (or asyncio task) inside the block carries the task's context.

    Lines logged through the standard library inside the block carry it too: they pass through loguru in
    the same thread. A value given explicitly on a line (``extra=``) wins over the block's.
    """
    fields = {"task_id": task_id, "queue": queue, "node": node, "attempt": attempt}
    with logger.contextualize(**{k: v for k, v in fields.items() if v is not None}):
        yield
