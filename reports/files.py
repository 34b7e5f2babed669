"""Atomic writes for the report: each file appears whole or not at all (write aside, fsync,
rename), so a full disk or a kill never leaves a 0-byte or half-written table or figure; and the
report folder as a whole is built aside and swapped in (`private_folder`, `swap_in`)."""
from __future__ import annotations

import ctypes
import errno
import io
import os
import shutil
import socket
import tempfile
from pathlib import Path

RENAME_EXCHANGE = 2  # renameat2 flag (Linux >= 3.15): swap two paths atomically
AT_FDCWD = -100


def private_folder(final: Path) -> Path:
    """An empty folder beside `final` (same file system, so it can be renamed onto it), named
    `.<name>.tmp-<host>-<pid>`; such folders of builds on this host whose process is gone (killed)
    are removed first."""
    final = Path(final).absolute()
    final.parent.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname()
    for old in final.parent.glob(f".{final.name}.tmp-{host}-*"):
        pid = old.name.rsplit("-", 1)[1]
        try:
            os.kill(int(pid), 0)  # its build still runs (or another user's process has the pid)
        except ProcessLookupError:
            shutil.rmtree(old, ignore_errors=True)
        except (ValueError, PermissionError):
            pass
    folder = final.parent / f".{final.name}.tmp-{host}-{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    try:
        write_file(folder / ".write-check", b"")
        (folder / ".write-check").unlink()
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


def swap_in(new: Path, final: Path) -> None:
    """Make folder `new` the folder `final`: atomically where the file system can exchange two
    paths (renameat2, local file systems); else (NFS) the old folder is renamed away and the new
    one renamed in, two renames apart. The old folder is then deleted."""
    new, final = Path(new), Path(final)
    if not final.exists():
        os.rename(new, final)
        return
    if not final.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(final))
    if not _exchange(new, final):
        aside = final.parent / f".{final.name}.old-{os.getpid()}"
        os.rename(final, aside)
        os.rename(new, final)
        new = aside
    shutil.rmtree(new, ignore_errors=True)  # now the old report


def _exchange(a: Path, b: Path) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    return renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0


def write_file(path: Path, data: str | bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_csv(frame, path: Path) -> None:
    write_file(path, frame.to_csv(index=False))


def save_figure(fig, path: Path, **kwargs) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix[1:], **kwargs)
    write_file(path, buf.getvalue())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
