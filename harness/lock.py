"""A live run owns its folder: `<run dir>/.owner`, created exclusively, holding the owner's host,
machine (`this_machine`), pid, a token and when it started; its mtime is the heartbeat, renewed by
a thread while the run lives. Another launcher that finds a live owner skips the run; one that
finds a dead owner (on the same machine: its pid is gone; anywhere: no heartbeat for STALE_S)
takes the run over and says so. The owner checks before every checkpoint and summary that the
run is still its own (`check`): one judged dead while it was only paused (SIGSTOP, a suspended
node, a network partition longer than STALE_S) stops without writing (`LockLost`); the check
comes before each write, so a write already under way when it was paused still lands.

What it relies on, all of it safe on NFS v3+ as on local disks (no fcntl/flock, which NFS
mounts often lack or fake):
- ownership is the exclusive create of `.owner` (O_CREAT | O_EXCL: atomic on the server on NFS
  v3+, whose exclusive create is idempotent under retransmission);
- the heartbeat is `utime(.owner)` with no times, which NFS sets to the server's clock, and its
  age is the mtime of a probe file just written beside it minus `.owner`'s mtime: both times are
  the file server's, never compared with this host's clock, so clock skew between nodes does not
  make a live run look dead or a dead one alive;
- mtimes are read through a fresh open (`fresh_mtime`): NFS revalidates a file's attributes on
  open (close-to-open consistency), where a bare stat may answer from the client's attribute
  cache, up to a minute old;
- the pid is asked only on the machine that wrote it: same host name, boot and pid namespace
  (containers share a host name, not their pids); elsewhere only the heartbeat counts;
- `.owner`'s content is written and fsynced before it is closed, so a reader on another host
  (close-to-open) sees it whole, or empty for a moment (judged "being written" until STALE_S).

Two launchers that find the same dead owner at once must not both take over: a takeover first
creates `<run dir>/.takeover` exclusively; only its creator replaces the dead `.owner`, checking
under it that the owner it judged dead is still the one there.

The same idea as `filelock`'s SoftFileLock (O_EXCL creation; no fcntl) and SLURM's own node
heartbeats; written here because a stale lock must be told apart from a live one across hosts,
which SoftFileLock leaves to the user.
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

OWNER = ".owner"
TAKEOVER = ".takeover"
BEAT_S = float(os.environ.get("O2O_LOCK_BEAT_S", 10))  # heartbeat period
STALE_S = float(os.environ.get("O2O_LOCK_STALE_S", 120))  # no heartbeat this long: the owner is dead


def this_machine() -> str:
    """The kernel's boot and this process's pid namespace: pids mean the same only where both match."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        ns = os.stat("/proc/self/ns/pid")
        return f"{boot}/{ns.st_dev}:{ns.st_ino}"
    except OSError:  # no /proc (macOS): the host name alone
        return ""


@dataclass
class Owner:
    host: str
    pid: int
    token: str
    started: float
    machine: str = ""  # `this_machine()` of the owner

    def __str__(self) -> str:
        return f"process {self.pid} on {self.host}"


def read_owner(run_dir: Path) -> Owner | None:
    try:
        d = json.loads((Path(run_dir) / OWNER).read_text())
        return Owner(str(d["host"]), int(d["pid"]), str(d["token"]), float(d["started"]), str(d.get("machine", "")))
    except (OSError, ValueError, KeyError, TypeError):  # absent, or being written (empty for a moment)
        return None


def server_now(folder: Path) -> float:
    """The file system's clock: the mtime of a file just written in `folder`."""
    probe = Path(folder) / f".now-{secrets.token_hex(4)}"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, b"x")
        return os.fstat(fd).st_mtime
    finally:
        os.close(fd)
        probe.unlink(missing_ok=True)


def fresh_mtime(path: Path) -> float:
    """`path`'s mtime as the file server has it now: through an open, which makes an NFS client
    revalidate the file's attributes (a bare stat may answer from its attribute cache)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.fstat(fd).st_mtime
    finally:
        os.close(fd)


def owner_dead(run_dir: Path, owner: Owner) -> str | None:
    """Why `owner` no longer runs (None: it may be alive)."""
    here = owner.host == socket.gethostname() and owner.machine == this_machine()
    if here and not pid_alive(owner.pid):
        return f"{owner} is gone"
    try:
        age = server_now(run_dir) - fresh_mtime(Path(run_dir) / OWNER)
    except FileNotFoundError:
        return None
    return f"{owner} sent no heartbeat for {age:.0f} s" if age > STALE_S else None


def pid_alive(pid: int) -> bool:
    """Whether process `pid` of this host exists (one of another user's counts)."""
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


class Busy(Exception):
    """The run is owned by a live process elsewhere."""

    def __init__(self, run_dir: Path, owner: Owner | None):
        self.run_dir, self.owner = Path(run_dir), owner
        super().__init__(f"{run_dir} is being run by {owner or 'another launcher'}")


class LockLost(RuntimeError):
    """Another launcher took this run over (it judged this process dead): stop, write nothing."""


class RunLock:
    """Ownership of one run directory while a run trains in it. `acquire` raises Busy when a live
    process owns it; `took_over` then says whose dead run this one continues (None: nobody's)."""

    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)
        self.me = Owner(socket.gethostname(), os.getpid(), secrets.token_hex(8), time.time(), this_machine())
        self.took_over: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> RunLock:
        self.dir.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # a dead owner replaced, or an owner gone between the reads
            if self._create():
                self._start_heartbeat()
                return self
            owner = read_owner(self.dir)
            if owner is not None and owner.token == self.me.token:
                self._start_heartbeat()
                return self
            why = owner_dead(self.dir, owner) if owner else None
            if owner is None:
                if (self.dir / OWNER).exists() and self._age(OWNER) < STALE_S:
                    raise Busy(self.dir, None)  # being written right now
                why = "an unreadable owner file"
            if why is None:
                raise Busy(self.dir, owner)
            if not self._take_over(owner, why):
                raise Busy(self.dir, owner)
        raise Busy(self.dir, read_owner(self.dir))

    def _create(self) -> bool:
        try:
            fd = os.open(self.dir / OWNER, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump(vars(self.me), f)
            f.flush()
            os.fsync(f.fileno())
        return True

    def _age(self, name: str) -> float:
        try:
            return server_now(self.dir) - fresh_mtime(self.dir / name)
        except FileNotFoundError:
            return 0.0

    def _take_over(self, dead: Owner | None, why: str) -> bool:
        """Replace the dead owner's file by ours, under the `.takeover` mutex; False when another
        launcher is taking it over (or did)."""
        mutex = self.dir / TAKEOVER
        try:
            fd = os.open(mutex, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.close(fd)
        except FileExistsError:
            if self._age(TAKEOVER) > STALE_S:  # a launcher died mid-takeover (a window of milliseconds)
                mutex.unlink(missing_ok=True)
            return False
        try:
            now = read_owner(self.dir)
            if (now.token if now else None) != (dead.token if dead else None):
                return False  # someone took it over meanwhile: judge the new owner afresh
            (self.dir / OWNER).unlink(missing_ok=True)
            if not self._create():
                return False
            self.took_over = why
            return True
        finally:
            mutex.unlink(missing_ok=True)

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat {self.dir}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(BEAT_S):
            try:
                if not self.still_owned():
                    return  # taken over: never keep another's lock looking alive
                os.utime(self.dir / OWNER)  # NFS: the server's time
            except OSError:
                pass  # a full or flaky disk: the run itself will say so

    def still_owned(self) -> bool:
        owner = read_owner(self.dir)
        return owner is not None and owner.token == self.me.token

    def check(self) -> None:
        """Raise LockLost when another launcher has taken this run over."""
        if not self.still_owned():
            raise LockLost(f"{self.dir} was taken over by {read_owner(self.dir) or 'another launcher'}, which judged "
                           f"this process dead; this process stops without writing to it")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.still_owned():
            (self.dir / OWNER).unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
