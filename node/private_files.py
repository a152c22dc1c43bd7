"""Owner-only files and directories whatever the umask: key stores, secrets, PKI, configs, logs.

A file another local user can write lets them swap the CA or edit `local_saes`; one they can read
hands them secrets. Every file and directory the key manager (and its demos) creates goes through
these helpers, which set the mode explicitly instead of trusting the process umask.
"""

from __future__ import annotations

import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Create `path` and any missing parents as 0700 directories. Directories that already exist
    are left as they are (`qkdnode certs .` must not change the mode of the current directory)."""
    p = Path(path)
    missing = []
    q = p
    while not q.exists():
        missing.append(q)
        if q.parent == q:
            break
        q = q.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, DIR_MODE)
        except FileExistsError:
            pass
        os.chmod(d, DIR_MODE)
    if not p.is_dir():
        raise ValueError(f"{str(p)!r} exists and is not a directory")
    return p


def create_private_file(path: str | os.PathLike[str]) -> None:
    """Create `path` if absent (mode 0600) and tighten it to 0600 if present, without touching its content."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def write_private_file(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write `data` to `path` atomically and durably as a 0600 file (a crash leaves old or new)."""
    p = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    tmp = p.with_name(p.name + ".tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fd = -1
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
    finally:
        if fd >= 0:
            os.close(fd)
    os.replace(tmp, p)
    return p
