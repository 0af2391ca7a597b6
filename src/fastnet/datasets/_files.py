"""Verified, atomic file fetching for datasets: the parts that do not depend on which data set it is."""
import gzip
import http.client
import hashlib
import os
import urllib.error
import urllib.request

from fastnet._io import atomic_write


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


def gunzip_if_gzip(data, name):
    """data decompressed when it is gzip (by its magic bytes, not its name)."""
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise ValueError(f"{name}: corrupted or truncated gzip data ({e})") from None


def read_maybe_gzip(path):
    with open(path, "rb") as f:
        return gunzip_if_gzip(f.read(), path)


def download_verified(url, dest, expected_sha256, timeout):
    """Download url to dest, only if its (decompressed) bytes hash to expected_sha256; returns those bytes.

    The download goes to a temporary file beside dest, renamed into place only after verification
    (fastnet._io.atomic_write): dest never holds a partial or unverified file, also when several processes
    download at once.
    """
    verified = []

    def fetch(out):
        received = []
        with urllib.request.urlopen(url, timeout=timeout) as response:
            expected = response.headers.get("Content-Length")
            while True:
                chunk = response.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
                received.append(chunk)
        raw = b"".join(received)
        if expected is not None and len(raw) < int(expected):
            raise OSError(f"incomplete download ({len(raw)} of {expected} bytes)")
        data = gunzip_if_gzip(raw, url)
        got = sha256(data)
        if got != expected_sha256:
            raise ValueError(f"checksum mismatch: SHA256 {got}, expected {expected_sha256}")
        verified.append(data)

    atomic_write(dest, fetch)
    return verified[0]


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
