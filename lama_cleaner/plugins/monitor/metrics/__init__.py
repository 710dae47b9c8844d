"""Scheduler snapshots, finished-task samples and HTTP timings -> Prometheus families and a JSON document.

``hub.MetricsHub`` is the entry point; ``names`` lists every metric, ``signals`` what alert rules read.
"""
