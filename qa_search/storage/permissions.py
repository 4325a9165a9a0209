"""Who may read an index directory's files: its owner only, unless the index is made
group-readable.

An index holds the forum's text (a deleted thread's text too, in older generations and the
write log), so nothing in it is ever readable by other users. The policy is the index
directory's own mode, set once by whoever builds it (:func:`set_access`), and every file and
directory created under it follows the directory it is created in, so there is one place that
decides and no setting to pass down to each writer:

- ``0700`` directories and ``0600`` files: the default;
- ``0750`` and ``0640``: group-readable (``qa-search build --group-readable``), for a service
  account that reads an index another account builds.

A directory that other users may enter (one made by an older version, ``0755``) counts as
owner-only: group access is only ever what was asked for. :func:`secure_tree` brings the files
already there into line (a publish calls it), including those written by code that does not
know about modes (FAISS, NumPy, the embedding cache).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Modes:
    file: int
    directory: int


OWNER_ONLY = Modes(file=0o600, directory=0o700)
GROUP_READABLE = Modes(file=0o640, directory=0o750)


def modes_in(directory: str | Path) -> Modes:
    """The modes for what is created in ``directory`` (owner-only when it does not exist)."""
    try:
        mode = os.stat(directory).st_mode
    except FileNotFoundError:
        return OWNER_ONLY
    if mode & stat.S_IRWXO or not mode & stat.S_IRGRP:
        return OWNER_ONLY
    return GROUP_READABLE


def make_dirs(path: str | Path, *, index_dir: bool = False) -> Path:
    """Create the directory ``path`` and its missing parents, each with the mode its parent's
    policy gives; with ``index_dir`` (``path`` is an index directory), every one created is
    owner-only, whatever the directory above allows (see :func:`set_access` to change it)."""
    path = Path(path)
    missing = []
    here = path
    while not here.is_dir() and here.parent != here:
        missing.append(here)
        here = here.parent
    for d in reversed(missing):
        mode = OWNER_ONLY.directory if index_dir else modes_in(d.parent).directory
        try:
            os.mkdir(d, mode)
        except FileExistsError:
            continue
        os.chmod(d, mode)  # mkdir's mode passes through the umask; this one is exact
    return path


def make_dir(path: str | Path) -> Path:
    """Create the directory ``path`` inside an existing one, with that one's policy
    (``FileExistsError`` if it exists, as ``os.mkdir``)."""
    mode = modes_in(Path(path).parent).directory
    os.mkdir(path, mode)
    os.chmod(path, mode)
    return Path(path)


def open_file(path: str | Path, flags: int) -> int:
    """``os.open(path, flags | O_CREAT)`` with the file mode of its directory's policy; a file
    that exists keeps its mode."""
    return os.open(path, flags | os.O_CREAT, modes_in(Path(path).parent).file)


def secure(path: str | Path) -> None:
    """Set ``path``'s mode to its directory's policy (a file or a directory)."""
    path = Path(path)
    modes = modes_in(path.parent)
    os.chmod(path, modes.directory if path.is_dir() else modes.file)


def set_access(index_dir: str | Path, group_readable: bool | None) -> None:
    """Make the existing index directory owner-only (False), group-readable (True) or leave its
    policy as it is (None); what it holds follows on the next :func:`secure_tree`."""
    if group_readable is None:
        if modes_in(index_dir) is OWNER_ONLY:
            os.chmod(index_dir, OWNER_ONLY.directory)  # drops an older version's world access
        return
    os.chmod(index_dir, (GROUP_READABLE if group_readable else OWNER_ONLY).directory)


def secure_tree(root: str | Path) -> None:
    """Apply ``root``'s policy to everything under it (not to ``root`` itself); symbolic links
    are left alone. Files that vanish meanwhile (a reader never deletes; a writer holds the
    lock) are passed over."""
    root = Path(root)
    modes = modes_in(root)
    for here, dirs, files in os.walk(root):
        for name in dirs:
            _chmod(Path(here) / name, modes.directory)
        for name in files:
            _chmod(Path(here) / name, modes.file)


def _chmod(path: Path, mode: int) -> None:
    try:
        st = os.lstat(path)
        if not stat.S_ISLNK(st.st_mode) and stat.S_IMODE(st.st_mode) != mode:
            os.chmod(path, mode)
    except FileNotFoundError:
        pass
