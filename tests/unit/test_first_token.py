"""The first-token slice of the last layer (export/first_token.py) on small hand-built graphs:
what moves, what must stay whole, and that ONNX Runtime gives the same logits either way."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper

from es_rerank.export.first_token import SLICED_SUFFIX, slice_checked, slice_first_token_early

H = 4


def constant(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def head_graph(nodes, extra_initializers=()) -> onnx.GraphProto:
    """x (B, S, H) -> `nodes` -> "hidden" -> Gather(token 0) -> "cls"."""
    rng = np.random.default_rng(0)
    initializers = [constant("w", rng.normal(size=(H, H)).astype(np.float32)),
                    constant("g", np.ones(H, np.float32)), constant("b", np.zeros(H, np.float32)),
                    constant("zero", np.array(0, np.int64)), *extra_initializers]
    nodes = [*nodes, helper.make_node("Gather", ["hidden", "zero"], ["cls"], axis=1)]
    return helper.make_graph(nodes, "head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "S", H])],
                             [helper.make_tensor_value_info("cls", TensorProto.FLOAT, ["B", H])], initializers)


def run(graph: onnx.GraphProto, x: np.ndarray) -> np.ndarray:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_a_residual_block_moves_whole_and_scores_the_same():
    # n = LayerNorm(x); m = n @ w; hidden = LayerNorm(m + n): the residual n is read twice.
    nodes = [helper.make_node("LayerNormalization", ["x", "g", "b"], ["n"]),
             helper.make_node("MatMul", ["n", "w"], ["m"]),
             helper.make_node("Add", ["m", "n"], ["r"]),
             helper.make_node("LayerNormalization", ["r", "g", "b"], ["hidden"])]
    x = np.random.default_rng(1).normal(size=(3, 5, H)).astype(np.float32)
    graph = head_graph(nodes)
    expected = run(graph, x)
    assert slice_first_token_early(graph) == 4
    sliced = [n for n in graph.node if n.op_type == "Gather" and n.output[0].endswith(SLICED_SUFFIX)]
    assert [n.input[0] for n in sliced] == ["x"]  # one slice, at the top
    np.testing.assert_allclose(run(graph, x), expected, rtol=0, atol=1e-6)


def test_mixing_across_tokens_stops_the_slice():
    # mixed = x^T x mixes tokens (a MatMul of two activations, like attention): what comes after it
    # moves, it and what comes before it stay whole.
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["x", "xt"], ["scores"]),
             helper.make_node("MatMul", ["scores", "x"], ["mixed"]),
             helper.make_node("MatMul", ["mixed", "w"], ["hidden"])]
    x = np.random.default_rng(2).normal(size=(2, 6, H)).astype(np.float32)
    graph = head_graph(nodes)
    expected = run(graph, x)
    assert slice_first_token_early(graph) == 1
    assert [n.input[0] for n in graph.node if n.output[0].endswith(SLICED_SUFFIX)] == ["mixed"]
    np.testing.assert_allclose(run(graph, x), expected, rtol=0, atol=1e-5)


def test_an_output_read_elsewhere_stays_whole():
    # n feeds the head's path and a second graph output: n's producer must stay whole.
    nodes = [helper.make_node("LayerNormalization", ["x", "g", "b"], ["n"]),
             helper.make_node("MatMul", ["n", "w"], ["hidden"]),
             helper.make_node("ReduceMean", ["n"], ["pooled"], axes=[1], keepdims=0)]
    graph = head_graph(nodes)
    graph.output.append(helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["B", H]))
    assert slice_first_token_early(graph) == 1
    assert [n.input[0] for n in graph.node if n.output[0].endswith(SLICED_SUFFIX)] == ["n"]
    assert [n.op_type for n in graph.node if "n" in n.input] == ["Gather", "ReduceMean"]


def test_weights_that_vary_along_the_sequence_stay_whole():
    # A (S, H) position table added to x is not row-wise: it must not move.
    table = constant("table", np.arange(5 * H, dtype=np.float32).reshape(5, H))
    nodes = [helper.make_node("Add", ["x", "table"], ["hidden"])]
    graph = head_graph(nodes, [table])
    assert slice_first_token_early(graph) == 0


def test_a_graph_without_a_first_token_head_is_left_alone():
    graph = head_graph([helper.make_node("MatMul", ["x", "w"], ["hidden"])])
    graph.node[-1].attribute[0].i = 0  # Gather on the batch axis: not a token head
    before = graph.SerializeToString()
    assert slice_first_token_early(graph) == 0
    assert graph.SerializeToString() == before


def test_slice_checked_keeps_the_sliced_graph_only_when_it_scores_the_same():
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Tanh", ["m"], ["hidden"])]
    model = helper.make_model(head_graph(nodes), opset_imports=[helper.make_opsetid("", 17)])
    x = np.random.default_rng(3).normal(size=(2, 7, H)).astype(np.float32)
    moved, note = slice_checked(model, {"x": x})
    assert moved == 2 and "moved above 2" in note
    assert any(n.output[0].endswith(SLICED_SUFFIX) for n in model.graph.node)

    whole = helper.make_model(head_graph([helper.make_node("Transpose", ["x"], ["hidden"], perm=[0, 1, 2])]),
                              opset_imports=[helper.make_opsetid("", 17)])
    before = whole.SerializeToString()
    moved, note = slice_checked(whole, {"x": x})
    assert moved == 0 and "stays whole" in note and whole.SerializeToString() == before
