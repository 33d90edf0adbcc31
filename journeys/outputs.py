"""The output contract every command keeps before it does any work.

``claim(out, inputs)`` refuses, with a message naming the paths:

- an ``--out`` that is equal to an input, inside one, or holds one (a run would overwrite or mix
  with what it reads: e.g. ``journeys name`` given extract's own folder as ``--out``);
- an ``--out`` folder that is a file, or that cannot be created or written;
- an ``--out`` folder that a live run holds. The holder keeps an exclusive ``flock`` on
  ``OUT/_lock`` (which also records its pid) for as long as it runs; the kernel drops the lock when
  the process ends, however it ends, so a killed run never leaves the folder stuck.

Once the lock is held, any ``_staging-*`` folder or ``_partial-*`` file in ``OUT`` belongs to a
run that died, and is removed. On object stores (``gs://``) there is no lock: the overlap and
is-a-file checks still apply, and two runs must not share an output there.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator

from journeys import io

LOCK = "_lock"
_LEFTOVERS = ("_staging-", "_partial-")
_held: dict[str, tuple[int, int]] = {}  # lock path -> (fd, depth): claims nest within a process


class OutputError(ValueError):
    """An output the user must change; the message says what and where."""


def _normal(path: str) -> str:
    """A comparable form of a path: absolute and resolved on local disks, protocol://path elsewhere."""
    fs, stripped = io.url_to_fs(path)
    if io._is_local(fs):
        return os.path.realpath(os.path.expanduser(stripped))
    protocol = fs.protocol[0] if isinstance(fs.protocol, tuple) else fs.protocol
    return f"{protocol}://{stripped.rstrip('/')}"


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def check_overlap(out: str, inputs: Iterable[tuple[str, str | None]]) -> None:
    """Refuse an ``out`` equal to, inside or containing an input. ``inputs``: (option, path) pairs."""
    target = _normal(out)
    for option, given in inputs:
        if not given:
            continue
        # A glob is compared file by file: what it matches is what the run reads.
        paths = _matches(given) if any(ch in given for ch in "*?[") else [given]
        for path in paths:
            source = _normal(path)
            if not (_inside(target, source) or _inside(source, target)):
                continue
            relation = "is" if target == source else "is inside" if _inside(target, source) else "holds"
            raise OutputError(f"--out '{out}' {relation} the input {option} '{path}': write to a folder of "
                              "its own, apart from every input")


def _matches(pattern: str) -> list[str]:
    fs, stripped = io.url_to_fs(pattern)
    return [io._with_protocol(fs, p) for p in fs.glob(stripped)]


def check_file_target(out: str, inputs: Iterable[tuple[str, str | None]] = ()) -> None:
    """For a command that writes one file: not a folder, not an input, its folder writable."""
    check_overlap(out, inputs)
    fs, stripped = io.url_to_fs(out)
    if fs.isdir(stripped):
        raise OutputError(f"--out '{out}' is a folder: give the file to write")
    if io._is_local(fs):
        parent = os.path.dirname(os.path.abspath(stripped))
        _writable_folder(parent, out)


def _writable_folder(folder: str, shown: str) -> None:
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise OutputError(f"--out '{shown}' cannot be created: '{existing}' is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"--out '{shown}' cannot be written: '{existing}' is read-only for this user")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise OutputError(f"--out '{shown}' cannot be created: {err.strerror}") from None


@contextlib.contextmanager
def claim(out: str, inputs: Iterable[tuple[str, str | None]] = ()) -> Iterator[None]:
    """Hold ``out`` (a folder) for the duration of the block, after the checks above."""
    check_overlap(out, inputs)
    fs, stripped = io.url_to_fs(out)
    if fs.exists(stripped) and not fs.isdir(stripped):
        raise OutputError(f"--out '{out}' is a file: give a folder (it is created if missing)")
    if not io._is_local(fs):
        yield
        return
    folder = os.path.abspath(stripped)
    created = not os.path.exists(folder)
    _writable_folder(folder, out)
    lock_path = os.path.join(folder, LOCK)
    if lock_path in _held:  # the same process, one step inside another: already held
        fd, depth = _held[lock_path]
        _held[lock_path] = (fd, depth + 1)
        try:
            yield
        finally:
            fd, depth = _held[lock_path]
            _held[lock_path] = (fd, depth - 1)
        return
    try:
        fd = _lock(lock_path, out)
    except OutputError:
        _remove_if_made(folder, created)
        raise
    _held[lock_path] = (fd, 1)
    try:
        _remove_leftovers(folder)
        yield
    finally:
        del _held[lock_path]
        with contextlib.suppress(OSError):
            os.unlink(lock_path)
        os.close(fd)
        _remove_if_made(folder, created)


def _remove_if_made(folder: str, created: bool) -> None:
    """A run refused before any work leaves no trace: the folder it made, still empty, goes."""
    if created:
        with contextlib.suppress(OSError):
            os.rmdir(folder)  # only if empty


def _lock(lock_path: str, shown: str) -> int:
    import fcntl

    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise OutputError(f"--out '{shown}' cannot be written: {err.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise OutputError(f"--out '{shown}' is in use by another run (pid {holder}): wait for it to "
                          "finish, or write elsewhere") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _remove_leftovers(folder: str) -> None:
    """What dead runs left: their staging folders and half-written files (nothing live writes here:
    we hold the lock)."""
    import shutil

    for name in sorted(os.listdir(folder)):
        if name.startswith(_LEFTOVERS):
            path = os.path.join(folder, name)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(path)
