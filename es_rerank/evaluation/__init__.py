"""Offline evaluation: A/B of BM25 against reranked on judged queries, IR metrics, significance,
reports (terminal, JSON, HTML with plots) and fusion-weight fitting.

`offline` runs every judged query directly against the engine and through the proxy, `metrics`
scores the runs, `significance` tests the paired differences, `report`/`report_html`/`plots`
present them. `variants` reads a file of more than two configurations to compare. `protocol`
holds the header and path names the proxy and its clients share.
"""
