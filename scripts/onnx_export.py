#!/usr/bin/env python3
"""ONNX copy of a cellsymphony model file (safetensors + metadata), built with the `onnx`
package's helper API from the weights (numpy; no torch).

    python3 scripts/onnx_export.py MODEL.safetensors OUT.onnx [--int8 OUT.int8.onnx] [--meta-json M.json]

The graph computes what the engines compute (src/engine/cpu.rs, src/engine/ops.rs):

    x        [cells, n_inputs] f32   the normalised model input (what `Classifier::prepare`
                                     gives: normalisation, then standardisation if any; for a
                                     spatial model the centroid sinusoid features follow the
                                     genes, as `engine::model_input` writes them)
    h        = (x·Wgᵀ + bg) reshaped [cells, T, D] + token_type
    per layer (pre-norm):
      a      = LayerNorm(h; eps from the config, biased variance)
      q,k,v  = a·W{q,k,v}ᵀ + b, split into H heads of D/H
      h     += softmax(q·kᵀ / sqrt(D/H) (+ attention_bias)) · v · Woᵀ + bo
      h     += GELU_erf(LayerNorm(h)·W1ᵀ + b1)·W2ᵀ + b2
    logits   = mean_T(LayerNorm(h))·Whᵀ + bh      [cells, classes] f32

Batch (cells) is dynamic. Int8 files are dequantised (`weight_q · weight_scale`), which is
the arithmetic of our int8 CPU engine up to rounding. Models with a morphology token are
refused (their ViT is not exported). `--int8` also writes onnxruntime's dynamic-quantised
copy (`quantize_dynamic`, int8 weights, per-tensor) of the fp32 graph: ORT's own int8 arm.

The GELU uses the ONNX `Erf` op (exact erf); our engines use a 1.5e-7-accurate erf
approximation (ops.rs `erf_approx`), a difference far below the test tolerance.
"""

import argparse
import json
import sys

import numpy as np
from safetensors import safe_open

import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17  # LayerNormalization (17) with axes-as-attribute ReduceMean (< 18)


class Model:
    """Tensors and metadata of a cellsymphony model file."""

    def __init__(self, path):
        with safe_open(path, framework="np") as f:
            meta = f.metadata() or {}
            if "cellsymphony" not in meta:
                raise SystemExit(f"{path}: no `cellsymphony` metadata entry: not a cellsymphony model file")
            self.meta = json.loads(meta["cellsymphony"])
            self.tensors = {k: f.get_tensor(k) for k in f.keys()}
        self.path = path
        c = self.meta["config"]
        self.config = c
        if c.get("morphology") or c.get("morph_embedding_dim") or c.get("gene_embedding_dim"):
            raise SystemExit(
                f"{path}: architecture {self.meta.get('architecture')!r} reads patches or precomputed "
                "embeddings; the ONNX export covers gene-only and spatial models")

    def f32(self, name):
        if name not in self.tensors:
            raise SystemExit(f"{self.path}: tensor `{name}` is missing")
        return np.asarray(self.tensors[name], dtype=np.float32)

    def linear(self, prefix):
        """(W [out, in] f32, b [out]); int8 tensors dequantised per output channel."""
        if f"{prefix}.weight" in self.tensors:
            w = self.f32(f"{prefix}.weight")
        else:
            q = np.asarray(self.tensors[f"{prefix}.weight_q"], dtype=np.float32)
            w = q * self.f32(f"{prefix}.weight_scale")[:, None]
        return w, self.f32(f"{prefix}.bias")

    def n_inputs(self):
        sp = self.config.get("spatial")
        return self.config["n_genes"] + (4 * sp["n_frequencies"] if sp else 0)

    def n_tokens(self):
        return self.config["gene_tokens"] + (1 if self.config.get("spatial") else 0)


class Graph:
    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def name(self, base):
        self.n += 1
        return f"{base}_{self.n}"

    def const(self, name, array):
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op_type, inputs, base, **attrs):
        out = self.name(base)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def linear(self, x, w, b, prefix):
        """x [..., in] · Wᵀ + b (MatMul + Add, the form quantize_dynamic rewrites)."""
        wt = self.const(f"{prefix}.weight_t", np.ascontiguousarray(w.T))
        bb = self.const(f"{prefix}.bias", b)
        return self.op("Add", [self.op("MatMul", [x, wt], prefix + ".mm"), bb], prefix)

    def layernorm(self, x, m, prefix, eps):
        g = self.const(f"{prefix}.gamma", m.f32(f"{prefix}.gamma"))
        b = self.const(f"{prefix}.beta", m.f32(f"{prefix}.beta"))
        return self.op("LayerNormalization", [x, g, b], prefix, axis=-1, epsilon=eps)


def build(m: Model) -> onnx.ModelProto:
    c = m.config
    d, heads, t = c["d_model"], c["n_heads"], m.n_tokens()
    hd = d // heads
    eps = float(c["layer_norm_eps"])
    g = Graph()
    shape_ntd = g.const("shape_cells_t_d", np.array([-1, t, d], dtype=np.int64))
    shape_heads = g.const("shape_cells_t_h_hd", np.array([-1, t, heads, hd], dtype=np.int64))
    scale = g.const("score_scale", np.array(1.0 / np.sqrt(np.float32(hd)), dtype=np.float32))
    half = g.const("half", np.array(0.5, dtype=np.float32))
    one = g.const("one", np.array(1.0, dtype=np.float32))
    inv_sqrt2 = g.const("inv_sqrt2", np.array(1.0 / np.sqrt(2.0), dtype=np.float32))
    bias = None
    if c.get("attention_bias"):
        bias = g.const("attention_bias", m.f32("attention_bias")[None])  # [1, H, T, T]

    w, b = m.linear("gene_embedding")
    b = b + m.f32("token_type").reshape(-1)  # token type folded into the bias, as cpu.rs does
    h = g.linear("x", w, b, "gene_embedding")
    h = g.op("Reshape", [h, shape_ntd], "tokens")  # [cells, T*D] → [cells, T, D]
    for i in range(c["n_layers"]):
        p = f"layers.{i}"
        a = g.layernorm(h, m, f"{p}.norm1", eps)
        def heads_of(proj, perm):
            y = g.linear(a, *m.linear(f"{p}.attn.{proj}"), f"{p}.attn.{proj}")
            y = g.op("Reshape", [y, shape_heads], f"{p}.{proj}.heads")
            return g.op("Transpose", [y], f"{p}.{proj}.t", perm=perm)
        q = heads_of("q", [0, 2, 1, 3])  # [cells, H, T, hd]
        k = heads_of("k", [0, 2, 3, 1])  # [cells, H, hd, T]
        v = heads_of("v", [0, 2, 1, 3])  # [cells, H, T, hd]
        s = g.op("Mul", [g.op("MatMul", [q, k], f"{p}.qk"), scale], f"{p}.scores")
        if bias is not None:
            s = g.op("Add", [s, bias], f"{p}.scores_biased")
        pr = g.op("Softmax", [s], f"{p}.softmax", axis=-1)
        o = g.op("MatMul", [pr, v], f"{p}.pv")
        o = g.op("Transpose", [o], f"{p}.pv.t", perm=[0, 2, 1, 3])
        o = g.op("Reshape", [o, shape_ntd], f"{p}.att")
        h = g.op("Add", [h, g.linear(o, *m.linear(f"{p}.attn.o"), f"{p}.attn.o")], f"{p}.res1")
        a = g.layernorm(h, m, f"{p}.norm2", eps)
        f = g.linear(a, *m.linear(f"{p}.ffn.fc1"), f"{p}.ffn.fc1")
        # GELU (erf form): x/2 · (1 + erf(x/√2)); ORT fuses this pattern into its Gelu kernel.
        e = g.op("Erf", [g.op("Mul", [f, inv_sqrt2], f"{p}.gelu.scaled")], f"{p}.gelu.erf")
        f = g.op("Mul", [g.op("Mul", [f, half], f"{p}.gelu.half"), g.op("Add", [e, one], f"{p}.gelu.1p")], f"{p}.gelu")
        h = g.op("Add", [h, g.linear(f, *m.linear(f"{p}.ffn.fc2"), f"{p}.ffn.fc2")], f"{p}.res2")
    a = g.layernorm(h, m, "final_norm", eps)
    pooled = g.op("ReduceMean", [a], "pool", axes=[1], keepdims=0)  # [cells, D]
    logits = g.linear(pooled, *m.linear("head"), "head")
    if c.get("linear_path"):
        # The linear ("wide") path on the model input, added to the head's logits.
        logits = g.op("Add", [logits, g.linear("x", *m.linear("linear_path"), "linear_path")], "head_plus_linear_path")
    g.nodes.append(helper.make_node("Identity", [logits], ["logits"], name="logits"))

    graph = helper.make_graph(
        g.nodes, "cellsymphony_" + m.meta.get("architecture", "model"),
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["cells", m.n_inputs()])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["cells", c["n_classes"]])],
        g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="cellsymphony scripts/onnx_export.py")
    model.ir_version = 8  # readable by onnxruntime (web) 1.31
    meta = {"classes": json.dumps(m.meta["classes"]), "genes": json.dumps(m.meta["genes"]),
            "normalisation": json.dumps(m.meta.get("normalisation")),
            "architecture": m.meta.get("architecture", ""), "source": str(m.path)}
    for k, v in meta.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    onnx.checker.check_model(model)
    return model


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="cellsymphony model file (.safetensors, fp32 or int8)")
    ap.add_argument("out", help="ONNX file to write (fp32 graph)")
    ap.add_argument("--int8", help="also write onnxruntime's quantize_dynamic int8 copy here")
    ap.add_argument("--meta-json", help="also write the model's metadata (config, genes, classes, normalisation) here")
    a = ap.parse_args(argv)
    source = Model(a.model)
    model = build(source)
    if a.meta_json:
        keep = ("architecture", "config", "genes", "classes", "normalisation", "quantization")
        with open(a.meta_json, "w") as f:
            meta = {k: source.meta.get(k) for k in keep}
            # Files without the entry use the default (engine/normalisation.rs).
            meta["normalisation"] = meta["normalisation"] or {"kind": "log1p_cp10k", "target_sum": 10000.0}
            json.dump(meta, f)
    onnx.save(model, a.out)
    print(f"wrote {a.out}: {len(model.graph.node)} nodes, input x [cells, {model.graph.input[0].type.tensor_type.shape.dim[1].dim_value}]")
    if a.int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic
        quantize_dynamic(a.out, a.int8, weight_type=QuantType.QInt8)
        print(f"wrote {a.int8}: onnxruntime quantize_dynamic (int8 weights, per tensor)")


if __name__ == "__main__":
    sys.exit(main())
