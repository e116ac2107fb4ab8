"""The allocator setting: both glibc thresholds, or none; the command line turns it on."""

from __future__ import annotations

import platform
import sys

import pytest

from pplevelset import cli, memory


class FakeLibc:
    def __init__(self, accepts: set[int]):
        self.accepts, self.calls = accepts, []

        def mallopt(parameter: int, value: int) -> int:
            self.calls.append((parameter, value))
            return int(parameter in self.accepts)

        self.mallopt = mallopt


def fake_libc(monkeypatch, accepts: set[int]) -> FakeLibc:
    libc = FakeLibc(accepts)
    monkeypatch.setattr(memory.sys, "platform", "linux")
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda name: libc)
    return libc


def test_sets_the_mmap_threshold_then_the_trim_threshold(monkeypatch):
    libc = fake_libc(monkeypatch, {memory.M_MMAP_THRESHOLD, memory.M_TRIM_THRESHOLD})
    assert memory.keep_freed_memory()
    assert libc.calls == [
        (memory.M_MMAP_THRESHOLD, memory.MMAP_THRESHOLD),
        (memory.M_TRIM_THRESHOLD, memory.TRIM_THRESHOLD),
    ]


def test_never_sets_the_trim_threshold_alone(monkeypatch):
    """On its own the trim threshold pins the mmap threshold low: slower than glibc's default."""
    libc = fake_libc(monkeypatch, {memory.M_TRIM_THRESHOLD})
    assert not memory.keep_freed_memory()
    assert libc.calls == [(memory.M_MMAP_THRESHOLD, memory.MMAP_THRESHOLD)]


def test_changes_nothing_without_glibc(monkeypatch):
    def missing(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(memory.sys, "platform", "linux")
    monkeypatch.setattr(memory.ctypes, "CDLL", missing)
    assert not memory.keep_freed_memory()
    monkeypatch.setattr(memory.sys, "platform", "darwin")
    assert not memory.keep_freed_memory()


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_takes_on_this_glibc():
    assert memory.keep_freed_memory()


def test_the_command_line_turns_it_on(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append(True) or True)
    assert cli.main(["worlds"]) == 0
    assert calls == [True]
