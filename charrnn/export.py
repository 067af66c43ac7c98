"""Export a model as an ONNX graph of one step, to run it elsewhere (onnxruntime,
a browser, a phone): `pip install "charrnn[onnx]"`.

The graph (opset 17), for a batch of B streams:
    inputs   id (B,) int64          the character just read (its index in the vocabulary)
             h  (L, B, H) float32   the hidden state (zeros to start)
             c  (L, B, H) float32   the LSTM cell state (zeros; unused by rnn and gru)
    outputs  logits (B, V) float32  scores of the next character (softmax for probabilities)
             h_out, c_out           the state after the step, to feed back
The vocabulary is in the model's metadata: `vocab` is the characters as a JSON
string (id = index), `cell`, `layers`, `hidden`; also `charrnn_version`.
A sequence is run by calling the graph once per character, as charrnn samples.
"""
import json

import numpy as np

from charrnn import __version__
from charrnn.errors import DataError

OPSET = 17


class ExportError(DataError):
    """The export cannot be made; the message says why and what to do."""


def _onnx():
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise ExportError("ONNX export needs the onnx package: pip install \"charrnn[onnx]\"") from None
    return onnx, TensorProto, helper, numpy_helper


def build(ck):
    """The ONNX ModelProto of one step of checkpoint `ck`'s network."""
    onnx, TP, helper, numpy_helper = _onnx()
    m = ck.model_cfg
    L, H, V = m.layers, m.hidden, m.vocab_size
    p = {k: np.asarray(v, np.float32) for k, v in ck.params.items()}
    inits, nodes = [], []
    counter = [0]

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def node(op, inputs, **attrs):
        counter[0] += 1
        out = f"{op.lower()}_{counter[0]}"
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def gate(a, k):     # columns [k H, (k + 1) H) of a (B, G) tensor
        return node("Slice", [a, const(f"s{k}_{counter[0]}", np.array([k * H], np.int64)),
                              const(f"e{k}_{counter[0]}", np.array([(k + 1) * H], np.int64)),
                              const(f"ax{k}_{counter[0]}", np.array([1], np.int64))])

    axis0 = const("axis0", np.array([0], np.int64))
    hs, cs = [], []
    x = None
    for l in range(L):
        h_l = node("Squeeze", [node("Gather", ["h", const(f"i{l}", np.array([l], np.int64))], axis=0), axis0])
        c_l = node("Squeeze", [node("Gather", ["c", const(f"j{l}", np.array([l], np.int64))], axis=0), axis0])
        Wx, Wh, b = const(f"l{l}.Wx", p[f"l{l}.Wx"]), const(f"l{l}.Wh", p[f"l{l}.Wh"]), const(f"l{l}.b", p[f"l{l}.b"])
        ax = node("Gather", [Wx, "id"], axis=0) if l == 0 else node("MatMul", [x, Wx])
        ax = node("Add", [ax, b])                                   # (B, G)
        ah = node("MatMul", [h_l, Wh])                              # (B, G)
        if m.model == "rnn":
            h_new = node("Tanh", [node("Add", [ax, ah])])
            c_new = c_l
        elif m.model == "lstm":
            a = node("Add", [ax, ah])
            i, f = node("Sigmoid", [gate(a, 0)]), node("Sigmoid", [gate(a, 1)])
            g, o = node("Tanh", [gate(a, 2)]), node("Sigmoid", [gate(a, 3)])
            c_new = node("Add", [node("Mul", [f, c_l]), node("Mul", [i, g])])
            h_new = node("Mul", [o, node("Tanh", [c_new])])
        else:   # gru: r, z = s(.), n = tanh(x Wx_n + b_n + r * (h Wh_n)), h' = (1 - z) n + z h
            r = node("Sigmoid", [node("Add", [gate(ax, 0), gate(ah, 0)])])
            z = node("Sigmoid", [node("Add", [gate(ax, 1), gate(ah, 1)])])
            n = node("Tanh", [node("Add", [gate(ax, 2), node("Mul", [r, gate(ah, 2)])])])
            one = const(f"one{l}", np.array(1.0, np.float32))
            h_new = node("Add", [node("Mul", [node("Sub", [one, z]), n]), node("Mul", [z, h_l])])
            c_new = c_l
        hs.append(node("Unsqueeze", [h_new, axis0]))
        cs.append(node("Unsqueeze", [c_new, axis0]))
        x = h_new
    logits = node("Add", [node("MatMul", [x, const("Wy", p["Wy"])]), const("by", p["by"])])
    nodes.append(helper.make_node("Identity", [logits], ["logits"]))
    nodes.append(helper.make_node("Concat", hs, ["h_out"], axis=0) if L > 1 else
                 helper.make_node("Identity", hs, ["h_out"]))
    nodes.append(helper.make_node("Concat", cs, ["c_out"], axis=0) if L > 1 else
                 helper.make_node("Identity", cs, ["c_out"]))
    f32 = TP.FLOAT
    graph = helper.make_graph(
        nodes, f"charrnn_{m.model}_{L}x{H}",
        [helper.make_tensor_value_info("id", TP.INT64, ["B"]),
         helper.make_tensor_value_info("h", f32, [L, "B", H]),
         helper.make_tensor_value_info("c", f32, [L, "B", H])],
        [helper.make_tensor_value_info("logits", f32, ["B", V]),
         helper.make_tensor_value_info("h_out", f32, [L, "B", H]),
         helper.make_tensor_value_info("c_out", f32, [L, "B", H])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="charrnn", producer_version=__version__)
    model.ir_version = 8          # readable by onnxruntime releases of the last years
    meta = {"vocab": json.dumps("".join(ck.vocab.chars.tolist())), "cell": m.model,
            "layers": str(L), "hidden": str(H), "charrnn_version": __version__}
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(model)
    return model


def export_onnx(ck, path):
    """Write checkpoint `ck` as ONNX to `path`."""
    onnx, *_ = _onnx()
    model = build(ck)
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    return model
