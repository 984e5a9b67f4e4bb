"""es_rerank.export: from a PyTorch checkpoint to what the serving path runs (imports torch and onnx).

- `checkpoints`: make one-logit cross-encoder checkpoints (`init_cross_encoder`,
  `random_classifier`) and refuse anything else (`load_config`, `load_classifier`).
- `onnx_graph`: trace with eager attention, fuse with ONNX Runtime's BERT optimizer, convert
  to fp16, quantize to int8.
- `parity`, `parity_pairs`, `builtin_pairs`: compare the exported models with PyTorch fp32 on
  real pairs, against per-dtype thresholds.
- `torch_scorer`: the PyTorch scorer used as parity reference and benchmark baseline.
- `pipeline`: `es-rerank export` itself, writing OUTDIR atomically.
- `bi_encoder`: the dense (bi-encoder) export used by fusion.
"""
