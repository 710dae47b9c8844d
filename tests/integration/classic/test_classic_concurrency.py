"""Classic mode runs a thread-safe model (cv2) for concurrent requests at the same time, as 1.2.5 does,
and serialises a model that is not thread-safe (issue 11, item 4). Real HTTP requests from threads
against a real server; the probe models record when each model call starts and ends."""

from __future__ import annotations

import threading

import requests

from tests.support.waiting import wait_for

from .media_helpers import image_bytes, mask_bytes, post_inpaint

CALLS = 4


def _intervals(path, name):
    starts, ends = [], []
    for line in path.read_text().splitlines():
        model, event, at = line.split()
        if model == name:
            (starts if event == "start" else ends).append(float(at))
    assert len(starts) == len(ends) == CALLS, path.read_text()
    return list(zip(sorted(starts), sorted(ends), strict=True))


def _post_concurrently(url, prompt):
    image, mask = image_bytes(64, 48, seed=1), mask_bytes(64, 48, box=(10, 10, 30, 30))
    replies: list[requests.Response] = []
    threads = [
        threading.Thread(target=lambda: replies.append(post_inpaint(url, image, mask, form={"prompt": prompt})))
        for _ in range(CALLS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert [r.status_code for r in replies] == [200] * CALLS, [r.text for r in replies]
    # Every reply is the same image: the concurrent calls did not disturb each other.
    assert len({r.content for r in replies}) == 1


def test_thread_safe_model_calls_overlap_and_others_are_serialised(server_factory, tmp_path):
    record = tmp_path / "calls.txt"
    record.write_text("")
    server = server_factory("--plugins", "tests.support.overlap_models", env={"LAMA_TEST_PROBE_FILE": str(record)})

    assert requests.post(server.url + "/model", data={"name": "probe-cv2"}, timeout=60).status_code == 200
    # Each call waits until all of them have started: that can only happen if they run at once.
    _post_concurrently(server.url, f"wait={CALLS}")
    calls = _intervals(record, "probe-cv2")
    last_start = max(start for start, _ in calls)
    assert all(end >= last_start for _, end in calls), f"cv2 calls did not all overlap: {calls}"

    assert requests.post(server.url + "/model", data={"name": "probe-serial"}, timeout=60).status_code == 200
    _post_concurrently(server.url, "ms=150")
    calls = _intervals(record, "probe-serial")
    for (_, end), (next_start, _) in zip(calls, calls[1:], strict=False):
        assert next_start >= end, f"calls of a model that is not thread-safe overlapped: {calls}"


def test_a_model_switch_does_not_break_a_request_running_on_the_old_model(server_factory, tmp_path):
    """``POST /model`` from one user while another user's request runs: the request finishes on the
    model it started with (which the switch closes once the call ends), the switch succeeds, and the
    next request runs on the new model. (Closing under the running call failed it with a 500.)"""
    started = tmp_path / "started.txt"
    started.write_text("")
    server = server_factory(
        "--plugins", "tests.support.fake_models", model="count", env={"LAMA_TEST_COUNT_START_FILE": str(started)}
    )
    image, mask = image_bytes(64, 48, seed=2), mask_bytes(64, 48, box=(10, 10, 30, 30))
    replies: list[requests.Response] = []
    request = threading.Thread(
        target=lambda: replies.append(post_inpaint(server.url, image, mask, form={"prompt": "1500 running"}))
    )
    request.start()
    wait_for(lambda: "running" in started.read_text(), 30, "the request to be inside its model call")
    switched = requests.post(server.url + "/model", data={"name": "cv2"}, timeout=60)
    assert switched.status_code == 200, switched.text
    request.join(timeout=60)
    assert [r.status_code for r in replies] == [200], [r.text for r in replies]
    assert requests.get(server.url + "/model", timeout=10).text == "cv2"
    assert post_inpaint(server.url, image, mask).status_code == 200
