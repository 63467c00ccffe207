"""File primitives that never follow a link and never replace a file.

Everything the daemon writes lives in a tree whose root the operator chose
(``storage.dir``, ``storage.state_dir``; the root itself may be a symlink).
Below that root, a local user who can write a directory could plant a
symlink where we are about to write, or swap a directory for one. So every
directory below the root is opened by name relative to its parent's fd with
``O_NOFOLLOW|O_DIRECTORY``, every file we create is ``O_CREAT|O_EXCL|
O_NOFOLLOW``, and every publication is a hard link (``EEXIST`` if the name is
taken), never a rename over something. All functions here block: call them
through ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_HASH_CHUNK = 1024 * 1024
# Files are created 0666 and directories 0777 before the umask, as open() and
# makedirs() did: the systemd unit's UMask=0027 decides who may read them.
FILE_MODE = 0o666

Ident = tuple[int, int]


class UnsafePath(Exception):
    """Something other than what we wrote sits where we write; nothing was followed."""


def ident(st: os.stat_result) -> Ident:
    return st.st_dev, st.st_ino


def _what(st: os.stat_result) -> str:
    if stat.S_ISLNK(st.st_mode):
        return "a symlink"
    if stat.S_ISDIR(st.st_mode):
        return "a directory"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    return f"owned by uid {st.st_uid}"


def _ours(st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid()


def relative_parts(root: Path, path: Path) -> tuple[str, ...]:
    """``path``'s components below ``root``; no ``..`` can climb out of the tree."""
    parts = path.relative_to(root).parts
    if any(p in ("", ".", "..") for p in parts):
        raise UnsafePath(f"{path} is not a plain path below {root}")
    return parts


def open_dir(root: Path, parts: Sequence[str], *, create: bool) -> int:
    """An fd on ``root/parts...``, each component below ``root`` entered without
    following a link (and created when ``create``). Raises FileNotFoundError when
    a component is missing and not ``create``; UnsafePath when one is not a
    real directory."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for i, name in enumerate(parts):
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o777, dir_fd=fd)
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                where = "/".join(parts[: i + 1])
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                raise UnsafePath(f"{where} under {root} is {_what(st)}") from None
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def reopen_dir(root: Path, parts: Sequence[str], expect: Ident) -> int:
    """``open_dir`` of a directory that must still be the one we held (``expect``):
    a directory renamed away and replaced (by a link or anything else) is refused."""
    where = "/".join(parts) or "."
    try:
        fd = open_dir(root, parts, create=False)
    except FileNotFoundError:
        raise UnsafePath(f"{where} under {root} has gone") from None
    if ident(os.fstat(fd)) != expect:
        os.close(fd)
        raise UnsafePath(f"{where} under {root} was replaced")
    return fd


def lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def create_exclusive(dir_fd: int, name: str) -> int:
    """A new, empty file of ours at ``name``, opened read-write.

    A stale file of ours there (a part from a run that did not finish) is
    removed first; anything else (a link, a directory, a fifo, someone else's
    file) is refused, never followed and never deleted.
    """
    st = lstat(dir_fd, name)
    if st is not None:
        if not _ours(st):
            raise UnsafePath(f"{name} is {_what(st)}; refusing to replace it")
        os.unlink(name, dir_fd=dir_fd)
    try:
        return os.open(name, _NEW_FILE, FILE_MODE, dir_fd=dir_fd)
    except FileExistsError:
        # Something appeared between the unlink and the open: not ours.
        raise UnsafePath(f"{name} appeared while it was being created") from None


def _open_same(dir_fd: int, name: str, st: os.stat_result, flags: int) -> int:
    """Open what ``lstat`` just saw at ``name`` (a regular file), or raise UnsafePath.

    O_NOFOLLOW refuses a link swapped in since; O_NONBLOCK keeps a fifo swapped
    in from hanging the open; the fstat catches any other swap.
    """
    fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    if ident(os.fstat(fd)) != ident(st):
        os.close(fd)
        raise UnsafePath(f"{name} was replaced while it was being opened")
    os.set_blocking(fd, True)
    return fd


def open_ours(dir_fd: int, name: str) -> int:
    """An existing file of ours, read-write; FileNotFoundError if there is none."""
    st = lstat(dir_fd, name)
    if st is None:
        raise FileNotFoundError(errno.ENOENT, "no such file", name)
    if not _ours(st):
        raise UnsafePath(f"{name} is {_what(st)}; refusing to open it")
    return _open_same(dir_fd, name, st, os.O_RDWR)


def link_new(dir_fd: int, src: str, dst: str, expect: Ident) -> bool:
    """Give the file at ``src`` (which must be the inode ``expect``) the name ``dst``.

    False when ``dst`` is taken (left as it is). ``linkat`` without
    AT_SYMLINK_FOLLOW never follows, and the check after it catches a ``src``
    swapped for something else since we last held it.
    """
    try:
        os.link(src, dst, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    except FileExistsError:
        return False
    st = lstat(dir_fd, dst)
    if st is None or ident(st) != expect:
        if st is not None:
            os.unlink(dst, dir_fd=dir_fd)
        raise UnsafePath(f"{src} was replaced while it was being published")
    return True


def unlink_if(dir_fd: int, name: str, expect: Ident | None) -> bool:
    """Remove ``name`` only if it is the inode ``expect`` (or, with None, a file of ours)."""
    st = lstat(dir_fd, name)
    if st is None:
        return False
    if (expect is not None and ident(st) != expect) or not _ours(st):
        return False
    os.unlink(name, dir_fd=dir_fd)
    return True


def _read_regular(
    dir_fd: int, name: str, limit: int, sink: Callable[[bytes], object] | None
) -> bytes | None:
    st = lstat(dir_fd, name)
    if st is None or not stat.S_ISREG(st.st_mode) or st.st_size > limit:
        return None
    try:
        fd = _open_same(dir_fd, name, st, os.O_RDONLY)
    except (OSError, UnsafePath):
        return None
    kept = bytearray()
    try:
        while chunk := os.read(fd, _HASH_CHUNK):
            if sink is not None:
                sink(chunk)
            else:
                kept += chunk
            if len(kept) > limit:
                return None
    finally:
        os.close(fd)
    return bytes(kept)


def sha256_of(dir_fd: int, name: str) -> str | None:
    """The sha256 of the regular file at ``name``, read without following a link;
    None when there is no regular file there."""
    digest = hashlib.sha256()
    if _read_regular(dir_fd, name, 1 << 62, digest.update) is None:
        return None
    return digest.hexdigest()


def read_small(dir_fd: int, name: str, limit: int) -> bytes | None:
    """A regular file's bytes, read without following a link; None if absent, not
    a regular file, or larger than ``limit``."""
    return _read_regular(dir_fd, name, limit, None)


def write_new(dir_fd: int, name: str, data: bytes) -> bool:
    """``data`` under ``name`` unless the name is taken: a temporary file of our
    own, fsynced, then linked (never renamed over anything), then the directory
    fsynced. False when ``name`` already exists (it is left as it is)."""
    tmp = f".{name}.part"
    fd = create_exclusive(dir_fd, tmp)
    mine = ident(os.fstat(fd))
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        linked = link_new(dir_fd, tmp, name, mine)
    finally:
        os.close(fd)
        unlink_if(dir_fd, tmp, mine)
    if linked:
        os.fsync(dir_fd)
    return linked
