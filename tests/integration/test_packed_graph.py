"""The unpadded-attention rewrite of the probe (`lab.gpu.packed_graph`) on a real export's graph.
Its ops run only on CUDA, so here the graph's structure is checked; the GPU probe checks its
scores against the served graph's."""

from __future__ import annotations

import onnx
import pytest
from onnx import helper

from lab.gpu.packed_graph import pack_attention
from tests.fixtures_export import minilm_export, one_logit_checkpoint  # noqa: F401 (fixtures)


def test_every_attention_becomes_packed_and_the_first_token_is_read_from_its_packed_row(minilm_export):  # noqa: F811
    model = onnx.load(str(minilm_export / "model.onnx"))
    before = ([i.name for i in model.graph.input], [o.name for o in model.graph.output])
    first_token_gathers = sum(n.op_type == "Gather" and n.name.endswith("/first_token/Gather") for n in model.graph.node)

    assert pack_attention(model) == 6
    onnx.checker.check_model(model)

    ops = [n.op_type for n in model.graph.node]
    assert ops.count("PackedAttention") == 6 and "Attention" not in ops and ops.count("RemovePadding") == 1
    assert ([i.name for i in model.graph.input], [o.name for o in model.graph.output]) == before
    packed_gathers = [n for n in model.graph.node if n.op_type == "Gather" and n.name.endswith("/packed")]
    assert first_token_gathers >= 1 and len(packed_gathers) == first_token_gathers
    assert all(helper.get_attribute_value(a) == 0 for n in packed_gathers for a in n.attribute if a.name == "axis")
    # topological: every input is a graph input, an initializer or an earlier node's output
    known = {i.name for i in model.graph.input} | {t.name for t in model.graph.initializer} | {""}
    for node in model.graph.node:
        assert set(node.input) <= known, node.name
        known |= set(node.output)


def test_a_graph_without_fused_attention_is_refused_with_the_fix():
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "plain",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    with pytest.raises(ValueError, match="no fused Attention node; export with the ONNX Runtime optimizer"):
        pack_attention(helper.make_model(graph))
