"""Raw-array exchange with the Rust tests: little-endian f32/f64 files plus meta.json."""
import json
import os

import numpy as np


def load_meta(d):
    with open(os.path.join(d, "meta.json")) as f:
        return json.load(f)


def read(d, name, dtype, shape):
    a = np.fromfile(os.path.join(d, name), dtype=dtype)
    return a.reshape(shape)


def write(d, name, array):
    np.ascontiguousarray(array, dtype="<f8").tofile(os.path.join(d, name))


def write_json(d, name, obj):
    with open(os.path.join(d, name), "w") as f:
        json.dump(obj, f)
