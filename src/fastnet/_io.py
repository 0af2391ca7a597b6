"""Atomic file writes: a crash leaves the old file or the new one, never half of one, and a killed write leaves
no litter for long. Every file fastnet writes goes through here; data-parallel (fastnet.distributed), only rank 0
writes: the ranks hold the same data.

A write goes to `.NAME.TOKEN.partial` beside NAME, created as a plain open() would create NAME (the umask
applies) and locked (flock) while it is written; then it is renamed over NAME. A process killed mid-write leaves
its partial file behind, unlocked: the next write of the same NAME removes every partial of NAME that no living
process holds locked.
"""
import contextlib
import errno
import os
import re
import secrets

from fastnet import distributed

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, so no partial file is ever known to be stale
    fcntl = None

_TOKEN = r"[a-z0-9_]{8,16}"  # ours are 16 hex digits; earlier fastnet's (tempfile.mkstemp) 8 of [a-z0-9_]


def _partial_pattern(name):
    return re.compile(rf"\.{re.escape(name)}\.{_TOKEN}\.partial")


def _try_lock(fd):
    """Take fd's exclusive lock if no process holds it; whether it was taken."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def remove_stale_partials(path):
    """Remove the partial files of path that earlier writes left (killed mid-write): those no process holds
    locked. Returns their names."""
    if fcntl is None:
        return []
    folder, name = os.path.split(os.path.abspath(path))
    pattern, removed = _partial_pattern(name), []
    try:
        entries = os.listdir(folder)
    except OSError:
        return []
    for entry in entries:
        if not pattern.fullmatch(entry):
            continue
        stale = os.path.join(folder, entry)
        try:
            fd = os.open(stale, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue  # gone already, or not ours to open
        try:
            if _try_lock(fd):
                os.unlink(stale)  # the lock is released when fd closes, after the name is gone
                removed.append(entry)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def _create_locked(folder, name):
    """A new partial file for name in folder, created with the mode open() would give and locked; (fd, path).
    A cleaner may remove a partial in the instant between its creation and its lock: then make another."""
    while True:
        tmp = os.path.join(folder, f".{name}.{secrets.token_hex(8)}.partial")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        if fcntl is None:
            return fd, tmp
        fcntl.flock(fd, fcntl.LOCK_EX)
        with contextlib.suppress(FileNotFoundError):
            if os.stat(tmp).st_ino == os.fstat(fd).st_ino:
                return fd, tmp
        os.close(fd)


def _make_folder(folder, path, where):
    """folder (path's), made if missing; an error naming path and what is in the way otherwise."""
    prefix = f"{where}: " if where else ""
    try:
        os.makedirs(folder, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = folder
        while not os.path.exists(blocker):
            blocker = os.path.dirname(blocker)
        raise NotADirectoryError(errno.ENOTDIR, f"{prefix}cannot write {path}: {blocker} is a file, not a "
                                 "folder") from None
    except OSError as e:
        raise type(e)(e.errno, f"{prefix}cannot write {path}: {e.strerror} ({e.filename})") from None
    return folder


def check_writable(path, where, folder=None):
    """Make path's folder if it is missing and check that a file can be written there, so that a callback's
    target fails when training begins, not after the first epoch; folder: the folder to check, when path is a
    template ('ckpt-{epoch}.keras') and only its folder is known. Raises OSError naming path and the reason."""
    folder = _make_folder(os.path.dirname(os.path.abspath(path)) if folder is None else folder, path, where)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, f"{where}: cannot write {path}: it is a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, f"{where}: cannot write {path}: the folder {folder} is not writable")


def atomic_write(path, write):
    """Call write(file_object) on a partial file beside path, then rename it to path. If write raises, the
    partial file is removed and path is left as it was. The new file has the mode a plain open() would give it:
    the umask's for a new file, the old file's when path exists. On a data-parallel rank other than 0, does
    nothing."""
    if not distributed.is_primary():
        return
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    _make_folder(folder, path, None)
    remove_stale_partials(path)
    fd, tmp = _create_locked(folder, name)
    try:
        with contextlib.suppress(FileNotFoundError):
            os.fchmod(fd, os.stat(path).st_mode & 0o7777)  # replacing a file keeps its mode, as open() would
        with os.fdopen(fd, "wb", closefd=False) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    finally:
        os.close(fd)  # releases the lock, after the rename: no cleaner ever sees this partial unlocked
    _sync_folder(folder)


def _sync_folder(folder):
    """Make the rename durable (POSIX: the folder's entry is data of the folder)."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
