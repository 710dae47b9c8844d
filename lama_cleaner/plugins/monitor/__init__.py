"""The ``monitor`` plugin: task-flow logs (loguru), Prometheus metrics, the ``/monitor`` dashboard and alerts.

Sub-packages, one concern each: ``config`` (the ``[monitor]`` section), ``logs`` (loguru set-up per process
role), ``metrics`` (scheduler snapshots -> Prometheus families and the ``/api/v1/metrics`` JSON), ``alerts``
(rules as a pure state machine, an APScheduler evaluation job, sinks) and ``dashboard`` (the page and its
static assets).
"""
