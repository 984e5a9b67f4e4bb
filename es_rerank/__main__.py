"""`python -m es_rerank` runs the CLI."""

from es_rerank.cli import main

main()
