"""Process safety for stage runs: one writer per output, no orphans, outputs replaced only on success.

- `StageLock`: an exclusive `fcntl.flock` on `.scalevlm/locks/<stage>[@item].lock`, holding the owner's pid and
  command line. The kernel releases a flock when its holder dies, however it dies, so a lock left by a killed run
  is never mistaken for a live one ("stale" = file present, lock free: taken over, with a log line).
- `watch_parent`: when the process that started the stage dies (`dvc repro` killed with SIGKILL, a closed
  terminal), the stage terminates its own child processes and exits instead of training on as an orphan that a
  second run would race. A `sh -c` wrapper between DVC and the stage is looked through. `nohup` runs (SIGHUP
  ignored) are left alone: surviving the parent is what the user asked for.
- `atomic_dir` / `atomic_write_text`: write into a sibling temporary path, then rename into place, so a failed or
  killed run leaves the previous output intact and never a half-written one.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from scalevlm.errors import PipelineError

log = logging.getLogger(__name__)

LOCK_DIR = Path(".scalevlm") / "locks"
SHELLS = {"sh", "bash", "dash", "zsh", "fish"}


class StageBusyError(PipelineError, RuntimeError):
    """Another live process owns the stage's outputs."""


def lock_name(stage: str, item: str | None = None) -> str:
    return f"{stage}@{item}" if item else stage


class StageLock:
    """Exclusive, crash-proof ownership of one stage (item)'s outputs for the lifetime of this process."""

    def __init__(self, root: Path, name: str) -> None:
        self.path = root / LOCK_DIR / f"{name}.lock"
        self.name = name
        self._fd: int | None = None

    def acquire(self) -> StageLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 4096).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            raise StageBusyError(
                f"stage {self.name} is already running ({owner}); its outputs belong to that process. Wait for it "
                f"to finish, or stop it (kill <pid>) and run again."
            ) from None
        previous = os.read(fd, 4096).decode("utf-8", "replace").strip()
        if previous:
            log.warning("stage %s: taking over a stale lock left by a run that died (%s)", self.name, previous)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"pid {os.getpid()}: {' '.join(sys.argv)}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)  # an empty file = released cleanly (a non-empty free file = a crashed owner)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> StageLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _process(pid: int) -> psutil.Process | None:
    """A live process (a zombie has exited: only its parent has not reaped it yet); None if gone."""
    try:
        proc = psutil.Process(pid)
        return None if proc.status() == psutil.STATUS_ZOMBIE else proc
    except psutil.Error:
        return None


def _ancestors_to_watch() -> list[psutil.Process]:
    """The parent, and past `sh -c` wrappers the first non-shell ancestor."""
    watched = []
    proc = _process(os.getppid())
    while proc is not None and proc.pid > 1:
        watched.append(proc)
        if not _is_command_shell(proc):
            break
        proc = _process(proc.ppid())
    return watched


def _is_command_shell(proc: psutil.Process) -> bool:
    """A non-interactive `sh -c "…"` wrapper (DVC runs commands that way), not the user's login shell."""
    try:
        return proc.name() in SHELLS and "-c" in proc.cmdline()
    except psutil.Error:
        return False


def kill_descendants(sig: int = signal.SIGTERM) -> None:
    """Signal every descendant of this process (deepest first)."""
    for child in reversed(psutil.Process().children(recursive=True)):
        with contextlib.suppress(psutil.Error):
            child.send_signal(sig)


def watch_parent(interval_s: float = 1.0) -> threading.Thread | None:
    """Start a daemon thread that ends this process (and its children) when the process that started it dies."""
    if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
        return None  # started under nohup on purpose
    watched = _ancestors_to_watch()
    if not watched:
        return None

    def alive(proc: psutil.Process) -> bool:
        try:  # is_running compares the start time too: a reused pid is not the watched process
            return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def loop() -> None:
        while True:
            time.sleep(interval_s)
            dead = [proc.pid for proc in watched if not alive(proc)]
            if dead:
                print(f"error: the process that started this stage (pid {dead[0]}) is gone; stopping so that no "
                      "orphan keeps writing the stage's outputs", file=sys.stderr, flush=True)
                kill_descendants(signal.SIGTERM)
                time.sleep(0.5)
                kill_descendants(signal.SIGKILL)
                os._exit(1)  # no cleanup handlers: the outputs are left to the next run's atomic replace

    thread = threading.Thread(target=loop, name="scalevlm-parent-watch", daemon=True)
    thread.start()
    return thread


def _tmp_sibling(path: Path, tag: str) -> Path:
    return path.with_name(f".{path.name}.{tag}-{os.getpid()}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _clean_leftovers(path: Path) -> None:
    """Delete temporary siblings of `path` left by runs that were killed (their pid is gone)."""
    for leftover in path.parent.glob(f".{path.name}.*-*"):
        pid = leftover.name.rsplit("-", 1)[-1]
        if pid.isdigit() and _process(int(pid)) is None:
            _remove(leftover)


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside `path`; on success it replaces `path` (on error it is deleted).

    The previous `path` stays intact until the new one is complete; the swap is two renames on one file system.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clean_leftovers(path)
    tmp = _tmp_sibling(path, "new")
    _remove(tmp)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    replace_dir(tmp, path)


def replace_dir(new: Path, path: Path, keep: tuple[str, ...] = ()) -> None:
    """Put the complete folder `new` at `path` (two renames), carrying the entries named in `keep` over from the
    previous `path`, then delete the previous one."""
    old = _tmp_sibling(path, "old")
    _remove(old)
    if path.exists() or path.is_symlink():
        os.replace(path, old)
    os.replace(new, path)
    for name in keep:
        if (old / name).exists() and not (path / name).exists():
            os.replace(old / name, path / name)
    _remove(old)


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file so that readers see the old or the new content, never a prefix of the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path, "tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
