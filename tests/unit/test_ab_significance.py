import numpy as np
import pytest
from scipy.stats import ttest_rel

from es_rerank.evaluation.significance import holm, mean_ci, paired_test


def test_identical_systems_show_no_difference():
    values = [0.1, 0.5, 0.9, 0.3]
    test = paired_test(values, values)
    assert (test.wins, test.ties, test.losses) == (0, 4, 0)
    assert test.delta == 0 and test.p_randomization == test.p_ttest == test.p_wilcoxon == 1.0
    assert test.delta_ci.as_list() == [0.0, 0.0]


def test_clear_improvement_is_significant_and_ci_excludes_zero():
    rng = np.random.default_rng(3)
    base = rng.uniform(0, 0.8, 200)
    better = np.clip(base + rng.normal(0.1, 0.05, 200), 0, 1)
    test = paired_test(base, better, seed=1)
    assert test.p_randomization < 0.001 and test.p_wilcoxon < 0.001
    assert test.p_ttest == pytest.approx(ttest_rel(better, base).pvalue)
    assert 0 < test.delta_ci.low < test.delta < test.delta_ci.high
    assert test.wins > test.losses


def test_noise_is_not_significant():
    rng = np.random.default_rng(5)
    base = rng.uniform(0, 1, 100)
    other = np.clip(base + rng.normal(0, 0.1, 100), 0, 1)
    test = paired_test(base, other)
    assert test.p_randomization > 0.05
    assert test.delta_ci.low < 0 < test.delta_ci.high


def test_same_seed_same_numbers():
    a, b = [0.2, 0.4, 0.1, 0.9, 0.5], [0.3, 0.4, 0.0, 1.0, 0.7]
    assert paired_test(a, b, seed=7) == paired_test(a, b, seed=7)


def test_single_query_has_no_p_value():
    test = paired_test([0.2], [0.4])
    assert test.p_randomization is None and test.wins == 1


def test_unequal_lengths_are_rejected():
    with pytest.raises(ValueError, match="equal lengths"):
        paired_test([0.1, 0.2], [0.1])


def test_mean_ci_covers_the_mean():
    ci = mean_ci([0.0, 1.0] * 50)
    assert ci.low < 0.5 < ci.high


def test_holm_is_monotone_and_capped():
    assert holm([0.01, 0.02, 0.9, None]) == [0.03, 0.04, 0.9, None]
    assert holm([0.6, 0.5]) == [1.0, 1.0]
