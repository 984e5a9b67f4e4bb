"""`one_ahead`, which lets the CUDA scorer pad the next batch while the GPU runs the current one."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from es_rerank.scoring.cross_encoder import one_ahead


def test_the_next_item_is_made_while_the_caller_still_holds_this_one():
    second_made = threading.Event()

    def items():
        yield "first"
        second_made.set()
        yield "second"

    with ThreadPoolExecutor(1) as pool:
        taken = one_ahead(items(), pool)
        assert next(taken) == "first"
        assert second_made.wait(timeout=60)  # made on the pool before the caller asked for it
        assert list(taken) == ["second"]


def test_a_failure_making_an_item_reaches_the_caller_after_the_items_before_it():
    def items():
        yield 1
        raise ValueError("row 2 is longer than the model's limit")

    with ThreadPoolExecutor(1) as pool:
        taken = one_ahead(items(), pool)
        assert next(taken) == 1
        with pytest.raises(ValueError, match="row 2"):
            next(taken)


def test_nothing_to_make_gives_nothing():
    with ThreadPoolExecutor(1) as pool:
        assert list(one_ahead(iter(()), pool)) == []


def test_the_first_item_is_made_on_the_callers_thread_so_a_single_batch_needs_no_hop():
    made_on = []

    def items():
        made_on.append(threading.current_thread().name)
        yield "only"
        made_on.append(threading.current_thread().name)
        yield "second"

    with ThreadPoolExecutor(1, thread_name_prefix="pad") as pool:
        assert list(one_ahead(items(), pool)) == ["only", "second"]
    assert made_on[0] == threading.current_thread().name
    assert made_on[1].startswith("pad")
