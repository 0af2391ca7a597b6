"""Reading model files from strangers. Every format fastnet loads (.npz, .keras, .weights.h5) is read through
here, and .onnx by fastnet.onnx_import with this module's Source and errors, under four rules:

1. Nothing outside the file is read. An HDF5 file may hold only groups and datasets stored in itself: soft,
   external and user-defined links, external and virtual storage, chunked or filtered storage and named
   datatypes are refused while the file is walked, before any dataset is read. A zip member is read from the
   archive only.
2. No size the file claims is trusted. Every array's dtype and shape is read from its header and checked by the
   caller against what the architecture needs, and the architecture's total against the bytes the file holds,
   before anything of that size is allocated. JSON is parsed with bounds on its size and depth.
3. Nothing in a file is executed or imported: arrays of numbers only (never pickle), layer and optimizer classes
   from fastnet's own tables (never a module name written in the file).
4. A malformed file raises the format's error (a ModelFileError) naming the file and what is wrong. Where a
   third-party parser (zipfile, HDF5) reads the bytes, any exception it raises means a malformed file.
"""
import ast
import contextlib
import json
import os
import re
import struct
import zipfile

import numpy as np

from fastnet import _registry

MAX_JSON_BYTES = 16 << 20  # a model's JSON; Keras writes a few KB per layer
MAX_JSON_DEPTH = 64        # nested arrays and objects; Keras's configs go about 8 deep
MAX_NPY_HEADER = 1 << 16   # an .npy header's text; numpy writes about 128 bytes
DEFLATE_MAX_RATIO = 1032   # deflate never expands its input more than this (a 258-byte match per 2 bits)
MAX_HDF5_DEPTH = 32        # Keras's weights go 3 groups deep
MAX_HDF5_OBJECTS = 1 << 16
REAL_KINDS = "fiu"         # dtype kinds a weight may be stored as: float, signed or unsigned int


class ModelFileError(ValueError):
    """A model or weights file that is truncated, corrupted, foreign or unsafe; the message names the file and
    what is wrong."""


_REQUIRED = object()
_KINDS = {  # JSON kind -> (test, words)
    "object": (lambda v: isinstance(v, dict), "an object"),
    "list": (lambda v: isinstance(v, list), "a list"),
    "string": (lambda v: isinstance(v, str), "a string"),
    "integer": (lambda v: type(v) is int, "an integer"),
    "number": (lambda v: type(v) in (int, float), "a number"),
    "boolean": (lambda v: type(v) is bool, "true or false"),
    "null": (lambda v: v is None, "null"),
}
_JSON_NAMES = {dict: "an object", list: "a list", str: "the string", int: "the integer", float: "the number",
               bool: "", type(None): ""}
_JSON_ESCAPE = re.compile(r"\\.", re.S)  # removed first, left to right as JSON reads them: then no string
_JSON_STRING = re.compile(r'"[^"]*"')     # holds a quote, and each match attempt that fails is the last one


def _shown(value):
    text = json.dumps(value) if isinstance(value, (str, int, float, bool, type(None))) else None
    if text is None or len(text) > 60:
        return _JSON_NAMES.get(type(value), type(value).__name__).strip() or repr(value)
    return f"{_JSON_NAMES.get(type(value), '')} {text}".strip()


def json_depth(text):
    """The deepest nesting of arrays and objects in JSON text (brackets inside strings do not count)."""
    text = _JSON_STRING.sub("", _JSON_ESCAPE.sub("", text))
    chars = np.frombuffer(text.encode("utf-8", "replace"), np.uint8)
    opens, closes = (chars == ord("[")) | (chars == ord("{")), (chars == ord("]")) | (chars == ord("}"))
    steps = opens[opens | closes].astype(np.int32) * 2 - 1
    if not steps.size:
        return 0
    return int(np.cumsum(steps).max())


class Source:
    """A file being read: its name in messages and the error class its format raises."""

    def __init__(self, name, error=ModelFileError):
        self.name, self.error_type = os.fspath(name), error

    def error(self, what):
        return self.error_type(f"{self.name}: {what}")

    @contextlib.contextmanager
    def parsing(self, what):
        """Any exception a third-party parser raises on this file's bytes is the file's fault: the format's error,
        naming what was being read. MemoryError is not caught: the checks before a read rule it out."""
        try:
            yield
        except (ModelFileError, MemoryError):
            raise
        except Exception as e:
            raise self.error(f"{what} ({type(e).__name__}: {e})") from None

    # ------------------------------------------------------------ JSON
    def json(self, data, what):
        """A JSON document (bytes or str), refused when larger than MAX_JSON_BYTES or nested deeper than
        MAX_JSON_DEPTH before it is parsed."""
        if len(data) > MAX_JSON_BYTES:
            raise self.error(f"{what} is {len(data):,} bytes; fastnet reads at most {MAX_JSON_BYTES:,}")
        if isinstance(data, bytes):
            try:
                data = data.decode("utf-8")
            except UnicodeDecodeError as e:
                raise self.error(f"{what} is not UTF-8 text ({e})") from None
        depth = json_depth(data)
        if depth > MAX_JSON_DEPTH:
            raise self.error(f"{what} is nested {depth} levels deep; fastnet reads at most {MAX_JSON_DEPTH}")
        try:
            return json.loads(data)
        except (ValueError, RecursionError) as e:
            raise self.error(f"{what} is not valid JSON ({e})") from None

    def expect(self, value, kinds, what):
        """value, if it is of one of the JSON kinds ('object', 'list', 'string', 'integer', 'number', 'boolean',
        'null'; one or a tuple), else the error naming what it is and what was expected."""
        kinds = (kinds,) if isinstance(kinds, str) else kinds
        if any(_KINDS[k][0](value) for k in kinds):
            return value
        raise self.error(f"{what} must be {' or '.join(_KINDS[k][1] for k in kinds)}, got {_shown(value)}")

    def field(self, mapping, key, kinds, what, default=_REQUIRED):
        """mapping[key], checked to be of kinds; default when absent (or the error, when no default is given)."""
        self.expect(mapping, "object", what)
        if key not in mapping:
            if default is _REQUIRED:
                raise self.error(f"{what} has no {key!r}")
            return default
        return self.expect(mapping[key], kinds, f"{what}[{key!r}]")

    def count(self, mapping, key, what, default=_REQUIRED):
        """A non-negative integer field (a counter: steps, epochs, iterations, a seed)."""
        value = self.field(mapping, key, "integer", what, default)
        if not 0 <= value < 2**63:
            raise self.error(f"{what}[{key!r}] must be in [0, 2**63), got {value}")
        return value


def _npy_dtype(descr, source, what):
    if not isinstance(descr, str):
        raise source.error(f"{what}: dtype {descr!r}; fastnet reads arrays of plain numbers (no records)")
    try:
        return np.dtype(descr)
    except (TypeError, ValueError) as e:
        raise source.error(f"{what}: dtype {descr!r} ({e})") from None


class NpyEntry:
    """An .npy member's header: what it claims, before any of its data is read."""

    def __init__(self, name, dtype, shape, fortran_order, offset):
        self.name, self.dtype, self.shape, self.fortran_order, self.offset = name, dtype, shape, fortran_order, offset
        self.nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize


class _Closing:
    """`with reader:` closes the reader at the end."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Archive(_Closing):
    """A zip archive (.npz, .keras): the central directory is read and every member's sizes are checked against
    the file when it opens; a member is read only after the caller has checked what it claims."""

    def __init__(self, source, path, kind):
        """kind: what the file should be, in words ('a .keras archive')."""
        self.source = source
        self._file = open(path, "rb")  # a missing file is FileNotFoundError, as everywhere in Python
        try:
            self.size = os.fstat(self._file.fileno()).st_size
            with source.parsing(f"truncated, corrupted or not {kind}"):
                self._zip = zipfile.ZipFile(self._file)
                infos = self._zip.infolist()
            self.members = {}
            for info in infos:
                if info.filename in self.members:
                    raise source.error(f"the archive holds two members named {info.filename!r}")
                self._check(info)
                self.members[info.filename] = info
        except BaseException:
            self._file.close()
            raise

    def _check(self, info):
        name = info.filename
        if info.flag_bits & 0x1:
            raise self.source.error(f"member {name!r} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise self.source.error(f"member {name!r} uses zip compression method {info.compress_type}; fastnet "
                                    "reads stored and deflated members")
        stored = info.compress_type == zipfile.ZIP_STORED
        if (stored and info.file_size != info.compress_size) or \
                info.file_size > DEFLATE_MAX_RATIO * info.compress_size + 64:
            raise self.source.error(f"member {name!r} claims {info.file_size:,} bytes from {info.compress_size:,} "
                                    "stored: the archive is corrupted")
        if info.header_offset + info.compress_size > self.size:
            raise self.source.error(f"member {name!r} runs past the end of the file: the archive is truncated")

    def close(self):
        with contextlib.suppress(Exception):
            self._zip.close()
        self._file.close()

    def read(self, name, limit):
        """A member's bytes, refused when it claims more than limit."""
        info = self.members[name]
        if info.file_size > limit:
            raise self.source.error(f"member {name!r} is {info.file_size:,} bytes; fastnet reads at most {limit:,}")
        with self.source.parsing(f"member {name!r} is corrupted"):
            return self._zip.read(info)

    def npy(self, name):
        """The NpyEntry of an .npy member: its header parsed and checked against the member's size."""
        info = self.members[name]
        what = f"member {name!r}"
        with self.source.parsing(f"{what} is corrupted"), self._zip.open(info) as f:
            head = f.read(10)
            if len(head) < 10 or head[:6] != b"\x93NUMPY" or head[6] not in (1, 2, 3):
                raise self.source.error(f"{what} is not an .npy array")
            if head[6] == 1:
                length, offset = struct.unpack("<H", head[8:10])[0], 10
            else:
                head += f.read(2)
                length, offset = struct.unpack("<I", head[8:12])[0], 12
            if length > MAX_NPY_HEADER:
                raise self.source.error(f"{what}: an .npy header of {length:,} bytes")
            text = f.read(length)
        if len(text) != length:
            raise self.source.error(f"{what} is truncated")
        try:
            header = ast.literal_eval(text.decode("utf-8" if head[6] == 3 else "latin1"))
        except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError) as e:
            raise self.source.error(f"{what}: unreadable .npy header ({type(e).__name__})") from None
        if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
            raise self.source.error(f"{what}: an .npy header needs descr, fortran_order and shape, got {header!r:.200}")
        shape, fortran = header["shape"], header["fortran_order"]
        if not isinstance(shape, tuple) or not all(type(n) is int and n >= 0 for n in shape) or \
                not isinstance(fortran, bool):
            raise self.source.error(f"{what}: shape {shape!r:.100} and fortran_order {fortran!r:.20} in its header")
        entry = NpyEntry(name, _npy_dtype(header["descr"], self.source, what), shape, fortran, offset + length)
        if entry.dtype.itemsize == 0 or entry.offset + entry.nbytes != info.file_size:
            raise self.source.error(f"{what}: its header declares {entry.dtype.str} {shape} ({entry.nbytes:,} bytes) "
                                    f"but it holds {max(info.file_size - entry.offset, 0):,} bytes of data")
        return entry

    def text(self, entry):
        """A 0-d unicode entry's text (UCS-4 checked: a code point past U+10FFFF is the file's error)."""
        data = self.array(entry).astype(entry.dtype.newbyteorder("<")).tobytes()
        try:
            return data.decode("utf-32-le").rstrip("\0")
        except UnicodeDecodeError as e:
            raise self.source.error(f"member {entry.name!r} is not text ({e})") from None

    def array(self, entry):
        """An entry's data (its header checked, its size the member's)."""
        with self.source.parsing(f"member {entry.name!r} is corrupted"), self._zip.open(self.members[entry.name]) as f:
            f.read(entry.offset)
            data = f.read(entry.nbytes)
        if len(data) != entry.nbytes:
            raise self.source.error(f"member {entry.name!r} is truncated")
        array = np.frombuffer(data, entry.dtype, count=len(data) // entry.dtype.itemsize)
        return array.reshape(entry.shape, order="F" if entry.fortran_order else "C")


class Dataset:
    """An HDF5 dataset as its header describes it: checked when the file was walked, not read yet."""

    def __init__(self, path, dsid, shape, dtype):
        self.path, self.id, self.shape, self.dtype = path, dsid, shape, dtype


class HDF5(_Closing):
    """An HDF5 file walked whole when it opens: only hard links to groups and plain datasets stored in the file
    are allowed, so no later read can reach outside it. Datasets are then read by path, one at a time, after the
    caller has checked their shapes."""

    def __init__(self, source, fileobj, what, size):
        """what: the member of an archive this file is, in messages (None: the file is the source itself)."""
        import h5py

        self.source, self.what, self.size = source, what, size
        self.groups, self.datasets = {}, {}
        with source.parsing(f"{what or 'the file'} is not a readable HDF5 file"):
            self._file = h5py.File(fileobj, "r")
        try:
            with source.parsing(f"{what or 'the file'} is corrupted"):
                self._seen = {h5py.h5o.get_info(self._file.id).addr}  # the root: a link back to it is a cycle
                self._walk(self._file.id, "", 0)
        except BaseException:
            self.close()
            raise

    @classmethod
    def open(cls, source, path):
        """An HDF5 file on disk (read through a Python file object, so HDF5 itself opens no path)."""
        fileobj = open(path, "rb")
        try:
            h5 = cls(source, fileobj, None, os.fstat(fileobj.fileno()).st_size)
        except BaseException:
            fileobj.close()
            raise
        h5._fileobj = fileobj
        return h5

    def close(self):
        with contextlib.suppress(Exception):
            self._file.close()
        if getattr(self, "_fileobj", None) is not None:
            self._fileobj.close()

    def error(self, what):
        """The source's error, naming the archive member this file is."""
        return self.source.error(f"{self.what}: {what}" if self.what else what)

    def _refuse(self, path, what):
        raise self.error(f"{path or '/'} is {what}; a model file may hold only groups and datasets stored in itself")

    def _walk(self, group, path, depth):
        from h5py import h5l, h5o

        if depth > MAX_HDF5_DEPTH:
            self._refuse(path, f"nested deeper than {MAX_HDF5_DEPTH} groups")
        names = []
        for raw in group:
            try:
                name = raw.decode("utf-8")
            except UnicodeDecodeError:
                self._refuse(f"{path}/{raw!r}", "a name that is not UTF-8")
            child = f"{path}/{name}" if path else name
            kind = group.links.get_info(raw).type
            if kind != h5l.TYPE_HARD:
                links = {h5l.TYPE_SOFT: "a soft link", h5l.TYPE_EXTERNAL: "an external link"}
                self._refuse(child, links.get(kind, "a user-defined link"))
            info = h5o.get_info(group, raw)
            if info.addr in self._seen:
                self._refuse(child, "a second link to an object already linked elsewhere in the file")
            self._seen.add(info.addr)
            if len(self._seen) > MAX_HDF5_OBJECTS:
                self._refuse(child, f"object number {len(self._seen)}; fastnet reads at most {MAX_HDF5_OBJECTS}")
            if info.type == h5o.TYPE_GROUP:
                self._walk(h5o.open(group, raw), child, depth + 1)
            elif info.type == h5o.TYPE_DATASET:
                self.datasets[child] = self._dataset(child, h5o.open(group, raw))
            else:
                self._refuse(child, "a named datatype")
            names.append(name)
        self.groups[path] = names

    def _dataset(self, path, dsid):
        import h5py
        from h5py import h5d

        plist = dsid.get_create_plist()
        if plist.get_external_count():
            self._refuse(path, "a dataset stored in other files (external storage)")
        layout = plist.get_layout()
        if layout == h5d.VIRTUAL:
            self._refuse(path, "a virtual dataset (its data lives in other datasets or files)")
        if layout not in (h5d.CONTIGUOUS, h5d.COMPACT):
            self._refuse(path, "a chunked dataset; fastnet reads the contiguous datasets Keras and h5py write")
        if plist.get_nfilters():
            self._refuse(path, "a filtered (compressed) dataset")
        dataset = h5py.Dataset(dsid)
        dtype, shape = dataset.dtype, dataset.shape
        if dtype.kind not in REAL_KINDS:
            if h5py.check_dtype(ref=dtype):
                kind = "object references"
            elif h5py.check_dtype(vlen=dtype):
                kind = "variable-length data"
            else:
                kind = f"dtype {dtype}"
            raise self.error(f"{path} holds {kind}; a weight is an array of numbers")
        if shape is None:
            raise self.error(f"{path} has no dataspace (an empty dataset)")
        nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if layout == h5d.CONTIGUOUS and nbytes:
            offset = dsid.get_offset()
            if offset is None or dsid.get_storage_size() != nbytes or offset + nbytes > self.size:
                raise self.error(f"{path} declares {dtype} {shape} ({nbytes:,} bytes) that are not stored in the file")
        return Dataset(path, dsid, shape, dtype)

    def read(self, dataset):
        """A dataset's values (its shape checked by the caller)."""
        import h5py

        with self.source.parsing(f"{self.what + ': ' if self.what else ''}{dataset.path} is corrupted"):
            return h5py.Dataset(dataset.id)[()]


# ------------------------------------------------------------ the architecture against the file
def restore(source, name, layers):
    """The model these layers (read from the file) make, shapes built and no weights allocated
    (Sequential._restore); a layer that does not fit the one before it is the file's error."""
    try:
        return _registry.model_class("Sequential")._restore(name, layers)
    except (TypeError, ValueError, OverflowError) as e:
        raise source.error(str(e)) from None


def check_finite(source, array, what):
    """Refuse NaN or inf where only numbers make sense (an optimizer's state); source: a Source, or an HDF5
    (whose errors name the archive member it is)."""
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise source.error(f"{what} holds NaN or inf")
    return array


def check_weights_fit(source, shapes, available, what):
    """Refuse an architecture with more weights than `what` has bytes (any stored number takes at least one):
    what a model read from a file allocates stays within a small multiple of the file's own size."""
    count = sum(int(np.prod(shape, dtype=object)) for shape in shapes)
    if count > available:
        raise source.error(f"the model described in it has {count:,} weights but {what} is {available:,} bytes, "
                           "too small to hold them")
