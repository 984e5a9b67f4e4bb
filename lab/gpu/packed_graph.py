"""Unpadded attention for the fused BERT graph: ONNX Runtime's `RemovePadding` + `PackedAttention`.

The fused `Attention` nodes of our export run on the padded batch, with a 1-D mask (each row's
length). In packed form the encoder works on the T real tokens of the batch ([T, hidden] instead
of [batch, seq, hidden]), and `PackedAttention` runs on cumulative sequence lengths. The probe
measures whether that pays: on an H100 it did not (0.83x), since the padded graph already gets
cuDNN's flash attention and the length-sorted batches carry little padding (docs/benchmarks.md).

ONNX Runtime's own `convert_to_packing_mode` restores the padding after the last layer norm.
In our served graph the last layer already works on [CLS] alone (`export/first_token.py`), so
that would restore padding on a tensor that has none. Here each first-token `Gather(axis=1,
index 0)` on a packed tensor becomes a `Gather(axis=0)` at each row's first packed position
(the cumulative lengths without their last entry). The graph's inputs and outputs stay as
they were, so a session over the packed file is fed exactly like the served one.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

MS_DOMAIN = "com.microsoft"
# Nodes that work on each token by itself, so they run on [T, hidden] as they did on [B, S, hidden].
_ROW_WISE = frozenset({"MatMul", "Add", "Mul", "SkipLayerNormalization", "LayerNormalization", "BiasGelu",
                       "Gelu", "FastGelu", "Cast"})


def pack_attention(model: onnx.ModelProto) -> int:
    """Rewrite `model` (changed in place) to unpadded attention; returns how many `Attention`
    nodes became `PackedAttention`. Raises ValueError, naming the node, where a node would see
    the packed tensor but does not work row by row."""
    graph = model.graph
    attentions = [n for n in graph.node if n.op_type == "Attention" and n.domain == MS_DOMAIN]
    if not attentions:
        raise ValueError("the graph has no fused Attention node; export with the ONNX Runtime optimizer first")
    masks = {n.input[3] if len(n.input) > 3 else "" for n in attentions}
    if len(masks) != 1 or "" in masks:
        raise ValueError(f"the Attention nodes must share one 1-D mask input; they use {sorted(masks)}")
    mask = masks.pop()
    hidden = attentions[0].input[0]
    packed, offsets, cumulative, max_len = (f"{hidden}/packed", f"{hidden}/token_offset",
                                            f"{hidden}/cumulative_lengths", f"{hidden}/max_length")
    consumers = _consumers(graph)
    constants = _constants(graph)
    region = _packed_region(hidden, consumers, constants)

    starts = [numpy_helper.from_array(np.array([0], np.int64), f"{hidden}/zero"),
              numpy_helper.from_array(np.array([-1], np.int64), f"{hidden}/minus_one"),
              numpy_helper.from_array(np.array([1], np.int64), f"{hidden}/one_axis")]
    graph.initializer.extend(starts)
    first_rows = f"{hidden}/first_rows"
    added = [helper.make_node("RemovePadding", [hidden, mask], [packed, offsets, cumulative, max_len],
                              name=f"{hidden}/RemovePadding", domain=MS_DOMAIN),
             helper.make_node("Slice", [cumulative, starts[0].name, starts[1].name], [first_rows],
                              name=f"{hidden}/FirstRows")]
    new_nodes = []
    for node in graph.node:
        if node.op_type == "Attention" and node.domain == MS_DOMAIN:
            new_nodes.append(_packed_attention(node, offsets, cumulative))
            continue
        if node.op_type == "Gather" and node.input[0] in region and node.output[0] not in region:
            new_nodes.extend(_first_token_gather(node, constants, first_rows, starts[2].name))
            continue
        new_nodes.append(node)
    for node in new_nodes:
        for i, name in enumerate(node.input):
            if name == hidden and node.op_type != "RemovePadding":
                node.input[i] = packed
    # RemovePadding must run before the first node that reads the packed tensor.
    producer_of_hidden = next(i for i, n in enumerate(new_nodes) if hidden in n.output)
    new_nodes[producer_of_hidden + 1:producer_of_hidden + 1] = added
    del graph.node[:]
    graph.node.extend(new_nodes)
    _drop_shape_hints(graph, region)
    return len(attentions)


def _consumers(graph) -> dict[str, list]:
    users: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    return users


def _constants(graph) -> dict[str, np.ndarray]:
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _packed_region(hidden: str, consumers: dict[str, list], constants: dict[str, np.ndarray]) -> set[str]:
    """Every tensor that holds one row per real token once `hidden` is packed."""
    region, todo = {hidden}, [hidden]
    while todo:
        name = todo.pop()
        for node in consumers.get(name, []):
            if node.op_type == "Gather":
                if not _is_first_token(node, constants):
                    raise ValueError(f"{node.name} gathers from a per-token tensor, but not the first token")
                continue
            if node.op_type not in _ROW_WISE and not (node.op_type == "Attention" and node.domain == MS_DOMAIN):
                raise ValueError(f"{node.name} ({node.op_type}) reads a per-token tensor and is not row-wise;"
                                 " this graph cannot be packed")
            for out in node.output:
                if out and out not in region:
                    region.add(out)
                    todo.append(out)
    return region


def _is_first_token(node, constants: dict[str, np.ndarray]) -> bool:
    axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), 0)
    index = constants.get(node.input[1])
    return axis == 1 and index is not None and index.size == 1 and int(index.reshape(-1)[0]) == 0


def _packed_attention(node, offsets: str, cumulative: str):
    bias_input = node.input[5] if len(node.input) > 5 else ""
    packed = helper.make_node("PackedAttention", [node.input[0], node.input[1], node.input[2], offsets, cumulative,
                                                  bias_input], list(node.output[:1]),
                              name=f"{node.name}/packed", domain=MS_DOMAIN)
    packed.attribute.extend(a for a in node.attribute if a.name in ("num_heads", "qkv_hidden_sizes", "scale"))
    return packed


def _first_token_gather(node, constants: dict[str, np.ndarray], first_rows: str, axis_one: str) -> list:
    """[B, S, H] -> Gather(axis 1, 0) becomes [T, H] -> Gather(axis 0, each row's first position),
    keeping the original index's rank (a [1] index keeps the sequence axis)."""
    rows = first_rows
    nodes = []
    if constants[node.input[1]].ndim == 1:
        rows = f"{node.output[0]}/rows"
        nodes.append(helper.make_node("Unsqueeze", [first_rows, axis_one], [rows], name=f"{node.name}/rows"))
    nodes.append(helper.make_node("Gather", [node.input[0], rows], list(node.output), axis=0,
                                  name=f"{node.name}/packed"))
    return nodes


def _drop_shape_hints(graph, region: set[str]) -> None:
    """Shapes recorded for the padded tensors no longer hold; let ONNX Runtime infer them."""
    kept = [v for v in graph.value_info if v.name not in region]
    del graph.value_info[:]
    graph.value_info.extend(kept)


def packed_copy(source: str, target: str) -> int:
    """Write the packed form of the ONNX file `source` to `target`; returns the packed node count."""
    model = onnx.load(source)
    count = pack_attention(model)
    onnx.checker.check_model(model)
    onnx.save(model, target)
    return count


__all__ = ["pack_attention", "packed_copy"]
