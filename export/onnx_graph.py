"""Building the ONNX files: trace the PyTorch model, fuse it, convert it to fp16 or int8.

The recipe that makes the fp16 graph beat PyTorch (see docs/benchmarks.md): export with
eager attention through the TorchScript exporter (`dynamo=False`, opset 17), so that ONNX
Runtime's BERT optimizer recognises each layer's attention and fuses it into one `Attention`
node. A graph whose attention stays unfused runs slower than PyTorch fp16 on long inputs,
so `fuse` reports the counts and the caller refuses a graph with no fused attention.
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from es_rerank.scoring.export_meta import ONNX_DTYPE_KEY

OPSET = 17
# Fused operators worth recording; the counts of the int8 graph use their quantized names.
FUSED_OPS = ("EmbedLayerNormalization", "Attention", "MultiHeadAttention", "SkipLayerNormalization",
             "BiasGelu", "FastGelu", "Gelu", "LayerNormalization",
             "QEmbedLayerNormalization", "QAttention", "MatMulInteger", "DynamicQuantizeMatMul")


def _logits_module(model, input_names: Sequence[str]):
    """`model` behind a forward whose positional inputs are the named model inputs and whose one
    output is the logits tensor, so the traced graph has exactly those inputs and that output."""
    import torch

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors):
            return self.model(**dict(zip(input_names, tensors))).logits

    return Logits().eval()


def trace(model, path: str | Path, example: Mapping[str, np.ndarray]) -> list[str]:
    """Export `model` (fp32, eager attention) to `path` with dynamic batch and sequence axes.

    `example` maps each input name, in the order the graph should take them, to an int64 array
    of shape (batch, sequence): a real tokenized batch whose rows are padded to different
    lengths, so the traced graph carries the real mask and position-id computations and every
    id is in the model's vocabulary. Returns the inputs the traced graph kept: an input the
    model ignores (DeBERTa-v3's token type ids: it has no segment embedding) is dropped.
    """
    import onnx
    import torch

    input_names = list(example)
    tensors = tuple(torch.from_numpy(np.ascontiguousarray(example[name], dtype=np.int64)) for name in input_names)
    axes = {name: {0: "batch", 1: "sequence"} for name in input_names}
    axes["logits"] = {0: "batch"}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes
        torch.onnx.export(_logits_module(model, input_names), tensors, str(path),
                          dynamo=False, opset_version=OPSET, input_names=input_names,
                          output_names=["logits"], dynamic_axes=axes, do_constant_folding=True)
    kept = {i.name for i in onnx.load(str(path), load_external_data=False).graph.input}
    return [name for name in input_names if name in kept]


def fuse(path: str | Path, num_heads: int, hidden_size: int, use_gpu: bool = False):
    """Run ONNX Runtime's BERT fusions on `path`; returns (OnnxModel, nonzero fused-op counts).
    """
    import logging

    from onnxruntime.transformers.optimizer import optimize_model

    quiet = logging.getLogger("onnxruntime.transformers")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        model = optimize_model(str(path), model_type="bert", num_heads=num_heads, hidden_size=hidden_size,
                               opt_level=0, use_gpu=use_gpu)
    finally:
        quiet.setLevel(level)
    counts = {op: n for op, n in model.get_fused_operator_statistics().items() if n}
    return model, counts


def to_fp16(model) -> None:
    """Convert an optimizer `OnnxModel` to fp16 in place, keeping fp32 inputs and outputs.
    """
    model.convert_float_to_float16(keep_io_types=True)


def save(model, path: str | Path, dtype: str) -> None:
    """Save an optimizer `OnnxModel`, labelled with its dtype (the scorer checks the label).
    """
    label(model.model, dtype)
    model.save_model_to_file(str(path))


def quantize_int8(fp32_path: str | Path, out_path: str | Path) -> dict[str, int]:
    """Dynamic int8 quantization of a fused fp32 graph for CPU serving; returns its fused-op counts.

    Weights are quantized to int8 ahead of time, one scale per output channel (on MiniLM-L6
    with a fresh head this halved the largest |Δlogit| against one scale per tensor), and
    activations on the fly per batch; the fused Attention and embedding nodes become
    QAttention and QEmbedLayerNormalization.
    """
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs generic "consider pre-processing" advice
    try:
        # DefaultTensorType: shape inference cannot type the outputs of fused (com.microsoft) nodes
        quantize_dynamic(str(fp32_path), str(out_path), weight_type=QuantType.QInt8,
                         per_channel=True, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        root.setLevel(level)
    quantized = onnx.load(str(out_path))
    label(quantized, "int8")
    onnx.save(quantized, str(out_path))
    return op_counts(quantized)


def op_counts(model) -> dict[str, int]:
    """How many of each fused operator an `onnx.ModelProto` holds (zero counts left out).

    Example:
        >>> import onnx
        >>> op_counts(onnx.helper.make_model(onnx.helper.make_graph([], "empty", [], [])))
        {}
    """
    counts = Counter(node.op_type for node in model.graph.node)
    return {op: counts[op] for op in FUSED_OPS if counts[op]}


def label(model, dtype: str) -> None:
    """Write `dtype` into an `onnx.ModelProto`'s metadata under es-rerank's key.

    Example:
        >>> import onnx
        >>> m = onnx.helper.make_model(onnx.helper.make_graph([], "empty", [], []))
        >>> label(m, "float16"); [(p.key, p.value) for p in m.metadata_props]
        [('es_rerank.dtype', 'float16')]
    """
    for prop in list(model.metadata_props):
        if prop.key == ONNX_DTYPE_KEY:
            model.metadata_props.remove(prop)
    entry = model.metadata_props.add()
    entry.key, entry.value = ONNX_DTYPE_KEY, dtype
