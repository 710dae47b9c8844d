"""CURVE key pairs for the security tests: one folder of pairs and an allow-list folder.

``KeyRing(tmp_path)`` writes a ``scheduler`` pair and any client pairs asked for with the real
``key_files.generate``; ``allow(name)`` / ``revoke(name)`` copy or remove a client's ``.key`` in the
allow-list folder (what an operator does), and ``client(name)`` is a socket set-up that makes a
DEALER that client.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

from lama_cleaner.plugins.distributed.security.curve import ClientKeys
from lama_cleaner.plugins.distributed.security.key_files import generate, load_public, load_secret


class KeyRing:
    def __init__(self, root: Path, clients: tuple[str, ...] = ()) -> None:
        self.dir = root / "keys"
        self.allowed = root / "allowed"
        self.allowed.mkdir(parents=True, exist_ok=True)
        generate(self.dir, "scheduler")
        for name in clients:
            self.add(name)

    def add(self, name: str) -> None:
        generate(self.dir, name)

    def public(self, name: str) -> str:
        return load_public(self.dir / f"{name}.key").decode("ascii")

    def secret_file(self, name: str) -> str:
        return str(self.dir / f"{name}.key_secret")

    def allow(self, name: str) -> None:
        shutil.copy(self.dir / f"{name}.key", self.allowed / f"{name}.key")

    def revoke(self, name: str) -> None:
        (self.allowed / f"{name}.key").unlink()

    def scheduler_settings(self) -> dict[str, Any]:
        """``[distributed]`` settings of a CURVE scheduler that allows the keys in ``allowed``."""
        return {"curve_secret_key": self.secret_file("scheduler"), "curve_authorized_keys": str(self.allowed)}

    def client_settings(self, name: str) -> dict[str, Any]:
        """``[distributed]`` settings of a node or remote web server holding the pair ``name``."""
        return {"curve_secret_key": self.secret_file(name), "curve_server_key": str(self.dir / "scheduler.key")}

    def client(self, name: str) -> Callable[[zmq.Socket], None]:
        """Socket set-up: CURVE client ``name`` of this ring's scheduler."""
        keys = ClientKeys(load_secret(self.secret_file(name)), load_public(self.dir / "scheduler.key"))
        return keys.apply
