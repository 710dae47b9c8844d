"""HTTP request counters and durations, by route template and status, on a tiny real Flask app."""

from __future__ import annotations

from flask import Flask, abort

from lama_cleaner.plugins.monitor.config import MonitorConfig
from lama_cleaner.plugins.monitor.metrics.hub import MetricsHub
from tests.unit.monitor.exposition import parse_exposition, value


def make_app(hub: MetricsHub) -> Flask:
    app = Flask(__name__)

    @app.before_request
    def refuse_secret():  # answers before the view: the request must still be counted
        from flask import request

        if request.path == "/secret":
            return "no", 401
        return None

    @app.get("/tasks/<task_id>")
    def task(task_id: str):
        if task_id == "missing":
            abort(404)
        return {"id": task_id}

    @app.post("/tasks")
    def submit():
        return {"id": "new"}, 202

    @app.get("/boom")
    def boom():
        raise RuntimeError("a bug")

    @app.get("/secret")
    def secret():
        return "never reached"

    hub.http.install(app)
    return app


def test_requests_are_counted_by_route_template_and_status() -> None:
    hub = MetricsHub(MonitorConfig(http_buckets_s=[0.1, 1.0]), None, process_metrics=False)
    client = make_app(hub).test_client()
    for task_id in ("a", "b", "c"):
        assert client.get(f"/tasks/{task_id}").status_code == 200
    assert client.get("/tasks/missing").status_code == 404
    assert client.post("/tasks").status_code == 202
    assert client.get("/nowhere/at/all").status_code == 404
    assert client.get("/boom").status_code == 500
    assert client.get("/secret").status_code == 401

    s = parse_exposition(hub.exposition()[0].decode())
    requests = {k: v for k, v in s.items() if k[0] == "lama_cleaner_http_requests_total"}
    got = {tuple(v for _, v in labels): n for (_, labels), n in requests.items()}
    assert got == {
        ("GET", "/tasks/<task_id>", "200"): 3,  # one series for every task id
        ("GET", "/tasks/<task_id>", "404"): 1,
        ("POST", "/tasks", "202"): 1,
        ("GET", "unmatched", "404"): 1,
        ("GET", "/boom", "500"): 1,
        ("GET", "/secret", "401"): 1,
    }
    assert value(s, "lama_cleaner_http_request_duration_seconds_count", method="GET", route="/tasks/<task_id>") == 4
    assert (
        value(s, "lama_cleaner_http_request_duration_seconds_bucket", method="GET", route="/tasks/<task_id>", le="+Inf")
        == 4
    )
    # Each took well under 1 s on a test client, so the 1.0 bucket already holds all of them.
    assert value(s, "lama_cleaner_http_request_duration_seconds_bucket", method="POST", route="/tasks", le="1.0") == 1


def test_the_same_figures_are_in_the_json_document() -> None:
    hub = MetricsHub(MonitorConfig(http_buckets_s=[0.1, 1.0]), None, process_metrics=False)
    client = make_app(hub).test_client()
    client.get("/tasks/a")
    client.get("/tasks/a")
    doc = hub.document()
    assert doc["http"] == [{"method": "GET", "route": "/tasks/<task_id>", "status": "200", "count": 2}]
    (series,) = doc["histograms"]["http_request_duration_seconds"]
    assert series["labels"] == {"method": "GET", "route": "/tasks/<task_id>"}
    assert series["count"] == 2 and series["buckets"][-1] == ["+Inf", 2]
    assert [b for b, _ in series["buckets"]] == [0.1, 1.0, "+Inf"]
