"""Bearer tokens for ``/api/v1`` and for the routes plugins choose to protect (``require_scope``).

Why here, in the core: the task API, the monitor's pages and the autoscaler's actions must be
protected the same way, from one ``[server.tokens.<name>]`` table, and the plugins must not import
each other. A plugin decorates its view with :func:`require_scope`; what it needs is a scope name.

Without tokens configured nothing is checked, as before (a loopback server is only reachable from
its own machine); :func:`warn_if_exposed` then says so in one line when the server binds another
address. The classic routes stay open: the 1.2.5 front end cannot send a token (docs/security.md
shows how to put them behind a proxy).

A token's name is who it is: tasks submitted with it are owned by that name, and a ``tasks`` token
sees and cancels only those. ``admin`` implies every other scope and sees every task.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from flask import Flask, current_app, g, request

from ..config import TOKEN_SCOPES, Config, ConfigError, ServerSettings
from ..errors import LamaCleanerError

log = logging.getLogger(__name__)

EXTENSION_KEY = "lama_cleaner.auth"
ADMIN = "admin"
TASKS = "tasks"
METRICS = "metrics"

F = TypeVar("F", bound=Callable[..., Any])


class Unauthorized(LamaCleanerError):
    """No token, or one this server does not know: 401 with ``WWW-Authenticate: Bearer``."""

    status = 401
    code = "unauthorized"
    headers = {"WWW-Authenticate": 'Bearer realm="lama-cleaner"'}


class Forbidden(LamaCleanerError):
    """A known token without the scope the route needs."""

    status = 403
    code = "forbidden"


@dataclass(frozen=True)
class Caller:
    """Who sent the request: a token's name and scopes, or :data:`OPEN` when tokens are off."""

    name: str | None
    scopes: frozenset[str]

    def can(self, scope: str) -> bool:
        return ADMIN in self.scopes or scope in self.scopes

    @property
    def sees_every_task(self) -> bool:
        """An admin token, or no tokens at all: no owner filter applies."""
        return self.name is None or ADMIN in self.scopes

    @property
    def owner(self) -> str | None:
        """The owner recorded on the tasks this caller submits (None when tokens are off)."""
        return self.name


OPEN = Caller(name=None, scopes=frozenset(TOKEN_SCOPES))
"""The caller of every request while no token is configured: allowed everything, owns nothing."""


class TokenTable:
    """The configured secrets, compared in constant time; empty means authentication is off."""

    def __init__(self, callers: dict[str, Caller]) -> None:
        self._by_secret = {secret.encode("utf-8"): caller for secret, caller in callers.items()}

    @property
    def enabled(self) -> bool:
        return bool(self._by_secret)

    def lookup(self, secret: str) -> Caller | None:
        """The caller a presented secret belongs to. Every secret is compared (no early exit), so the
        time taken does not tell which one was close."""
        presented = secret.encode("utf-8", "replace")
        found = None
        for known, caller in self._by_secret.items():
            if hmac.compare_digest(known, presented):
                found = caller
        return found


def load_tokens(settings: ServerSettings) -> TokenTable:
    """Read ``[server.tokens]``, ``token_file`` secrets included (an unreadable file is a ConfigError)."""
    callers = {}
    for name, entry in settings.tokens.items():
        secret = entry.token
        if entry.token_file:
            path = Path(entry.token_file).expanduser()
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise ConfigError(f"server.tokens.{name}.token_file: cannot read {path}: {exc.strerror}") from exc
            secret = lines[0].strip() if lines else ""
            if len(secret) < 16:
                raise ConfigError(f"server.tokens.{name}.token_file: {path} must hold a secret of 16+ characters")
        callers[secret] = Caller(name=name, scopes=frozenset(entry.scopes))
    return TokenTable(callers)


def is_loopback(host: str) -> bool:
    """``127.0.0.1``, ``::1`` and ``localhost`` are reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def warn_if_exposed(config: Config, table: TokenTable) -> bool:
    """One warning line when the server listens beyond loopback with no token configured."""
    if table.enabled or is_loopback(config.host):
        return False
    log.warning(
        "listening on %s without API tokens: anyone who reaches this port can use /api/v1 and the plugins' "
        "protected routes (list, cancel, drain); add [server.tokens.<name>] to the config file "
        "(docs/security.md#api-tokens)",
        config.host,
    )
    return True


def install_auth(app: Flask, config: Config) -> TokenTable:
    """Keep the token table on ``app`` for :func:`current_caller` (called by ``create_app``)."""
    table = load_tokens(config.server)
    app.extensions[EXTENSION_KEY] = table
    warn_if_exposed(config, table)
    return table


def bearer_secret(authorization: str | None) -> str | None:
    """The secret of an ``Authorization: Bearer <secret>`` header value; None for anything else."""
    scheme, _, secret = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    return secret.strip()


def authorize(table: TokenTable | None, secret: str | None, scope: str) -> Caller:
    """Who presents ``secret``, if it may use ``scope``; else :class:`Unauthorized` or :class:`Forbidden`.

    The one check behind every protected door: Flask views (:func:`current_caller`), the monitor's
    Socket.IO feed and a standalone scheduler's metrics port. No table, or an empty one, is open."""
    if table is None or not table.enabled:
        return OPEN
    if secret is None:
        raise Unauthorized("This route needs a bearer token: send 'Authorization: Bearer <token>'")
    caller = table.lookup(secret)
    if caller is None:
        raise Unauthorized("Unknown API token")
    if not caller.can(scope):
        raise Forbidden(f"The token '{caller.name}' lacks the '{scope}' scope this route needs")
    return caller


def app_tokens(app: Flask) -> TokenTable | None:
    """The token table ``create_app`` installed on ``app`` (None on a bare Flask app)."""
    return app.extensions.get(EXTENSION_KEY)


def current_caller(scope: str) -> Caller:
    """The caller of this request if it may use ``scope``; else :class:`Unauthorized` or :class:`Forbidden`.

    An app without a token table (a plugin's routes on a bare Flask app in its tests) is open."""
    caller = authorize(app_tokens(current_app), bearer_secret(request.headers.get("Authorization")), scope)
    g.lama_cleaner_caller = caller
    return caller


def require_scope(scope: str) -> Callable[[F], F]:
    """Decorate a Flask view so that it runs only for a caller with ``scope`` (see the module doc).

    The refusal is a ``LamaCleanerError`` (401 or 403), so it takes the shape of the app's or the
    blueprint's error handlers: JSON under ``/api/v1``, plain text elsewhere.
    """
    if scope not in TOKEN_SCOPES:
        raise ValueError(f"unknown scope {scope!r}; choose one of {', '.join(TOKEN_SCOPES)}")

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            current_caller(scope)
            return view(*args, **kwargs)

        return guarded  # type: ignore[return-value]

    return decorate
