"""A small filesystem that fills up: for tests of what happens when the disk is full.

Why: "No space left on device" must leave a clear message and a consistent journal, and
the only honest way to test that is a real filesystem that really is full. ``small_disk``
mounts a size-limited tmpfs on a directory (as root, or through passwordless sudo) and
unmounts it afterwards; ``fill`` writes until the kernel answers ENOSPC; ``set_read_only``
remounts it read-only (EROFS, which stops root too). Where mounting is
not allowed, ``small_disk`` raises ``Unavailable`` and tests skip with its reason.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess  # fixed argument lists, never a shell  # nosec B404
from collections.abc import Iterator
from pathlib import Path


class Unavailable(Exception):
    """This machine does not let us mount a filesystem (not root, no passwordless sudo)."""


def _mount_command() -> list[str]:
    if os.geteuid() == 0:
        return []
    sudo = shutil.which("sudo")
    if sudo is None:
        raise Unavailable("mounting a tmpfs needs root or sudo")
    probe = subprocess.run(  # a fixed argument list of our own, no shell  # nosec B603
        [sudo, "-n", "true"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        raise Unavailable("mounting a tmpfs needs root or passwordless sudo")
    return [sudo, "-n"]


@contextlib.contextmanager
def small_disk(path: Path, *, size_kb: int = 256) -> Iterator[Path]:
    """Mount a ``size_kb`` tmpfs on ``path`` (created if needed) for the block's duration.

    Raises:
        Unavailable: mounting is not allowed here.
    """
    prefix = _mount_command()
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(  # a fixed argument list of our own, no shell  # nosec B603
        [*prefix, "mount", "-t", "tmpfs", "-o", f"size={size_kb}k,mode=1777", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        raise Unavailable(f"cannot mount a tmpfs on {path}: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(  # a fixed argument list of our own, no shell  # nosec B603
            [*prefix, "umount", "-l", str(path)], capture_output=True, check=False
        )


def set_read_only(path: Path, read_only: bool = True) -> None:
    """Remount the filesystem ``small_disk`` mounted on ``path`` read-only (or back to
    read-write): unlike a permission bit, this also stops root.

    Raises:
        Unavailable: remounting is not allowed here.
    """
    prefix = _mount_command()
    mode = "ro" if read_only else "rw"
    done = subprocess.run(  # a fixed argument list of our own, no shell  # nosec B603
        [*prefix, "mount", "-o", f"remount,{mode}", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise Unavailable(f"cannot remount {path} {mode}: {done.stderr.strip()}")


def fill(path: Path) -> Path:
    """Write ``path/fill`` until the filesystem is full; returns the file (delete it to free)."""
    target = path / "fill"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (65536, 4096, 512, 1):  # big blocks, then what is left of the last one
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return target
