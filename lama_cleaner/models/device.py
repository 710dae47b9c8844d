"""Turning ``--device`` into a usable torch device string, shared by the CLI, the server and nodes.

Kept free of a hard torch dependency: ``cpu`` needs no torch at all, so the cv2 model and the
distributed system run on machines without it.
"""

from __future__ import annotations

import re
import sys

from ..config import ConfigError

CUDA_MISSING = "--device cuda was requested but CUDA is not available (torch missing or no GPU); use --device cpu"
MPS_MISSING = (
    "--device mps was requested but MPS is not available (torch missing or not Apple silicon); use --device cpu"
)
_CUDA_RE = re.compile(r"^cuda(?::(\d+))?$")


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def resolve_device(requested: str) -> str:
    """Validate ``requested`` (``cpu``, ``mps``, ``cuda`` or ``cuda:N``) and return it normalised.

    Raises ``ConfigError`` with an operator-facing message when the device cannot be used here, instead
    of failing later inside a model load.
    """
    device = (requested or "cpu").strip().lower()
    if device == "cpu":
        return "cpu"
    if device == "mps":
        torch = _torch()
        mps = getattr(getattr(torch, "backends", None), "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError(MPS_MISSING)
        return "mps"
    match = _CUDA_RE.match(device)
    if not match:
        raise ConfigError(f"unknown device {requested!r}: use cpu, cuda, cuda:N or mps")
    torch = _torch()
    if torch is None or not torch.cuda.is_available():
        raise ConfigError(CUDA_MISSING)
    if match.group(1) is not None:
        index = int(match.group(1))
        count = torch.cuda.device_count()
        if index >= count:
            raise ConfigError(f"--device {device} was requested but only {count} CUDA device(s) are available")
    return device


def has_cuda() -> bool:
    """True when torch is installed and sees a CUDA device (used for resource classes of nodes)."""
    torch = _torch()
    return bool(torch is not None and torch.cuda.is_available())


def torch_gc() -> None:
    """Free cached CUDA memory after a request, as upstream does; a no-op unless torch is already loaded."""
    torch = sys.modules.get("torch")
    if torch is None:
        return
    try:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.ipc_collect()
    except Exception:  # never let cleanup turn a good reply into an error
        pass
