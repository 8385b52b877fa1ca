#!/usr/bin/env python3
"""tests/onnx_export.rs helper: export a cellsymphony model file to ONNX with
scripts/onnx_export.py (plus onnxruntime's quantize_dynamic int8 copy) and run both graphs
with onnxruntime (CPU) on a model input.

    onnx_parity.py MODEL.safetensors X.f32 N_CELLS OUT_DIR

X.f32: the model input [N_CELLS, n_inputs] as little-endian f32 (what our engine's
`Classifier::prepare` gives). Writes OUT_DIR/model.onnx, OUT_DIR/model.int8.onnx,
OUT_DIR/logits.f32 and OUT_DIR/logits_int8.f32 ([N_CELLS, classes] f32).
"""
import os
import sys

import numpy as np
import onnxruntime as ort

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
import onnx_export  # noqa: E402


def main():
    model, x_path, n_cells, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    fp32, int8 = os.path.join(out, "model.onnx"), os.path.join(out, "model.int8.onnx")
    onnx_export.main([model, fp32, "--int8", int8])
    x = np.fromfile(x_path, dtype="<f4").reshape(n_cells, -1)
    for graph, dst in [(fp32, "logits.f32"), (int8, "logits_int8.f32")]:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
        logits = sess.run(["logits"], {"x": x})[0]
        assert logits.shape[0] == n_cells, logits.shape
        logits.astype("<f4").tofile(os.path.join(out, dst))
    print(f"onnxruntime {ort.__version__}: {n_cells} cells through {fp32} and {int8}")


if __name__ == "__main__":
    main()
