"""Cutting the last layer down to the one token the head reads.

A cross-encoder's head reads only the first token ([CLS]): the traced graph ends in
`Gather(axis=1, index 0)` on the encoder's output. Every node between that Gather and the last
attention (output projection, feed-forward, layer norms, residual adds) works on each token by
itself, so the Gather commutes with them. Moving it above them gives the same logits and skips
that work for every other token: about three quarters of the last layer's FLOPs, an eighth of
MiniLM-L6's. The attention itself stays whole, since [CLS] attends to every token.

`slice_first_token_early` rewrites the graph only where every moved node provably works row by
row (see `_row_inputs`); the export then checks the result against the untouched graph on a
real padded batch, and parity against PyTorch checks it again.
"""

from __future__ import annotations

import numpy as np

# Per-token ops with no weights of their own, or weights that broadcast over the last axis only.
_ELEMENTWISE = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Erf", "Tanh", "Relu", "Sigmoid", "Sqrt", "Cast",
                          "Identity", "Gelu", "FastGelu", "BiasGelu", "QuickGelu"})
_LAST_AXIS_NORMS = frozenset({"LayerNormalization", "SimplifiedLayerNormalization"})
_SKIP_NORMS = frozenset({"SkipLayerNormalization", "SkipSimplifiedLayerNormalization"})
SLICED_SUFFIX = "/first_token"


def slice_first_token_early(graph) -> int:
    """Move the head's first-token Gather of `graph` (an `onnx.GraphProto`, changed in place) above
    the row-wise nodes that feed it; returns how many nodes now run on one token (0: unchanged).

    Example: a LayerNorm then a MatMul, then the head's Gather; both move below a new Gather.
        >>> import onnx
        >>> from onnx import TensorProto, helper, numpy_helper
        >>> w = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
        >>> g, b = (numpy_helper.from_array(np.ones(4, np.float32), n) for n in ("g", "b"))
        >>> zero = numpy_helper.from_array(np.array(0, np.int64), "zero")
        >>> graph = helper.make_graph(
        ...     [helper.make_node("LayerNormalization", ["x", "g", "b"], ["n"]),
        ...      helper.make_node("MatMul", ["n", "w"], ["m"]),
        ...      helper.make_node("Gather", ["m", "zero"], ["cls"], axis=1)], "head",
        ...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "S", 4])],
        ...     [helper.make_tensor_value_info("cls", TensorProto.FLOAT, ["B", 4])], [w, g, b, zero])
        >>> slice_first_token_early(graph)
        2
        >>> [(n.op_type, list(n.input)) for n in graph.node][:2]
        [('Gather', ['x', 'x/first_token/index']), ('LayerNormalization', ['x/first_token', 'g', 'b'])]
    """
    constants = _constant_values(graph)
    head = _head_gather(graph, constants)
    if head is None:
        return 0
    nodes = list(graph.node)
    producer = {out: i for i, node in enumerate(nodes) for out in node.output if out}
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        for name in node.input:
            consumers.setdefault(name, []).append(i)
    graph_outputs = {o.name for o in graph.output}

    moved: set[int] = set()
    wanted = {nodes[head].input[0]}  # tensors the sliced region reads in full so far
    for i in range(head - 1, -1, -1):  # reverse topological: a node's consumers are decided first
        node = nodes[i]
        outputs = [o for o in node.output if o]
        if not wanted & set(outputs):
            continue
        inputs = _row_inputs(node, constants)
        if inputs is None or graph_outputs & set(outputs):
            continue
        if any(c != head and c not in moved for o in outputs for c in consumers.get(o, [])):
            continue  # a node that stays whole reads this output
        moved.add(i)
        wanted -= set(outputs)
        wanted |= set(inputs)
    if not moved:
        return 0
    _rewrite(graph, nodes, moved, wanted, producer)
    return len(moved)


def _rewrite(graph, nodes, moved: set[int], frontier: set[str], producer: dict[str, int]) -> None:
    """Insert one first-token Gather per frontier tensor and point the moved nodes at it."""
    from onnx import helper, numpy_helper

    renamed = {name: name + SLICED_SUFFIX for name in frontier}
    gathers: dict[int, list] = {}
    for name in sorted(frontier):
        index = numpy_helper.from_array(np.array([0], dtype=np.int64), renamed[name] + "/index")
        graph.initializer.append(index)
        # A one-element index keeps the sequence axis (length 1), so the moved nodes see the
        # shapes they were built for; the head's own Gather then drops that axis as before.
        gather = helper.make_node("Gather", [name, index.name], [renamed[name]], axis=1,
                                  name=renamed[name] + "/Gather")
        gathers.setdefault(producer.get(name, -1), []).append(gather)
    for i in moved:
        node = nodes[i]
        for k, name in enumerate(node.input):
            if name in renamed:
                node.input[k] = renamed[name]
    ordered = list(gathers.get(-1, []))
    for i, node in enumerate(nodes):
        ordered.append(node)
        ordered += gathers.get(i, [])
    del graph.node[:]
    graph.node.extend(ordered)
    # Shapes recorded for the moved outputs now have one token: drop them, the runtime infers them.
    changed = {o for i in moved for o in nodes[i].output}
    kept = [v for v in graph.value_info if v.name not in changed]
    del graph.value_info[:]
    graph.value_info.extend(kept)


def _head_gather(graph, constants: dict[str, np.ndarray]) -> int | None:
    """Index of the last node that takes token 0 of a (batch, sequence, hidden) tensor, if any."""
    for i in range(len(graph.node) - 1, -1, -1):
        node = graph.node[i]
        if node.op_type != "Gather" or _int_attribute(node, "axis", 0) != 1 or len(node.input) != 2:
            continue
        index = constants.get(node.input[1])
        if index is not None and index.ndim == 0 and int(index) == 0:
            return i
    return None


def _row_inputs(node, constants: dict[str, np.ndarray]) -> list[str] | None:
    """The activation inputs of `node` if it computes each token's row from that token's rows
    alone, else None. Weights must be constants that broadcast over the last axis only."""
    op = node.op_type
    names = [n for n in node.input if n]
    if op == "MatMul":
        weight = constants.get(node.input[1]) if len(node.input) == 2 else None
        return [node.input[0]] if weight is not None and weight.ndim == 2 and node.input[0] not in constants else None
    if op in _LAST_AXIS_NORMS:
        if _int_attribute(node, "axis", -1) != -1 or not all(n in constants for n in names[1:]):
            return None
        return [names[0]]
    if op in _SKIP_NORMS:
        if len(names) < 2 or not all(n in constants for n in names[2:]):
            return None
        return [n for n in names[:2] if n not in constants]
    if op in _ELEMENTWISE:
        if any(constants[n].ndim > 1 for n in names if n in constants):
            return None
        activations = [n for n in names if n not in constants]
        return activations or None
    return None


def _constant_values(graph) -> dict[str, np.ndarray]:
    """Initializers and Constant-node outputs of `graph`, as arrays."""
    from onnx import numpy_helper

    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _int_attribute(node, name: str, default: int) -> int:
    for attribute in node.attribute:
        if attribute.name == name:
            return int(attribute.i)
    return default


def slice_checked(model, example) -> tuple[int, str]:
    """`slice_first_token_early` on `model` (an `onnx.ModelProto`, changed in place only when the
    result holds), checked on `example` (input name -> batch) against the untouched graph
    with ONNX Runtime on the CPU. Returns (nodes moved, a note for the export log).
    """
    import onnx
    import onnxruntime

    try:
        before = model.SerializeToString()
    except ValueError:  # over protobuf's 2 GB: no in-memory check possible, so leave it whole
        return 0, "the graph is too large to check in memory; the last layer stays whole"
    sliced = onnx.load_from_string(before)
    moved = slice_first_token_early(sliced.graph)
    if not moved:
        return 0, "no first-token head found after row-wise nodes; the last layer stays whole"
    providers = ["CPUExecutionProvider"]
    try:
        expected = onnxruntime.InferenceSession(before, providers=providers).run(None, dict(example))[0]
        got = onnxruntime.InferenceSession(sliced.SerializeToString(), providers=providers).run(None, dict(example))[0]
    except Exception as exc:  # e.g. an op without a CPU kernel: unchecked, so not used
        return 0, f"could not check the sliced graph on the CPU ({type(exc).__name__}); the last layer stays whole"
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-4, atol=1e-4):
        return 0, "the sliced graph's logits differ from the whole graph's; the last layer stays whole"
    model.CopyFrom(sliced)
    return moved, f"the head's first-token slice moved above {moved} row-wise nodes of the last layer"
