"""Verified, atomic file fetching for datasets: the parts that do not depend on which data set it is."""
import gzip
import http.client
import hashlib
import os
import tempfile
import urllib.error
import urllib.request


class DatasetError(RuntimeError):
    """A data set could not be loaded from any source; the message lists every source tried and why."""


def datasets_root_env():
    """$FASTNET_DATA: a datasets root holding one folder per data set (mnist/, ...)."""
    return os.environ.get("FASTNET_DATA") or None


def cache_root():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fastnet")


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def read_maybe_gzip(path):
    """The file's bytes, decompressed when it is gzip (by its magic bytes, not its name)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            raise ValueError(f"{path}: corrupted or truncated gzip data ({e})") from None
    return data


def download_verified(url, dest, expected_sha256, timeout):
    """Download url to dest, only if its (decompressed) bytes hash to expected_sha256.

    The bytes go to a temporary file beside dest and are renamed into place after verification, so dest
    never holds a partial or unverified file, also when several processes download at once.
    """
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest), prefix=".partial-", suffix=os.path.basename(dest))
    try:
        with os.fdopen(fd, "wb") as out:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                expected = response.headers.get("Content-Length")
                received = 0
                while True:
                    chunk = response.read(1 << 20)
                    if not chunk:
                        break
                    out.write(chunk)
                    received += len(chunk)
                if expected is not None and received < int(expected):
                    raise OSError(f"incomplete download ({received} of {expected} bytes)")
        data = read_maybe_gzip(tmp)
        got = sha256(data)
        if got != expected_sha256:
            raise ValueError(f"checksum mismatch: SHA256 {got}, expected {expected_sha256}")
        os.replace(tmp, dest)
        return data
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def describe(exc):
    """A short reason for a failed source."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        timed_out = isinstance(exc.reason, TimeoutError) or "timed out" in str(exc.reason)
        return "timed out" if timed_out else f"cannot connect ({exc.reason})"
    if isinstance(exc, TimeoutError):  # socket.timeout is an alias of TimeoutError
        return "timed out"
    if isinstance(exc, http.client.IncompleteRead):
        return f"incomplete download ({len(exc.partial)} bytes, {exc.expected} more expected)"
    if isinstance(exc, FileNotFoundError):
        return f"not found ({exc.filename})"
    return str(exc) or type(exc).__name__
