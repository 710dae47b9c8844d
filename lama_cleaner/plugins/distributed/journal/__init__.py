"""The scheduler's durable state: the SQLite journal (``task_store``) with its value types
(``records``), its in-memory index of unfinished tasks (``live_tasks``), large blobs as files
(``blob_files``) and the legal task state changes (``states``). No sockets; only the scheduler opens it.
"""
