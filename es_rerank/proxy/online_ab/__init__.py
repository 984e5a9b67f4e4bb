"""Online A/B inside the proxy: `assignment` puts each user key in an arm, `interleave` merges two
rankings by team draft, `decision_log` writes one JSON line per search, `events` accepts click
events at `POST /_rerank/events`, `arms` serves a search in its arm, and `report`
(`es-rerank ab report LOG`) summarises a log.
"""
