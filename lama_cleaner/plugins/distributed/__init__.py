"""The ``distributed`` plugin: a ZeroMQ scheduler with a SQLite journal, worker nodes, and the web
server's side of both. ``plugin.py`` and ``cli.py`` are its face; the folders hold one role each
(``wire``, ``journal``, ``scheduler``, ``node``, ``producer``; see ``docs/architecture.md``).
"""
