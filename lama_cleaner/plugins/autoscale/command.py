"""``lama-cleaner scale QUEUE =N|+N|-N``: a manual scaling decision through a running server's HTTP API.

It talks to ``POST /api/v1/queues/<queue>/scale`` of the server given by ``--server`` (default
``$LAMA_CLEANER_SERVER`` or ``http://127.0.0.1:8080``), so it works wherever the autoscaler runs (in
the web server or beside a standalone scheduler). Without a change it prints the queue's state
from ``GET /api/v1/autoscale``. Exit status: 0 done, 1 refused or unreachable, 2 usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from ...command import Command

DEFAULT_SERVER = "http://127.0.0.1:8080"
SERVER_ENV = "LAMA_CLEANER_SERVER"
TOKEN_ENV = "LAMA_CLEANER_TOKEN"
"""The same variable ``lama_cleaner.client`` (and so ``lama-cleaner batch``) reads."""


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="lama-cleaner scale",
        description="Scale an autoscaled queue now (=N nodes, +N more, -N fewer), or show its state.",
        epilog="Example: lama-cleaner scale gpu +2 --server http://10.0.0.5:8080",
    )
    ap.add_argument("queue", help="A queue with an [autoscale.queues.<queue>] table.")
    ap.add_argument("change", nargs="?", default=None, help="=N, +N or -N (omit it to show the queue's state).")
    ap.add_argument(
        "--server",
        default=os.environ.get(SERVER_ENV) or DEFAULT_SERVER,
        metavar="URL",
        help=f"The lama-cleaner server (default: ${SERVER_ENV}, else {DEFAULT_SERVER}).",
    )
    ap.add_argument(
        "--token",
        default=None,
        metavar="TOKEN",
        help="Bearer token with the admin scope, for a server with [server.tokens] (default: $LAMA_CLEANER_TOKEN).",
    )
    ap.add_argument("--timeout", type=float, default=30.0, metavar="S", help="HTTP timeout (default: %(default)s).")
    ap.add_argument("--json", action="store_true", help="Print the server's JSON answer.")
    return ap


def scale_main(argv: Sequence[str] | None = None) -> int:
    import requests

    from .decisions import ScaleRequest

    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.change is not None:
        try:
            ScaleRequest.parse(args.change)
        except ValueError as exc:
            parser.error(str(exc))
    base = args.server.rstrip("/")
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV, "").strip()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        if args.change is None:
            response = requests.get(f"{base}/api/v1/autoscale", headers=headers, timeout=args.timeout)
        else:
            url = f"{base}/api/v1/queues/{requests.utils.quote(args.queue, safe='')}/scale"
            response = requests.post(url, json={"nodes": args.change}, headers=headers, timeout=args.timeout)
    except requests.RequestException as exc:
        print(f"lama-cleaner scale: cannot reach {base}: {exc}", file=sys.stderr)
        return 1
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400 or not isinstance(body, dict):
        error = (body or {}).get("error", {}) if isinstance(body, dict) else {}
        message = error.get("message") or response.text[:200] or response.reason
        print(f"lama-cleaner scale: {response.status_code} {message}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(body, indent=1))
    elif args.change is None:
        print(_queue_text(args.queue, body))
    else:
        print(_outcome_text(body.get("outcome") or {}))
    return 0


def _outcome_text(outcome: dict[str, Any]) -> str:
    """``scale_up queue=cpu +2: manual =3 -> started 2 on local`` (the reason, then what happened)."""
    parts = [str(outcome.get("reason") or outcome.get("action") or "no change")]
    started = outcome.get("started") or {}
    if started:
        parts.append("started " + ", ".join(f"{n} on {p}" for p, n in started.items()))
    if outcome.get("drained"):
        parts.append("draining " + ", ".join(outcome["drained"]))
    if outcome.get("shortfall"):
        parts.append(f"short by {outcome['shortfall']}")
    if outcome.get("errors"):
        parts.append("errors: " + "; ".join(outcome["errors"]))
    return " -> ".join(parts)


def _queue_text(queue: str, status: dict[str, Any]) -> str:
    state = (status.get("queues") or {}).get(queue)
    if state is None:
        scaled = ", ".join(sorted(status.get("queues") or {})) or "none"
        return f"{queue}: not autoscaled (autoscaled: {scaled})"
    held = f"; held: {state['held']}" if state.get("held") else ""
    providers = ", ".join(state.get("providers", []))
    return (
        f"{queue}: {state.get('nodes')} node(s), wants {state.get('wanted')}, {state.get('pending')} starting "
        f"(min {state.get('min_nodes')}, max {state.get('max_nodes')}, providers {providers})"
        f"{held}"
    )


COMMANDS = (Command("scale", "scale an autoscaled queue now: =N, +N or -N nodes (autoscale plugin)", scale_main),)
