"""``lama-cleaner keys generate NAME`` and ``lama-cleaner keys show FILE``.

Examples::

    lama-cleaner keys generate scheduler --dir ~/.config/lama-cleaner/keys
    lama-cleaner keys generate gpu-box-1 --dir ./keys     # copy gpu-box-1.key into the allow-list
    lama-cleaner keys show ./keys/gpu-box-1.key           # the Z85 public key, for a config file
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

DEFAULT_DIR = "~/.config/lama-cleaner/keys"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="lama-cleaner keys", description="CURVE keys of the scheduler and its peers.")
    sub = ap.add_subparsers(dest="action", required=True)
    gen = sub.add_parser("generate", help="write NAME.key (public) and NAME.key_secret (mode 0600)")
    gen.add_argument("name", help="file name of the pair, e.g. scheduler or the node's host name")
    gen.add_argument("--dir", default=DEFAULT_DIR, help="folder to write to (default: %(default)s)")
    gen.add_argument("--force", action="store_true", help="replace an existing pair of that name")
    show = sub.add_parser("show", help="print the Z85 public key of a .key or .key_secret file")
    show.add_argument("file")
    return ap


def keys_main(argv: Sequence[str] | None = None) -> int:
    from .key_files import KeyFileError, generate, load_public

    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        if args.action == "generate":
            public, secret = generate(args.dir, args.name, force=args.force)
            print(f"public key: {public}  ({load_public(public).decode('ascii')})")
            print(f"secret key: {secret}  (mode 0600; keep it on this machine)")
            return 0
        print(load_public(args.file).decode("ascii"))
        return 0
    except KeyFileError as exc:
        print(f"lama-cleaner keys: error: {exc}", file=sys.stderr)
        return 1
