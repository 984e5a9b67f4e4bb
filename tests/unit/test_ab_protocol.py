from es_rerank.evaluation import protocol


def test_header_names_match_the_proxy():
    from es_rerank.proxy.app import RESULT_HEADER
    from es_rerank.proxy.plan import SWITCH_HEADER, SWITCH_OFF_VALUES

    assert protocol.OUTCOME_HEADER == RESULT_HEADER
    assert protocol.RERANK_SWITCH_HEADER == SWITCH_HEADER
    assert protocol.RERANK_OFF_VALUE in SWITCH_OFF_VALUES
