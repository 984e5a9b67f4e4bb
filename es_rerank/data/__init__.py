"""Data: BEIR readers, the one text-file opener, indexing, mining, candidates files, TREC runs."""
