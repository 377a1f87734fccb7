"""The lock file the standalone processes share (``harness/standalone/process.py``)."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

import pytest

from harness.standalone.process import LockHeld, hold_lock


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_a_lock_is_held_once_and_names_its_holder(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    fd = hold_lock(path)
    try:
        assert path.read_text(encoding="utf-8") == f"{os.getpid()}\n"
        before = open_fds()
        with pytest.raises(LockHeld, match=r"x\.lock"):
            hold_lock(path)  # another descriptor: flock refuses it as another process's
        assert open_fds() == before  # the refused descriptor was closed
    finally:
        os.close(fd)
    os.close(hold_lock(path))  # released with its descriptor


def test_a_lock_that_fails_otherwise_leaks_no_descriptor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(fd: int, operation: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(fcntl, "flock", broken)  # as the lock module sees it
    before = open_fds()
    with pytest.raises(OSError, match="I/O error") as raised:
        hold_lock(tmp_path / "x.lock")
    assert not isinstance(raised.value, LockHeld)
    assert open_fds() == before
