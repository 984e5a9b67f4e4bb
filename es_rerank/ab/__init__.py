"""A/B comparison of BM25 and reranked search, offline on judged queries and online on live traffic.

Offline (`es-rerank ab`): `offline` runs every judged query directly against OpenSearch and
through the proxy, `metrics` scores the runs with ir_measures, `significance` tests the paired
differences, `report`/`report_html`/`plots` present them and `trec` writes the run files.
`variants` reads a file of more than two configurations to compare.

Online (inside the proxy): `assignment` puts each user key in an arm, `interleave` merges two
rankings by team draft, `decision_log` writes one JSON line per search, `events` accepts click
events at `POST /_rerank/events`, and `online_report` (`es-rerank ab report LOG`) summarises them.
`protocol` holds the header and path names the proxy and clients share.
"""
