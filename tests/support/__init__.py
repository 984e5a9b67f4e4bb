"""Test-only infrastructure: a second local OpenSearch node with the security plugin."""
