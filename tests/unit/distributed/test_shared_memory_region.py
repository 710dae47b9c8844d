"""``wire.shared_memory.SharedRegion``: what a node offers, what a scheduler agrees to map, and the
bounds every reference is held to. Real memfds, mapped across a real second process where it matters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import pytest

from lama_cleaner.plugins.distributed.wire.shared_memory import (
    HEADER_BYTES,
    MAGIC,
    SharedMemoryRefused,
    SharedRegion,
    supported,
)

pytestmark = pytest.mark.skipif(not supported(), reason="needs memfd_create and /proc (Linux)")

AREA = 64 * 1024


@pytest.fixture
def region():
    made = SharedRegion.create(2, AREA)
    yield made
    made.close()


def test_another_process_maps_the_offer_reads_the_inputs_and_writes_a_result(region: SharedRegion):
    refs = region.write_inputs(1, {"image": b"i" * 40_000, "mask": b"m" * 100})
    assert refs == {"image": [0, 40_000], "mask": [40_000, 100]}
    child = """
import json, sys
from lama_cleaner.plugins.distributed.wire.shared_memory import SharedRegion
region = SharedRegion.attach(json.loads(sys.argv[1]), int(sys.argv[2]))
files = region.read_inputs(1, json.loads(sys.argv[3]))
assert files == {"image": b"i" * 40_000, "mask": b"m" * 100}, files.keys()
print(region.write_output(1, b"result:" + files["mask"]))
"""
    args = [sys.executable, "-c", child, json.dumps(region.offer()), str(os.getpid()), json.dumps(refs)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    length = int(done.stdout)
    assert region.read_output(1, length) == b"result:" + b"m" * 100


def test_files_or_a_result_larger_than_an_area_are_not_written(region: SharedRegion):
    assert region.write_inputs(0, {"image": b"x" * AREA, "mask": b"y"}) is None
    assert region.write_output(0, b"x" * (AREA + 1)) is None
    assert region.write_output(0, b"x" * AREA) == AREA


@pytest.mark.parametrize(
    "ref",
    [[0, AREA + 1], [AREA, 1], [-1, 4], [0, -1], ["0", 4], [0], [True, 4], None, "0,4"],
)
def test_a_reference_outside_its_area_or_malformed_is_refused(region: SharedRegion, ref):
    with pytest.raises(ValueError):
        region.read_inputs(0, {"image": ref})


@pytest.mark.parametrize("slot", [-1, 2, "0", None, True])
def test_a_slot_that_does_not_exist_is_refused(region: SharedRegion, slot):
    with pytest.raises(ValueError):
        region.read_output(slot, 1)
    with pytest.raises(ValueError):
        region.write_output(slot, b"x")


def test_one_slots_areas_do_not_overlap_anothers(region: SharedRegion):
    region.write_inputs(0, {"a": b"0" * AREA})
    region.write_output(0, b"1" * AREA)
    region.write_inputs(1, {"a": b"2" * AREA})
    region.write_output(1, b"3" * AREA)
    assert region.read_inputs(0, {"a": [0, AREA]})["a"] == b"0" * AREA
    assert region.read_output(0, AREA) == b"1" * AREA
    assert region.read_inputs(1, {"a": [0, AREA]})["a"] == b"2" * AREA
    assert region.read_output(1, AREA) == b"3" * AREA


def test_an_offer_naming_another_process_or_a_wrong_token_is_refused(region: SharedRegion):
    offer = region.offer()
    with pytest.raises(SharedMemoryRefused, match="not a descriptor of the offering process"):
        SharedRegion.attach(offer, os.getpid() + 1)
    with pytest.raises(SharedMemoryRefused, match="token"):
        SharedRegion.attach({**offer, "token": "00" * 16}, os.getpid())
    with pytest.raises(SharedMemoryRefused, match="size"):
        SharedRegion.attach({**offer, "slots": 1}, os.getpid())
    for bad in ({**offer, "path": "/etc/passwd"}, {**offer, "token": "zz"}, {**offer, "area_bytes": 100}, None, {}):
        with pytest.raises(SharedMemoryRefused):
            SharedRegion.attach(bad, os.getpid())


def test_an_ordinary_file_with_the_right_first_bytes_is_not_mapped():
    with tempfile.TemporaryFile() as fh:
        token = os.urandom(16)
        fh.write(MAGIC + token)
        fh.truncate(HEADER_BYTES + 2 * AREA)
        fh.flush()
        offer = {"path": f"/proc/{os.getpid()}/fd/{fh.fileno()}", "token": token.hex(), "slots": 1, "area_bytes": AREA}
        with pytest.raises(SharedMemoryRefused, match="not a shared region"):
            SharedRegion.attach(offer, os.getpid())


def test_sizes_out_of_range_are_refused_when_made():
    with pytest.raises(SharedMemoryRefused):
        SharedRegion.create(0, AREA)
    with pytest.raises(SharedMemoryRefused):
        SharedRegion.create(17, AREA)
    with pytest.raises(SharedMemoryRefused):
        SharedRegion.create(1, 2 * 1024 * 1024 * 1024)
