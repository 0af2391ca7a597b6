"""Atomic file writes: a crash leaves the old file or the new one, never half of one. Every file fastnet writes
goes through here; data-parallel (fastnet.distributed), only rank 0 writes: the ranks hold the same data."""
import os
import tempfile

from fastnet import distributed


def atomic_write(path, write):
    """Call write(file_object) on a temporary file beside path, then rename it to path. If write raises, the
    temporary file is removed and path is left as it was. On a data-parallel rank other than 0, does nothing."""
    if not distributed.is_primary():
        return
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
