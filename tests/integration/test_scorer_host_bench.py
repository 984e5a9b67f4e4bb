"""lab.bench.scorer_host: the host side of a CUDA model call, timed against another scorer version."""

import numpy as np

from es_rerank.scoring.cross_encoder import OnnxScorer, load_encoder
from lab.bench.scorer_host import compare, load_scorer_class, scorer_of
from tests.fixtures_export import minilm_export, one_logit_checkpoint  # noqa: F401 (fixtures)


def test_both_versions_score_the_same_real_windows_and_the_ratio_is_reported(minilm_export, tmp_path):  # noqa: F811
    import es_rerank.scoring.cross_encoder as cross_encoder

    copy = tmp_path / "copy.py"  # the same scorer from another file: what --against loads
    copy.write_text(open(cross_encoder.__file__).read())
    encoder = load_encoder(minilm_export)
    windows = [encoder.encode(["gene therapy"] * 30, [f"document {k} " * (k + 1) for k in range(30)])] * 3
    sides = {"current": scorer_of(OnnxScorer, minilm_export), "against": scorer_of(load_scorer_class(copy), minilm_export)}
    assert sides["current"]._padder is not None  # the CUDA path, helper thread included, is what is timed
    for scorer in sides.values():
        assert np.array_equal(scorer.score_encoded(windows[0]), np.zeros(30, dtype=np.float32))
    figures = compare(sides, windows, rounds=2)
    assert figures["windows"] == 3 and figures["pairs_per_window"] == 30
    assert all(ms > 0 for ms in figures["ms_per_window"].values()) and figures["speedup_over_against"] > 0
