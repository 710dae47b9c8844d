"""The ``/monitor`` page: a Flask blueprint and its static files (page, script, styles, vendored uPlot)."""
