"""Atomic writes for the report: each file appears whole or not at all (write aside, fsync,
rename), so a full disk or a kill never leaves a 0-byte or half-written table or figure."""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path


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
