"""ENGINE_CPUS / API_CPUS: how `make run` splits a CPU-only box between engine and API."""

from __future__ import annotations

import os

import pytest

from stack.cpus import format_cpus, parse_cpus, pin, split_cpus

TWO, EIGHT = frozenset({0, 1}), frozenset(range(8))


def test_parse_and_format_cpu_lists():
    assert parse_cpus("0-3,6") == {0, 1, 2, 3, 6}
    assert parse_cpus(" 5 ") == {5}
    assert format_cpus(frozenset({3, 1, 2})) == "1,2,3"
    for bad in ("", "3-1", "-1", "a"):
        with pytest.raises(ValueError):
            parse_cpus(bad)


def test_auto_gives_the_api_the_last_quarter_of_a_cpu_engines_box():
    assert split_cpus("auto", "auto", device="cpu", available=TWO) == ({0}, {1})
    assert split_cpus("auto", "auto", device="cpu", available=EIGHT) == (set(range(6)), {6, 7})


def test_auto_pins_nothing_for_a_gpu_engine_or_a_single_core():
    assert split_cpus("auto", "auto", device="cuda", available=EIGHT) == (None, None)
    assert split_cpus("auto", "auto", device="cpu", available=frozenset({0})) == (None, None)


def test_explicit_lists_and_all_are_taken_as_given():
    assert split_cpus("0-4", "all", device="cpu", available=EIGHT) == (set(range(5)), None)
    assert split_cpus("", "7", device="cuda", available=EIGHT) == (None, {7})
    with pytest.raises(ValueError, match="none of the CPUs"):
        split_cpus("12-13", "auto", device="cpu", available=EIGHT)


def test_pin_restricts_the_calling_process():
    pid = os.fork()
    if pid == 0:  # the child pins itself, as the launcher's children do before exec
        cpu = min(os.sched_getaffinity(0))
        pin(frozenset({cpu}))
        os._exit(0 if os.sched_getaffinity(0) == {cpu} else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
