"""malloc_tuning: the thresholds go to mallopt and to the environment, unless the operator decided."""

from __future__ import annotations

import platform

import pytest

from lama_cleaner.plugins.distributed import malloc_tuning as mt


def recorder():
    calls: list[tuple[int, int]] = []

    def mallopt(param: int, value: int) -> int:
        calls.append((param, value))
        return 1

    return calls, mallopt


def test_sets_both_thresholds_in_process_and_environment():
    calls, mallopt = recorder()
    env: dict[str, str] = {}
    added = mt.tune_malloc(env, mallopt)
    assert calls == [(mt.M_MMAP_THRESHOLD, 32 * mt.MiB), (mt.M_TRIM_THRESHOLD, 256 * mt.MiB)]
    assert env == added == {"MALLOC_MMAP_THRESHOLD_": str(32 * mt.MiB), "MALLOC_TRIM_THRESHOLD_": str(256 * mt.MiB)}


def test_operator_settings_win_and_the_switch_turns_it_off():
    calls, mallopt = recorder()
    env = {"MALLOC_TRIM_THRESHOLD_": "1048576"}
    assert mt.tune_malloc(env, mallopt) == {"MALLOC_MMAP_THRESHOLD_": str(32 * mt.MiB)}
    assert env["MALLOC_TRIM_THRESHOLD_"] == "1048576" and calls == [(mt.M_MMAP_THRESHOLD, 32 * mt.MiB)]
    calls.clear()
    off = {mt.DISABLE_ENV: "0"}
    assert mt.tune_malloc(off, mallopt) == {} and calls == [] and off == {mt.DISABLE_ENV: "0"}


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_real_glibc_mallopt_accepts_the_values():
    env: dict[str, str] = {}
    assert set(mt.tune_malloc(env)) == {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"}
    mallopt = mt._glibc_mallopt()
    assert mallopt is not None
    assert mallopt(mt.M_MMAP_THRESHOLD, 32 * mt.MiB) == 1  # glibc's maximum on 64-bit is accepted
