"""Exceptions that cross layers, each carrying what the HTTP edge needs to answer well.

The classic routes turn these into short plain-text bodies (the front end shows them verbatim);
``/api/v1`` turns them into ``{"error": {"code", "message"}}``. Anything else that escapes is a bug
and is answered with a generic 500 by the server's last-resort handler.
"""

from __future__ import annotations


class LamaCleanerError(Exception):
    """Base class: ``status`` is the HTTP status, ``code`` a stable machine-readable name."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class ClientError(LamaCleanerError):
    """The request itself is wrong (missing field, undecodable image, bad value): never retried."""

    status = 400
    code = "bad_request"


class TooLarge(LamaCleanerError):
    """An image with more pixels than ``server.max_image_pixels`` (a decompression bomb, or simply too
    big to process): refused before its pixels are decoded. Not a ``ClientError`` on purpose: checks
    that skip uploads which are not images catch ``ClientError`` and must let this through."""

    status = 413
    code = "image_too_large"


class NotFound(LamaCleanerError):
    status = 404
    code = "not_found"


class ModelNotSupported(LamaCleanerError):
    """A model name that is known but cannot run on this server (e.g. the diffusion family)."""

    status = 403
    code = "model_not_supported"


class Overloaded(LamaCleanerError):
    """Capacity is exhausted; the client should come back after ``retry_after`` seconds."""

    status = 503
    code = "overloaded"

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InferenceError(LamaCleanerError):
    """The model failed while running (upstream answers 500 with the exception text)."""

    status = 500
    code = "inference_error"


OOM_MARKER = "CUDA out of memory. "
"""What torch's CUDA out-of-memory error text contains; such a failure is reported as :class:`OutOfMemory`."""


class OutOfMemory(InferenceError):
    code = "out_of_memory"

    def __init__(self, message: str = "CUDA out of memory") -> None:
        super().__init__(message)


class TaskFailed(LamaCleanerError):
    """A task failed for good after its attempts; ``traceback`` is what the last attempt recorded."""

    status = 500
    code = "task_failed"

    def __init__(self, message: str, traceback: str | None = None, *, status: int | None = None) -> None:
        super().__init__(message, status=status)
        self.traceback = traceback


class TaskCancelled(LamaCleanerError):
    status = 409
    code = "cancelled"

    def __init__(self, message: str = "Task was cancelled") -> None:
        super().__init__(message)


class TaskTimeout(LamaCleanerError):
    status = 504
    code = "timeout"
