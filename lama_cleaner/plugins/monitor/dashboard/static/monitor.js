/* The /monitor page: renders /api/v1/metrics documents, polled from the server or pushed over Socket.IO.
 *
 * Every value from the server is put into the page as text (textContent), never as HTML: an error message
 * or a node label can hold anything. Charts keep a fixed number of points, so a page left open for days
 * does not grow. */
(function () {
  "use strict";

  var MAX_POINTS = 720;
  var COLORS = ["#5aa9ff", "#3ecf8e", "#f2b84b", "#b48cff", "#4dd0e1", "#f48fb1", "#ff6b6b"];
  var state = { points: [], queueNames: "", charts: {}, last: null, renders: 0 };

  // ------------------------------------------------------------------ formatting
  function fmtSeconds(s) {
    if (s === null || s === undefined) return "–";
    if (s < 1) return Math.round(s * 1000) + " ms";
    if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + " s";
    var m = Math.floor(s / 60);
    if (m < 60) return m + "m " + String(Math.round(s % 60)).padStart(2, "0") + "s";
    return Math.floor(m / 60) + "h " + String(m % 60).padStart(2, "0") + "m";
  }
  function fmtRatio(r) {
    if (r === null || r === undefined) return "–";
    return (r * 100).toFixed(r > 0 && r < 0.1 ? 1 : 0) + " %";
  }
  function fmtNumber(n) {
    if (n === null || n === undefined || !isFinite(n)) return "–";
    return (Math.round(n * 10) / 10).toLocaleString("en-US");
  }
  function fmtAgo(ts, now) {
    if (!ts) return "–";
    var s = Math.max(0, now - ts);
    if (s < 1) return "just now";
    if (s < 60) return Math.round(s) + " s ago";
    return fmtSeconds(s) + " ago";
  }
  function shortId(id) {
    return id && id.length > 12 ? id.slice(0, 8) + "…" : id || "–";
  }

  // ------------------------------------------------------------------ DOM
  function el(tag, opts, children) {
    var e = document.createElement(tag);
    opts = opts || {};
    if (opts.cls) e.className = opts.cls;
    if (opts.text !== undefined && opts.text !== null) e.textContent = String(opts.text);
    if (opts.title) e.title = String(opts.title);
    if (opts.data) Object.keys(opts.data).forEach(function (k) { e.dataset[k] = String(opts.data[k]); });
    (children || []).forEach(function (c) { e.appendChild(c); });
    return e;
  }
  function cell(text, cls, title) {
    return el("td", { text: text, cls: cls, title: title });
  }
  function badge(text, cls) {
    return el("span", { cls: "badge " + cls, text: text });
  }
  function fillTable(id, rows) {
    var tbody = document.querySelector("#" + id + " tbody");
    tbody.replaceChildren.apply(tbody, rows);
    var empty = document.getElementById(id + "-empty");
    if (empty) empty.hidden = rows.length > 0;
  }
  function setText(id, text, bad) {
    var node = document.getElementById(id);
    node.textContent = text;
    node.classList.toggle("bad", !!bad);
  }

  // ------------------------------------------------------------------ points and rates
  function pointFromDocument(doc) {
    var queues = {};
    doc.queues.forEach(function (q) { queues[q.name] = q.queued; });
    var all = doc.latency.all;
    return {
      time: doc.time,
      queues: queues,
      finished_total: Object.assign({}, doc.tasks.finished_total),
      run_p50_s: all.run_p50_s,
      run_p95_s: all.run_p95_s,
      wait_p95_s: all.wait_p95_s
    };
  }
  function addPoint(point) {
    var last = state.points[state.points.length - 1];
    if (last && point.time <= last.time) return false;
    state.points.push(point);
    if (state.points.length > MAX_POINTS) state.points.shift();
    return true;
  }
  /* Tasks per minute between consecutive points (null where a counter went back: a restart). */
  function rates(status) {
    return state.points.map(function (p, i) {
      if (i === 0) return null;
      var prev = state.points[i - 1];
      var minutes = (p.time - prev.time) / 60;
      var delta = (p.finished_total[status] || 0) - (prev.finished_total[status] || 0);
      return minutes > 0 && delta >= 0 ? delta / minutes : null;
    });
  }

  // ------------------------------------------------------------------ charts
  function axes() {
    var common = { stroke: "#8b96a5", grid: { stroke: "#223044", width: 1 }, ticks: { stroke: "#223044", width: 1 } };
    return [Object.assign({}, common), Object.assign({ size: 48 }, common)];
  }
  /* series: [{label, color?}]; colours default to the palette in order. */
  function makeChart(id, series) {
    var host = document.getElementById(id);
    host.replaceChildren();
    if (!window.uPlot) return null;
    var opts = {
      width: Math.max(200, host.clientWidth),
      height: 160,
      series: [{}].concat(series.map(function (s, i) {
        var color = s.color || COLORS[i % COLORS.length];
        return { label: s.label, stroke: color, width: 2, spanGaps: true, points: { show: false } };
      })),
      axes: axes(),
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(1, (max || 0) * 1.15)]; } } },
      legend: { show: true, live: false },
      cursor: { points: { show: false } }
    };
    var data = [[]].concat(series.map(function () { return []; }));
    return new window.uPlot(opts, data, host);
  }
  function ensureCharts(queueNames) {
    var key = queueNames.join("\u0000");
    if (!state.charts.depth || key !== state.queueNames) {
      if (state.charts.depth) state.charts.depth.destroy();
      var labels = queueNames.length ? queueNames : ["queued"];
      state.charts.depth = makeChart("chart-depth", labels.map(function (n) { return { label: n }; }));
      state.queueNames = key;
    }
    if (!state.charts.throughput) {
      state.charts.throughput = makeChart("chart-throughput", [
        { label: "completed", color: "#3ecf8e" },
        { label: "failed", color: "#ff6b6b" }
      ]);
    }
    if (!state.charts.latency) {
      state.charts.latency = makeChart("chart-latency", [
        { label: "run p50", color: "#5aa9ff" },
        { label: "run p95", color: "#b48cff" },
        { label: "wait p95", color: "#f2b84b" }
      ]);
    }
  }
  function updateCharts() {
    var names = {};
    state.points.forEach(function (p) { Object.keys(p.queues).forEach(function (n) { names[n] = true; }); });
    var queueNames = Object.keys(names).sort();
    ensureCharts(queueNames);
    var xs = state.points.map(function (p) { return p.time; });
    var depth = (queueNames.length ? queueNames : ["-"]).map(function (n) {
      return state.points.map(function (p) { return n in p.queues ? p.queues[n] : null; });
    });
    var latency = ["run_p50_s", "run_p95_s", "wait_p95_s"].map(function (k) {
      return state.points.map(function (p) { return p[k]; });
    });
    if (state.charts.depth) state.charts.depth.setData([xs].concat(depth));
    if (state.charts.throughput) state.charts.throughput.setData([xs, rates("completed"), rates("failed")]);
    if (state.charts.latency) state.charts.latency.setData([xs].concat(latency));
  }
  function resizeCharts() {
    ["depth", "throughput", "latency"].forEach(function (name) {
      var chart = state.charts[name];
      if (chart) chart.setSize({ width: Math.max(200, chart.root.parentNode.clientWidth), height: 160 });
    });
  }

  // ------------------------------------------------------------------ tables
  function nodeRows(doc) {
    return doc.nodes.map(function (n) {
      var progress = el("td");
      if (n.current_task && n.progress !== null && n.progress !== undefined) {
        var pct = Math.max(0, Math.min(100, n.progress));
        var bar = el("span", { cls: "bar" }, [el("span")]);
        bar.firstChild.style.width = pct + "%";
        progress.appendChild(bar);
        progress.appendChild(document.createTextNode(Math.round(pct) + " %"));
      } else {
        progress.textContent = "–";
      }
      var stateCell = el("td", {}, [badge(n.state, "state-" + n.state)]);
      return el("tr", { cls: n.state === "offline" ? "offline" : "", data: { node: n.node_id, state: n.state } }, [
        cell(n.name || n.node_id, "mono", n.node_id),
        stateCell,
        cell(n.queues.join(", ") || "–"),
        cell(n.device || "–"),
        cell(n.loaded_models.join(", ") || "–"),
        cell(shortId(n.current_task), "mono", n.current_task),
        progress,
        cell(fmtSeconds(n.heartbeat_age_s), "num"),
        cell(fmtNumber(n.tasks_done), "num")
      ]);
    });
  }
  function alertRows(doc) {
    return doc.alerts.map(function (a) {
      var labels = Object.keys(a.labels).filter(function (k) { return k !== "alertname" && k !== "severity"; })
        .map(function (k) { return k + "=" + a.labels[k]; }).join(" ");
      var name = el("td", {}, [el("div", { text: a.rule }), el("div", { cls: "mono muted-inline", text: labels })]);
      var since = a.state === "resolved" ? a.ends_at : (a.fired_at || a.active_since);
      return el("tr", { cls: a.state === "resolved" ? "resolved" : "", data: { alert: a.rule, state: a.state } }, [
        el("td", {}, [badge(a.severity, "sev-" + a.severity)]),
        name,
        cell(a.summary),
        cell(a.state),
        cell(fmtAgo(since, doc.time), "num")
      ]);
    });
  }
  function failureRows(doc) {
    return doc.recent_failures.map(function (f) {
      return el("tr", { data: { task: f.task_id } }, [
        cell(fmtAgo(f.finished_at, doc.time)),
        cell(shortId(f.task_id), "mono", f.task_id),
        cell(f.queue + " / " + f.name),
        cell(f.node_id || "–", "mono"),
        el("td", { cls: "wrap" }, [el("div", { cls: "error-text", text: f.error || "(no message)", title: f.error })])
      ]);
    });
  }
  function queueRows(doc) {
    var figures = {};
    doc.latency.queues.forEach(function (f) { figures[f.queue] = f; });
    return doc.queues.map(function (q) {
      var f = figures[q.name] || {};
      return el("tr", { data: { queue: q.name } }, [
        cell(q.name),
        cell(fmtNumber(q.queued), "num"),
        cell(fmtNumber(q.running), "num"),
        cell(fmtSeconds(q.oldest_queued_age_s), "num"),
        cell(fmtNumber(q.unschedulable), "num"),
        cell(fmtSeconds(f.wait_p95_s), "num"),
        cell(fmtSeconds(f.run_p50_s), "num"),
        cell(fmtSeconds(f.run_p95_s), "num"),
        cell(fmtRatio(f.failure_ratio), "num")
      ]);
    });
  }

  // ------------------------------------------------------------------ one document
  function render(doc) {
    state.last = doc;
    state.renders += 1;
    var status = document.getElementById("status");
    if (doc.scheduler.present && !doc.scheduler.up) {
      status.className = "pill pill-bad";
      status.textContent = "scheduler unreachable";
      status.title = doc.scheduler.error || "";
      status.dataset.state = "down";
    } else {
      status.className = "pill pill-ok";
      status.textContent = "live";
      status.title = "";
      status.dataset.state = "live";
    }
    document.getElementById("updated").textContent = "updated " + new Date(doc.time * 1000).toLocaleTimeString();

    var queued = 0, running = 0;
    doc.queues.forEach(function (q) { queued += q.queued; running += q.running; });
    var online = doc.nodes.filter(function (n) { return n.state !== "offline"; }).length;
    var firing = doc.alerts.filter(function (a) { return a.state === "firing"; }).length;
    addPoint(pointFromDocument(doc));
    var completedRates = rates("completed");
    setText("tile-queued", fmtNumber(queued));
    setText("tile-running", fmtNumber(running));
    setText("tile-nodes", online + " / " + doc.nodes.length, online < doc.nodes.length);
    setText("tile-throughput", fmtNumber(completedRates[completedRates.length - 1]));
    setText("tile-failures", fmtRatio(doc.latency.all.failure_ratio), doc.latency.all.failure_ratio > 0);
    setText("tile-p95", fmtSeconds(doc.latency.all.run_p95_s));
    setText("tile-alerts", String(firing), firing > 0);

    fillTable("nodes", nodeRows(doc));
    fillTable("alerts", alertRows(doc));
    fillTable("failures", failureRows(doc));
    fillTable("queues", queueRows(doc));
    updateCharts();
  }

  function disconnected(error) {
    var status = document.getElementById("status");
    status.className = "pill pill-bad";
    status.textContent = "no connection";
    status.title = String(error);
    status.dataset.state = "offline";
  }

  // With API tokens on the server, open the page as /monitor#token=<secret>: the fragment never leaves the
  // browser (no server log, no Referer), and the page sends it as a bearer token with each request.
  function pageToken() {
    var match = /(?:^#|&)token=([^&]*)/.exec(window.location.hash || "");
    return match ? decodeURIComponent(match[1]) : "";
  }

  function fetchJSON(url) {
    var headers = { Accept: "application/json" };
    if (pageToken()) headers.Authorization = "Bearer " + pageToken();
    return fetch(url, { cache: "no-store", headers: headers }).then(function (r) {
      if (!r.ok) throw new Error(url + " answered " + r.status);
      return r.json();
    });
  }

  function start() {
    var body = document.body.dataset;
    var pollMs = Number(body.pollMs || 0);
    window.addEventListener("resize", resizeCharts);
    var history = body.history
      ? fetchJSON(body.history).then(function (h) { (h.points || []).forEach(addPoint); updateCharts(); })
      : Promise.resolve();
    history.catch(function () { /* no history: the charts start with the first document */ }).then(function () {
      if (pollMs > 0 && body.feed) {
        var tick = function () {
          fetchJSON(body.feed).then(render).catch(disconnected).then(function () { setTimeout(tick, pollMs); });
        };
        tick();
      }
      if (body.snapshotEvent && window.io) {
        var socket = window.io();
        socket.on("connect", function () {
          socket.emit(body.subscribeEvent, { token: pageToken() }, function (ack) {
            if (ack && ack.ok === false) disconnected(ack.error);
          });
        });
        socket.on(body.snapshotEvent, render);
        socket.on("disconnect", function () { disconnected("Socket.IO disconnected"); });
      }
    });
  }

  window.LamaMonitor = {
    render: render,
    addPoint: addPoint,
    pointFromDocument: pointFromDocument,
    points: function () { return state.points.slice(); },
    renders: function () { return state.renders; }
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
