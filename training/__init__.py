"""es_rerank.training: fine-tuning the cross-encoder on BM25 hard negatives (imports torch).

See training/README.md for the commands, the losses and the GPU sweep.
"""
