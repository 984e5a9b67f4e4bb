"""The streaming depth scanner agrees with a byte-by-byte reference, however the body is chunked."""

from hypothesis import given, settings, strategies as st

from es_rerank.proxy.limits import JsonDepthScanner

ALPHABET = st.sampled_from([b"{", b"}", b"[", b"]", b'"', b"\\", b"\n", b"a", b" ", b":", b","])


def reference(data: bytes, lines: bool) -> int:
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        char = bytes([byte])
        if lines and char == b"\n":
            depth, in_string, escaped = 0, False, False
            continue
        if escaped:  # a backslash escapes a quote or a backslash; brackets count either way (never fewer)
            escaped = False
            if char in (b'"', b"\\"):
                continue
        if char == b"\\":
            escaped = True
        elif char == b'"':
            in_string = not in_string
        elif not in_string and char in b"{[":
            depth += 1
            deepest = max(deepest, depth)
        elif not in_string and char in b"}]":
            depth = max(depth - 1, 0)
    return deepest


@settings(max_examples=600, deadline=None)
@given(parts=st.lists(st.lists(ALPHABET, max_size=40).map(b"".join), max_size=8), lines=st.booleans())
def test_any_chunking_gives_the_reference_depth(parts, lines):
    scanner = JsonDepthScanner(lines=lines)
    for part in parts:
        scanner.feed(part)
    assert scanner.deepest == reference(b"".join(parts), lines)
