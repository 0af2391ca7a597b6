"""Write docs/ERRORS.md: every case of tests/error_cases.py, run now, with the message it gets.

    python docs/make_errors.py

tests/test_errors.py fails when the file differs from what this script writes.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

from error_cases import CASES, run  # noqa: E402

HEAD = """# Bad input and the error it gets

Every public entry point checks what it is given before any C code runs (C trusts its arguments; the Cython
layer and the Python API check them). Each row below is a case in `tests/error_cases.py`, run by
`tests/test_errors.py` and again by `docs/make_errors.py`, which wrote this file: the message is what fastnet
printed, not typed by hand. In the code, `mlp` is a compiled 784-16-10 MLP, `cnn` a compiled channels_first CNN on
(1, 28, 28) images, `x` four flat images (4, 784), `images` four channels_last images (4, 28, 28, 1), `y` their
one-hot labels, `labels` the same as integers and `tmp` an empty folder (shown as `<tmp>`).

Three property-based fuzzers try far more than these rows: `tests/test_fuzz_kernels.py` (every kernel, random
shapes, strides, thread counts and aliased arguments; also under AddressSanitizer in `.ci/sanitize`),
`tests/test_fuzz_api.py` (random small models through fit, predict, evaluate, save and load_model) and
`tests/test_fuzz_model_files.py` (valid `.keras`, `.weights.h5`, `.npz` and `.onnx` files mutated byte by byte,
member by member, field by field, object by object and node by node, each loaded in a process capped at 2 GiB).
None may see a crash, an internal exception type or a message from numpy instead of fastnet's own.

| bad input | code | what fastnet raises |
|---|---|---|
"""

TAIL = """
## Nothing is lost

- Models (`save`, `ModelCheckpoint`), histories (`fastnet-train`'s JSON and CSV, `CSVLogger`) and pictures are
  written to a locked `.NAME.*.partial` file beside the target and renamed into place: a crash, a full disk or a
  Ctrl-C leaves the old file or the new one, never half of one (`tests/test_interrupt.py` fails a save mid-way).
  The next save of the same file removes the partial files that saves killed outright left, those no living
  process holds locked (`tests/test_atomic_writes.py` kills saving processes with SIGKILL). A new file gets the
  mode your umask gives a plain `open()`; a replaced one keeps its mode.
- Callbacks check their targets when training begins, as Keras does: `CSVLogger` opens its log (a folder in the
  way fails before the first batch), `ModelCheckpoint` makes its folder, and refuses a name fastnet cannot write
  (Keras 2's `.hdf5`) when it is made.
- `fit` cut short by Ctrl-C or any exception leaves the model with the weights of its last completed step and
  `model.history` with every finished epoch; it trains and predicts on. The kernel that updates the weights also
  advances the step counts, so a signal cannot land between the two.
- Downloads go to a temporary file in the cache folder, are verified (SHA256 of the decompressed IDX bytes),
  then renamed: the cache never holds an unverified file, also when several processes download at once.
- A NaN or inf loss is caught before the optimizer step: `fit` raises (or, with `TerminateOnNaN`, stops) with the
  weights of the last good step.
- Model files are untrusted input (`fastnet/_untrusted.py`): nothing in them runs (no pickle, classes only from
  fastnet's own tables), nothing outside them is read (HDF5 links, external and virtual storage refused before any
  data is read), and no size they claim is trusted (every array's shape is checked against the architecture, and
  the architecture against the file's size, before anything is allocated). Any malformed file is a
  `ModelFileError` (`KerasFileError` for Keras's formats) naming the file and what is wrong.
"""


def _cell(text):
    return text.replace("|", "\\|").replace("\n", " ")


def render():
    rows = []
    for case in CASES:
        exc, message = run(case)
        if exc is None:
            raise SystemExit(f"{case.code!r} raised nothing: fix the case or the code")
        rows.append(f"| {_cell(case.title)} | `{_cell(case.code)}` | `{type(exc).__name__}`: {_cell(message)} |")
    return HEAD + "\n".join(rows) + "\n" + TAIL


def main():
    text = render()
    path = os.path.join(HERE, "ERRORS.md")
    tmp = path + ".partial"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    print(f"wrote {path} ({len(CASES)} cases)")


if __name__ == "__main__":
    main()
