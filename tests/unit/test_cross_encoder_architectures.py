"""Any cross-encoder a user brings: a tiny random model of each architecture family trains a step
through the trainer, exports with its parity check passing, and serves through `OnnxScorer` with
the scores PyTorch gives; the export folder loads as it is in the Hugging Face tools.

The models are built from a config (tests/support/tiny_cross_encoders.py), so nothing is
downloaded; each architecture takes about a second on 2 cores.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from es_rerank.scoring.cross_encoder import OnnxScorer
from es_rerank.training.model import load_cross_encoder, make_scorer, scoring_mode
from tests.support.tiny_cross_encoders import ARCHITECTURES, train_and_export, write_pair_collection

pytestmark = pytest.mark.export  # each test exports models: not in the fast lane

MAX_LENGTH, QUERY_MAX_LENGTH = 64, 16
# Pairs the tests score: short and long documents, so batches are padded and documents cut.
# The queries are shorter than QUERY_MAX_LENGTH tokens, so only the long document is cut.
QUERIES = ["vitamin D and fracture risk", "CRISPR base editors"]
LONG = "word " * 100
DOCUMENTS = ["Vitamin D and fractures in the elderly.", "Base editors convert C to T.", LONG, "東京の天気は晴れ。"]
PAIRS_Q = [q for q in QUERIES for _ in DOCUMENTS]
PAIRS_D = DOCUMENTS * len(QUERIES)
# The pairs that fit whole, which any tool tokenizes the same way.
SHORT = [(q, d) for q, d in zip(PAIRS_Q, PAIRS_D) if d != LONG]
# The inputs each family's graph takes: RoBERTa/XLM-R and ModernBERT tokenizers make no token
# type ids, and DeBERTa-v3-shaped models (no segment embedding) ignore the ones theirs make.
GRAPH_INPUTS = {"bert": ["input_ids", "attention_mask", "token_type_ids"],
                "electra": ["input_ids", "attention_mask", "token_type_ids"],
                "roberta": ["input_ids", "attention_mask"], "xlm-roberta": ["input_ids", "attention_mask"],
                "deberta-v2": ["input_ids", "attention_mask"], "modernbert": ["input_ids", "attention_mask"]}
# Checked by hand beside the lock: with transformers 4.57.6, optimum 2.1.0, optimum-onnx 0.1.0 and
# sentence-transformers 5.7.0 these exports load and give our scores exactly (ModernBERT's test
# tokenizer aside: transformers 5 saves it as a TokenizersBackend class that 4.57 does not know).
OPTIMUM_MISSING = ("optimum.onnxruntime is not installed: it lives in the optimum-onnx package, whose releases "
                   "need transformers < 4.58, and the lock pins transformers 5")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    return write_pair_collection(tmp_path_factory.mktemp("collection"))


@pytest.fixture(scope="module", params=ARCHITECTURES)
def exported(request, collection, tmp_path_factory):
    """(architecture, base encoder, trained checkpoint, export dir, export meta) of one family."""
    folder = tmp_path_factory.mktemp(request.param)
    return (request.param, *train_and_export(request.param, folder, collection, MAX_LENGTH, QUERY_MAX_LENGTH))


def torch_scores(checkpoint) -> np.ndarray:
    model, tokenizer = load_cross_encoder(str(checkpoint))
    scorer = make_scorer(model, tokenizer, MAX_LENGTH, QUERY_MAX_LENGTH, torch.device("cpu"), 16)
    with scoring_mode(model, torch.device("cpu"), None):
        return scorer.score_pairs(PAIRS_Q, PAIRS_D)


def test_a_training_step_moves_the_encoder(exported):
    _, base, checkpoint, _, _ = exported
    before, after = load_file(str(base / "model.safetensors")), load_file(str(checkpoint / "model.safetensors"))
    shared = [name for name in after if name.split(".", 1)[-1] in before]
    assert len(shared) > len(before) // 2  # the encoder's weights, under the classifier's prefix
    moved = max((after[name] - before[name.split(".", 1)[-1]]).abs().max().item() for name in shared)
    assert moved > 1e-5


def test_the_export_passes_parity_and_serves_the_scores_torch_gives(exported):
    architecture, _, checkpoint, export_dir, meta = exported
    assert list(meta.input_names) == GRAPH_INPUTS[architecture]
    # Every family's head reads the first token, so its last layer's row-wise work runs for it alone
    # (export/first_token.py); the scores below show that this changed nothing.
    assert meta.details["last_layer_nodes_on_first_token"] >= 4
    parity = meta.variants["fp32"].parity
    assert parity["passed"] and parity["max_abs_dlogit"] <= parity["max_abs_dlogit_limit"]
    served = OnnxScorer.load(export_dir, device="cpu").score_pairs(PAIRS_Q, PAIRS_D)
    expected = torch_scores(checkpoint)
    assert np.ptp(expected) > 0  # the pairs get different scores, so a mixed-up order would show
    np.testing.assert_allclose(served, expected, atol=parity["max_abs_dlogit_limit"], rtol=0)


def test_the_pair_template_is_the_tokenizers_own(exported):
    """The serving encoder joins a pair exactly as the Hugging Face tokenizer does (RoBERTa's
    `<s> q </s></s> d </s>`, BERT's `[CLS] q [SEP] d [SEP]` with segment ids)."""
    from transformers import AutoTokenizer

    _, _, _, export_dir, _ = exported
    tokenizer = AutoTokenizer.from_pretrained(str(export_dir))
    encoder = OnnxScorer.load(export_dir, device="cpu").encoder
    ours = encoder.encode([q for q, _ in SHORT], [d for _, d in SHORT])
    for (query, doc), pair in zip(SHORT, ours):
        theirs = tokenizer(query, doc, return_token_type_ids=True)
        assert pair.ids.tolist() == theirs["input_ids"] and pair.type_ids.tolist() == theirs["token_type_ids"]


def test_the_export_folder_loads_in_transformers_and_onnxruntime_as_it_is(exported):
    """What optimum's ORTModelForSequenceClassification does: read config.json and the tokenizer
    with transformers, and feed the tokenizer's arrays that model.onnx takes to ONNX Runtime."""
    import onnxruntime
    from transformers import AutoConfig, AutoTokenizer

    architecture, _, _, export_dir, meta = exported
    config = AutoConfig.from_pretrained(str(export_dir))
    assert config.num_labels == 1 and config.architectures[0].endswith("ForSequenceClassification")
    tokenizer = AutoTokenizer.from_pretrained(str(export_dir))
    session = onnxruntime.InferenceSession(str(export_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    taken = [i.name for i in session.get_inputs()]
    assert taken == list(meta.input_names)
    batch = tokenizer([q for q, _ in SHORT], [d for _, d in SHORT], padding=True, return_tensors="np")
    logits = session.run(["logits"], {name: batch[name].astype(np.int64) for name in taken})[0][:, 0]
    ours = OnnxScorer.load(export_dir, device="cpu").score_pairs([q for q, _ in SHORT], [d for _, d in SHORT])
    np.testing.assert_allclose(logits, ours, atol=1e-5, rtol=0)


def test_the_export_folder_loads_in_optimum(exported):
    try:
        from optimum.onnxruntime import ORTModelForSequenceClassification
    except ImportError:
        pytest.xfail(OPTIMUM_MISSING)
    from transformers import AutoTokenizer

    _, _, _, export_dir, _ = exported
    model = ORTModelForSequenceClassification.from_pretrained(str(export_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(export_dir))
    batch = tokenizer([q for q, _ in SHORT], [d for _, d in SHORT], padding=True, return_tensors="pt")
    logits = model(**batch).logits[:, 0].detach().numpy()
    ours = OnnxScorer.load(export_dir, device="cpu").score_pairs([q for q, _ in SHORT], [d for _, d in SHORT])
    np.testing.assert_allclose(logits, ours, atol=1e-5, rtol=0)


def test_the_export_folder_loads_in_sentence_transformers_cross_encoder(exported):
    try:
        import optimum.onnxruntime  # noqa: F401  (sentence-transformers' ONNX backend runs through it)
    except ImportError:
        pytest.xfail(OPTIMUM_MISSING)
    from sentence_transformers import CrossEncoder

    _, _, _, export_dir, _ = exported
    model = CrossEncoder(str(export_dir), backend="onnx", activation_fn=torch.nn.Identity())
    scores = model.predict(SHORT, convert_to_numpy=True)
    ours = OnnxScorer.load(export_dir, device="cpu").score_pairs([q for q, _ in SHORT], [d for _, d in SHORT])
    np.testing.assert_allclose(scores, ours, atol=1e-5, rtol=0)
