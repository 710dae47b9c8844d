"""The monitor's running parts in one process, assembled from the settings, started and stopped together.

- the metrics hub (always), read by the routes, the live feed and the alert engine;
- the alert engine with the configured sinks (and any from the ``alert_sinks`` hook), only in the process
  that owns the alerts: the one running the scheduler. A web server that reads a standalone scheduler
  evaluates the rules for its own dashboard only, so notifications are sent once per deployment;
- the web routes (``/metrics``, ``/api/v1/metrics``, ``/monitor``), HTTP timing and the Socket.IO live feed,
  in a web server;
- the standalone scheduler's own metrics server, when ``metrics_port`` is set.
"""

from __future__ import annotations

from collections.abc import Sequence

from flask import Flask
from flask_socketio import SocketIO

from ...server.auth import TokenTable
from .alerts.engine import AlertEngine
from .alerts.rules import rules_from_config
from .alerts.sinks import AlertSink
from .alerts.sinks.configured import configured_sinks
from .alerts.sinks.dashboard import DashboardSink
from .alerts.state import AlertTracker
from .config import MonitorConfig
from .dashboard.blueprint import monitor_blueprint
from .dashboard.live import LiveFeed
from .metrics.hub import MetricsHub, StatsSource
from .metrics.routes import metrics_blueprint
from .metrics.server import MetricsServer

LIVE_INTERVAL_S = 2.0


class MonitorRuntime:
    """Build with the settings and a way to read the scheduler (``None`` where this process has none)."""

    def __init__(
        self,
        config: MonitorConfig,
        stats: StatsSource | None,
        *,
        owns_alerts: bool = True,
        extra_sinks: Sequence[AlertSink] = (),
        tokens: TokenTable | None = None,
    ) -> None:
        self.config = config
        self.tokens = tokens  # the standalone metrics port checks them (the web routes use the app's)
        self.hub = MetricsHub(config, stats)
        self.dashboard: DashboardSink | None = None
        self.engine: AlertEngine | None = None
        self.server: MetricsServer | None = None
        self.live: LiveFeed | None = None
        self.started = False
        if stats is None:
            return  # no scheduler here: nothing to alert on
        sinks = [*configured_sinks(config), *extra_sinks] if owns_alerts else [DashboardSink()]
        self.dashboard = next((s for s in sinks if isinstance(s, DashboardSink)), None)
        if self.dashboard is not None:
            self.hub.alerts = self.dashboard.current
        tracker = AlertTracker(rules_from_config(config), config.repeat_interval_s)
        self.engine = AlertEngine(tracker, self.hub.signals, sinks, config.evaluation_interval_s)

    def install(self, app: Flask, socketio: SocketIO | None = None) -> None:
        """Add the routes, HTTP timing and (with ``socketio``) the live feed to a web server.

        May come after :meth:`start` (an embedded scheduler starts before the web routes are added): the live
        feed then starts at once.
        """
        if self.config.metrics:
            app.register_blueprint(metrics_blueprint(self.hub))
        app.register_blueprint(monitor_blueprint(live=socketio is not None, poll_ms=0 if socketio else 2000))
        self.hub.http.install(app)
        if socketio is not None:
            self.live = LiveFeed(socketio, self.hub.document, LIVE_INTERVAL_S).register()
            if self.started:
                self.live.start()

    def start(self, *, metrics_port: bool = False) -> MonitorRuntime:
        """Start the alert job, the live feed and (``metrics_port``: a standalone scheduler) the metrics server."""
        if metrics_port and self.config.metrics and self.config.metrics_port:
            self.server = MetricsServer(
                self.hub, self.config.metrics_host, self.config.metrics_port, tokens=self.tokens
            ).start()
        if self.engine is not None:
            self.engine.start()
        if self.live is not None:
            self.live.start()
        self.started = True
        return self

    def stop(self) -> None:
        """Stop what ``start`` started; safe to call twice."""
        if self.live is not None:
            self.live.stop()
        if self.engine is not None:
            self.engine.stop()
        if self.server is not None:
            self.server.stop()
            self.server = None
        self.started = False
