"""CURVE key pairs as files: ``NAME.key`` (the public key, safe to copy anywhere) and
``NAME.key_secret`` (both keys, mode 0600, never leaves the machine that owns it).

The format is ZeroMQ's certificate text (ZPL), so ``zmq.auth.load_certificate`` and other ZeroMQ
tools read these files, and the allow-list is simply a folder of ``.key`` files. A setting that names
a public key may also hold the 40-character Z85 text itself, which is handy in a config file.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
import zmq.utils.z85

PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"
Z85_KEY_LENGTH = 40


class KeyFileError(RuntimeError):
    """A key file that is missing, unreadable or not a CURVE certificate (a RuntimeError, like the
    other start-up failures the commands and the plugin report in one line)."""


@dataclass(frozen=True)
class KeyPair:
    """A CURVE key pair as ZeroMQ wants it: Z85 bytes, 40 characters each."""

    public: bytes
    secret: bytes


def _certificate_text(public: bytes, secret: bytes | None, name: str) -> str:
    kind = "Secret" if secret is not None else "Public"
    lines = [
        f"#   ZeroMQ CURVE {kind} Certificate, written by `lama-cleaner keys generate {name}`",
        f"#   created {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
    ]
    if secret is not None:
        lines.append("#   Keep this file on its own machine, readable by its owner only.")
    lines += ["", "metadata", f'    name = "{name}"', "curve", f'    public-key = "{public.decode("ascii")}"']
    if secret is not None:
        lines.append(f'    secret-key = "{secret.decode("ascii")}"')
    return "\n".join(lines) + "\n"


def _write_new(path: Path, text: str, mode: int, *, force: bool) -> None:
    """Write ``text`` to ``path`` created with ``mode`` from the start (a secret is never readable
    by others, not even for a moment between a write and a chmod)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | (0 if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists (use --force to replace it)") from None
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(text)
    os.chmod(path, mode)  # an existing file replaced with --force keeps its old mode otherwise


def generate(directory: str | os.PathLike[str], name: str, *, force: bool = False) -> tuple[Path, Path]:
    """Create ``NAME.key`` (0644) and ``NAME.key_secret`` (0600) in ``directory``; returns their paths."""
    if not name or "/" in name or name.startswith("."):
        raise KeyFileError(f"key name must be a plain file name, got {name!r}")
    folder = Path(directory).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.curve_keypair()
    public_path = folder / f"{name}{PUBLIC_SUFFIX}"
    secret_path = folder / f"{name}{SECRET_SUFFIX}"
    _write_new(secret_path, _certificate_text(public, secret, name), 0o600, force=force)
    _write_new(public_path, _certificate_text(public, None, name), 0o644, force=force)
    return public_path, secret_path


def _is_z85_key(key: bytes) -> bool:
    if len(key) != Z85_KEY_LENGTH:
        return False
    try:
        zmq.utils.z85.decode(key)
    except (KeyError, ValueError):  # pyzmq raises KeyError for a character outside the alphabet
        return False
    return True


def _load(path: Path) -> tuple[bytes, bytes | None]:
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"cannot read CURVE key file {path}: {exc}") from None
    for key in (public, secret):
        if key is not None and not _is_z85_key(key):
            raise KeyFileError(f"{path} holds a key that is not {Z85_KEY_LENGTH} Z85 characters")
    return public, secret


def load_secret(path: str | os.PathLike[str]) -> KeyPair:
    """The key pair in a ``.key_secret`` file; refuses a file that others may read."""
    file = Path(path).expanduser()
    public, secret = _load(file)
    if secret is None:
        raise KeyFileError(f"{file} holds no secret key (give the .key_secret file, not the .key)")
    mode = file.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{file} is readable by other users (mode {stat.filemode(mode)}); run: chmod 600 {file}")
    return KeyPair(public, secret)


def load_public(value: str | os.PathLike[str]) -> bytes:
    """A public key from a ``.key`` (or ``.key_secret``) file, or given directly as Z85 text."""
    text = str(value)
    if len(text) == Z85_KEY_LENGTH and not Path(text).expanduser().exists():
        key = text.encode("ascii", "ignore")  # a non-ASCII character shortens it: refused below
        if not _is_z85_key(key):
            raise KeyFileError(f"{text!r} is neither a key file nor a Z85 public key")
        return key
    return _load(Path(text).expanduser())[0]
