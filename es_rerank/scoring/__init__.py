"""Scoring, torch-free: the Scorer protocol, ONNX sessions for every head, the pair encoder, fusion."""
