"""Depth of the YAML, CBOR and Smile bodies OpenSearch also parses: never below the real depth (issue 14 item 1)."""

import struct

import yaml
from hypothesis import example, given, settings, strategies as st

from es_rerank.proxy.limits import json_depth
from es_rerank.proxy.xcontent_depth import cbor_depth, yaml_depth_bound

VALUES = st.recursive(st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False) | st.text(),
                      lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
                      max_leaves=30)


def cbor(value) -> bytes:
    """A small CBOR encoder (definite lengths), enough for JSON-like values."""
    def head(major: int, n: int) -> bytes:
        if n < 24:
            return bytes([major << 5 | n])
        for info, fmt in ((24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")):
            if n < 1 << (8 * struct.calcsize(fmt)):
                return bytes([major << 5 | info]) + struct.pack(fmt, n)
        raise ValueError(n)
    if value is None or isinstance(value, bool):
        return bytes([0xF6 if value is None else 0xF5 if value else 0xF4])
    if isinstance(value, int):
        return head(0, value) if value >= 0 else head(1, -1 - value)
    if isinstance(value, float):
        return b"\xfb" + struct.pack(">d", value)
    if isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        return head(3, len(data)) + data
    if isinstance(value, list):
        return head(4, len(value)) + b"".join(cbor(v) for v in value)
    return head(5, len(value)) + b"".join(cbor(k) + cbor(v) for k, v in value.items())


@settings(max_examples=300, deadline=None)
@given(value=VALUES)
def test_cbor_depth_is_the_json_depth(value):
    assert cbor_depth(cbor(value)) == json_depth(value)


@settings(max_examples=300, deadline=None)
@given(value=VALUES, flow=st.booleans())
@example(value={'"': []}, flow=False)  # a double quote inside a single-quoted key once hid the list after it
@example(value={"'": [[{"a": ['"']}]]}, flow=True)
def test_the_yaml_bound_is_never_below_the_depth(value, flow):
    text = yaml.safe_dump(value, default_flow_style=flow, allow_unicode=True).encode()
    assert yaml_depth_bound(text) >= json_depth(yaml.safe_load(text))


def test_indefinite_cbor_containers_nest():
    assert cbor_depth(b"\x9f" * 300 + b"\xff" * 300) == 300
