import pytest

from es_rerank.proxy.online_ab.assignment import OnlineAbConfig, assign, bucket, decide, pseudonym, request_key
from es_rerank.errors import ConfigError

KEYS = [f"user-{i}" for i in range(10_000)]


def test_assignment_is_deterministic_per_key():
    first = [assign(key, 0.5, "exp") for key in KEYS[:500]]
    assert first == [assign(key, 0.5, "exp") for key in KEYS[:500]]


@pytest.mark.parametrize("split", [0.05, 0.3, 0.5, 0.9])
def test_ratio_over_10000_keys_is_within_tolerance(split):
    share = sum(assign(key, split, "exp") == "rerank" for key in KEYS) / len(KEYS)
    # 4.5 standard deviations of a binomial share at n = 10,000
    assert abs(share - split) <= 4.5 * (split * (1 - split) / len(KEYS)) ** 0.5


def test_extreme_splits_and_monotonicity():
    assert all(assign(key, 0.0, "exp") == "bm25" for key in KEYS[:1000])
    assert all(assign(key, 1.0, "exp") == "rerank" for key in KEYS[:1000])
    # raising the split only moves keys from bm25 to rerank, never back
    small = {key for key in KEYS if assign(key, 0.2, "exp") == "rerank"}
    large = {key for key in KEYS if assign(key, 0.4, "exp") == "rerank"}
    assert small < large


def test_a_new_experiment_reshuffles_independently():
    a = [bucket(key, "exp-1") < 0.5 for key in KEYS]
    b = [bucket(key, "exp-2") < 0.5 for key in KEYS]
    agree = sum(x == y for x, y in zip(a, b)) / len(KEYS)
    assert 0.47 < agree < 0.53


def test_key_comes_from_the_header_then_the_client_address():
    assert request_key({"X-User": " alice "}, "10.0.0.1", "x-user") == "alice"
    assert request_key({"X-User": ""}, "10.0.0.1", "X-User") == "10.0.0.1"
    assert request_key({"X-User": "alice"}, "10.0.0.1", None) == "10.0.0.1"
    assert request_key({}, None, "X-User") == "anonymous"


def test_decision_uses_the_header_key_and_logs_only_a_keyed_hash():
    config = OnlineAbConfig(split=0.5, key_header="X-Session", secret="s3")
    decision = decide(config, {"X-Session": "sess-9"}, "10.1.1.1")
    assert decision.variant == assign("sess-9", 0.5, config.experiment)
    assert decision.key_hash == pseudonym("sess-9", "s3") and "sess-9" not in decision.key_hash
    assert decide(config, {"X-Session": "sess-9"}, "10.9.9.9") == decision


def test_interleave_mode_assigns_the_interleave_arm():
    config = OnlineAbConfig(split=1.0, mode="interleave")
    assert decide(config, {}, "10.0.0.1").variant == "interleave"


@pytest.mark.parametrize("kwargs, message", [
    ({"split": 1.5}, "between 0 and 1"),
    ({"split": True}, "between 0 and 1"),
    ({"split": 0.5, "mode": "bandit"}, "--ab-mode"),
    ({"split": 0.5, "experiment": ""}, "experiment"),
])
def test_bad_settings_are_rejected(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        OnlineAbConfig(**kwargs)
