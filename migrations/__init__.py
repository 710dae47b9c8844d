"""The task journal's SQL migrations (``NNNN_name.sql``), applied in order by ``TaskStore``.

This folder stays at the top of the repository (one source of truth for the schema) and is
installed as the package ``lama_cleaner.migrations`` (see ``setup.py``), so that an installed
wheel carries its migrations and ``task_store.default_migrations_dir`` finds them with
``importlib.resources``.
"""
