"""``lama-cleaner batch`` as a real subprocess against a real server (and with its own embedded one).

Interrupting a batch and running it again must not redo finished images (outputs untouched, and the
``count`` model proves every image ran exactly once, in-flight ones included thanks to idempotency
keys); failures must give a non-zero exit and a summary naming each failed image and why.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from lama_cleaner.batch import JOURNAL_NAME, MANIFEST_NAME
from tests.integration.api.helpers import mask_png, png, start_distributed_server
from tests.support.server_process import REPO_ROOT, ServerProcess, server_env
from tests.support.waiting import wait_for

N_IMAGES = 8


@pytest.fixture(scope="module")
def count_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("batch-count") / "count.txt"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, count_file: Path) -> Iterator[ServerProcess]:
    srv = start_distributed_server(
        tmp_path_factory.mktemp("batch-server"),
        "--local-nodes",
        "2",
        env={"LAMA_TEST_COUNT_FILE": str(count_file), "LAMA_TEST_COUNT_MS": "300"},
    )
    try:
        wait_for(
            lambda: (
                len(
                    [
                        n
                        for n in requests.get(srv.url + "/api/v1/nodes", timeout=5).json()["nodes"]
                        if n["state"] == "idle"
                    ]
                )
                == 2
            ),
            60,
            "two idle local nodes",
        )
        yield srv
    finally:
        srv.stop()


def _images(folder: Path, n: int = N_IMAGES, seed: int = 100) -> Path:
    """``n`` distinct images; a different ``seed`` gives different bytes, hence new idempotency keys."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"img{i:02d}.png").write_bytes(png(seed=seed + i))
    return folder


def _batch(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "lama_cleaner", "batch", "--quiet", *args],
        cwd=REPO_ROOT,
        env=server_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run(*args: str, timeout: float = 180) -> tuple[int, str, str]:
    proc = _batch(*args)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _outputs(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.png")} if folder.exists() else {}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_interrupted_batch_resumes_without_redoing_work(
    tmp_path: Path, server: ServerProcess, count_file: Path, sig: signal.Signals
):
    count_file.unlink(missing_ok=True)
    inp, out, mask = _images(tmp_path / "in", seed=1000 * int(sig)), tmp_path / "out", tmp_path / "mask.png"
    mask.write_bytes(mask_png())
    args = [
        "--input",
        str(inp),
        "--mask",
        str(mask),
        "--output",
        str(out),
        "--server",
        server.url,
        "--model",
        "count",
        "--field",
        "prompt=batch",
        "--concurrency",
        "2",
    ]
    first = _batch(*args)
    try:
        wait_for(lambda: len(_outputs(out)) >= 3 or first.poll() is not None, 60, "three outputs")
        assert first.poll() is None, "the batch finished before it could be interrupted"
        first.send_signal(sig)
        _, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    if sig == signal.SIGINT:
        assert first.returncode == 130, err
        assert "run the same command again to resume" in err
    else:
        assert first.returncode == -signal.SIGKILL
    finished = _outputs(out)
    assert 3 <= len(finished) < N_IMAGES
    manifest = json.loads((out / MANIFEST_NAME).read_text())["images"]
    assert {name for name, e in manifest.items() if e["status"] == "done"} <= set(finished)
    assert not list(out.glob(".*.part")) or sig == signal.SIGKILL, "a clean stop leaves no temp files"

    code, stdout, err = _run(*args)
    assert code == 0, (stdout, err)
    assert f"skipped: {len(finished)}" in stdout and "failed: 0" in stdout
    after = _outputs(out)
    assert set(after) == {f"img{i:02d}.png" for i in range(N_IMAGES)}
    assert {name: after[name] for name in finished} == finished, "finished outputs were rewritten"
    runs = count_file.read_text().split()
    assert len(runs) == N_IMAGES, f"each image must run exactly once, got {len(runs)} runs"
    manifest = json.loads((out / MANIFEST_NAME).read_text())["images"]
    assert all(e["status"] == "done" for e in manifest.values()) and len(manifest) == N_IMAGES


def test_failures_give_nonzero_exit_and_a_summary(tmp_path: Path, server: ServerProcess):
    inp, out, mask = _images(tmp_path / "in", 2), tmp_path / "out", tmp_path / "mask.png"
    mask.write_bytes(mask_png(48, 32))
    (inp / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not really a png")
    (inp / "big.png").write_bytes(png(64, 64))
    args = ["--input", str(inp), "--mask", str(mask), "--output", str(out), "--server", server.url, "--model", "cv2"]
    code, stdout, err = _run(*args)
    assert code == 1, (stdout, err)
    assert "done: 2  skipped: 0  failed: 2" in stdout
    assert re.search(r"failed big\.png: Mask shape\(32, 48\) not queal to Image shape\(64, 64\)", stdout), stdout
    assert re.search(r"failed corrupt\.png: \S", stdout), stdout
    assert set(_outputs(out)) == {"img00.png", "img01.png"}
    manifest = json.loads((out / MANIFEST_NAME).read_text())["images"]
    assert manifest["corrupt.png"]["status"] == "failed" and manifest["big.png"]["error"]

    code, stdout, _ = _run(*args)  # failed images are tried again; done ones are not
    assert code == 1 and "done: 0  skipped: 2  failed: 2" in stdout


def test_mask_folder_pairs_masks_by_stem(tmp_path: Path, server: ServerProcess):
    inp, out, masks = _images(tmp_path / "in", 3), tmp_path / "out", tmp_path / "masks"
    masks.mkdir()
    (masks / "img00.png").write_bytes(mask_png())
    (masks / "img01.png").write_bytes(mask_png())
    code, stdout, err = _run(
        "--input", str(inp), "--mask", str(masks), "--output", str(out), "--server", server.url, "--model", "cv2"
    )
    assert code == 1, (stdout, err)
    assert "done: 2  skipped: 0  failed: 1" in stdout and "failed img02.png: no mask named img02.*" in stdout


def test_embedded_server_is_started_and_stopped(tmp_path: Path):
    inp, out, mask = _images(tmp_path / "in", 3), tmp_path / "out", tmp_path / "mask.png"
    mask.write_bytes(mask_png())
    code, stdout, err = _run(
        "--input", str(inp), "--mask", str(mask), "--output", str(out), "--model", "cv2", "--device", "cpu"
    )
    assert code == 0, (stdout, err)
    assert "done: 3  skipped: 0  failed: 0" in stdout
    assert len(_outputs(out)) == 3 and not (out / JOURNAL_NAME).exists()
    url = re.search(r"embedded server on (http://\S+)", err)
    assert url, err
    with pytest.raises(requests.ConnectionError):
        requests.get(url.group(1) + "/model", timeout=5)


def test_unreachable_server_fails_each_image_after_retries(tmp_path: Path):
    inp, out, mask = _images(tmp_path / "in", 1), tmp_path / "out", tmp_path / "mask.png"
    mask.write_bytes(mask_png())
    code, stdout, _ = _run(
        "--input",
        str(inp),
        "--mask",
        str(mask),
        "--output",
        str(out),
        "--server",
        "http://127.0.0.1:9",
        "--retries",
        "1",
    )
    assert code == 1 and "failed img00.png: submit failed after 1 retries" in stdout


@pytest.mark.parametrize(("extra", "expected"), [((), 2), (("--priority", "7"), 7)], ids=["default", "option"])
def test_batch_tasks_are_submitted_at_the_batch_priority(
    tmp_path: Path, server: ServerProcess, extra: tuple[str, ...], expected: int
):
    inp, out, mask = _images(tmp_path / "in", 2, seed=500 + expected), tmp_path / "out", tmp_path / "mask.png"
    mask.write_bytes(mask_png())
    code, stdout, err = _run(
        "--input", str(inp), "--mask", str(mask), "--output", str(out), "--server", server.url, "--model", "cv2", *extra
    )
    assert code == 0, (stdout, err)
    manifest = json.loads((out / MANIFEST_NAME).read_text())["images"]
    tasks = [requests.get(f"{server.url}/api/v1/tasks/{e['task_id']}", timeout=10).json() for e in manifest.values()]
    assert [t["priority"] for t in tasks] == [expected, expected], tasks
