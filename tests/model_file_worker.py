"""Loads model files for model_files.Worker, in a process whose address space is capped at
$FASTNET_WORKER_MEMORY bytes: one JSON request per line on stdin ({"path", "arch"}), one JSON answer per line
on stdout. A file that loads must then predict one sample (when its input has at most PREDICT_LIMIT numbers)."""
import json
import os
import resource
import sys
import traceback

memory = int(os.environ.get("FASTNET_WORKER_MEMORY", 2 << 30))
resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

import numpy as np  # noqa: E402

import model_files  # noqa: E402
from fastnet.saving import ModelFileError, load_model  # noqa: E402


def answer(request):
    path, arch = request["path"], request["arch"]
    try:
        if arch is None:
            model = load_model(path)
        else:
            model = model_files.build(arch)
            model.load_weights(path)
    except ModelFileError as e:
        return {"outcome": "refused", "type": type(e).__name__, "message": str(e)}
    shape = model.input_shape[1:]
    elements = int(np.prod(shape, dtype=object))
    result = {"outcome": "loaded", "predicted": False, "input_elements": elements}
    if elements <= model_files.PREDICT_LIMIT:
        out = model.predict(np.full((1, *shape), 0.5, np.float32), verbose=0)
        result["predicted"] = out.shape == (1, *model.output_shape[1:])
    return result


for line in sys.stdin:
    try:
        reply = answer(json.loads(line))
    except BaseException as e:  # noqa: BLE001 - what escaped, is the finding
        reply = {"outcome": "escaped", "type": type(e).__name__, "message": str(e)[:2000],
                 "traceback": traceback.format_exc()[-4000:]}
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()
