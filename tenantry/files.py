"""Private files: what tenantry keeps on disk is for its owner's eyes only.

The data dir holds customer data (billing's emails, tenant databases, backups) and the key
file, so every file in it is 0600 and every directory 0700. Two layers make that hold:

- each entry point (the CLI, the API) calls :func:`restrict_new_files`, so whatever the
  process or its libraries create (SQLite's -wal/-shm/-journal, Huey's queue, logs, backup
  artifacts, temporary copies) starts private, whoever creates it;
- the code that creates the data dir and its databases does so privately on its own
  (:func:`private_dir`, :func:`private_file`), for applications that embed tenantry without
  going through an entry point, and :func:`tighten` fixes what older versions left readable.

SQLite gives a database's -wal, -shm and -journal files the mode of the database file itself,
so a private database file keeps its companions private too.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

#: Group and others get nothing.
PRIVATE_UMASK = 0o077
PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def restrict_new_files() -> None:
    """Make every file and directory this process creates from now on private."""
    os.umask(PRIVATE_UMASK)


def private_dir(path: Path) -> Path:
    """Create ``path`` and its missing parents as 0700 directories.

    A directory that exists is left as it is: it may be shared (the data dir's parent, a
    directory given in a URL); :func:`tighten` is for the data dir itself.
    """
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    # Path.mkdir(parents=True) would give the parents the umask's mode: create each one.
    for directory in reversed(missing):
        directory.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
        directory.chmod(PRIVATE_DIR_MODE)
    return path


def private_file(path: Path) -> bool:
    """Create the empty file ``path`` as 0600 unless it exists (then tighten it).

    True when it was created. Its directory is created private when missing.
    """
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        _remove_group_and_other(path)
        return False
    os.close(fd)
    os.chmod(path, PRIVATE_FILE_MODE)  # whatever the umask
    return True


def tighten(root: Path) -> list[Path]:
    """Take group and other permissions off everything under ``root`` (and ``root``).

    Owner permissions are kept: a read-only file (a kept source after a move) stays
    read-only. Symbolic links are not followed. Returns what was changed.
    """
    changed: list[Path] = []
    if not root.is_dir() or root.is_symlink():
        return changed
    if _remove_group_and_other(root):
        changed.append(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            entry = Path(dirpath) / name
            if not entry.is_symlink() and _remove_group_and_other(entry):
                changed.append(entry)
    return changed


def _remove_group_and_other(path: Path) -> bool:
    try:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if not mode & PRIVATE_UMASK:
            return False
        path.chmod(mode & ~PRIVATE_UMASK)
    except FileNotFoundError:  # removed meanwhile (a SQLite -journal, a temporary file)
        return False
    return True
