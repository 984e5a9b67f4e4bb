"""Query words that most of a corpus contains, and queries with them cut (issue 17, a LOCO variant).

Why: on LISA the cross-encoder alone is 0.23 below BM25. Its queries are statements of need
("I WOULD BE INTERESTED TO RECEIVE INFORMATION ON NON-USERS OF LIBRARIES ..."), and in a library
and information science corpus "information" and "libraries" are in a large share of the documents.
BM25 gives such words almost no weight (their IDF); the cross-encoder, which sees no corpus
statistics, ranks documents about "drug information for public librarians" first. Cutting from
the query the words found in more than a share `max_df` of the corpus's documents gives the
cross-encoder the words that tell the documents apart. It needs no labels, only the corpus, which
the engine that serves it already indexes.

Made here (the GPU machine has no corpora), for the words of every evaluation query:

    python -m lab.gpu.query_df --candidates UNPACKED_CARRY/cands --data ../shared/data --out QUERY_DF.json

and read by `loco_gpu --variants df-cut-0.1 --query-df QUERY_DF.json`.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Iterable, Mapping

# The words of a text as the cut sees them: runs of letters and digits, lowercased (close to what
# the engines' standard tokenizer keeps; no stemming, so "library" and "libraries" are two words).
WORD = re.compile(r"[^\W_]+")
# evaluation set -> collection folder in the data directory
COLLECTIONS = {"scifact-test": "scifact", "squad-dev": "squad-v1.1", "cranfield-test": "cranfield",
               "med-test": "med", "adi-test": "adi", "time-test": "time", "lisa-test": "lisa"}


def words(text: str) -> set[str]:
    """The distinct lowercased words of `text`.

    Example:
        >>> sorted(words("Non-users of LIBRARIES, non-users."))
        ['libraries', 'non', 'of', 'users']
    """
    return {match.group(0).lower() for match in WORD.finditer(text)}


def document_frequencies(documents: Iterable[str], wanted: set[str]) -> tuple[int, dict[str, int]]:
    """How many documents there are, and in how many each word of `wanted` occurs.

    Example:
        >>> document_frequencies(["a b", "b c", "b"], {"b", "c", "z"})
        (3, {'b': 3, 'c': 1, 'z': 0})
    """
    counts = dict.fromkeys(sorted(wanted), 0)
    total = 0
    for text in documents:
        total += 1
        for word in words(text) & wanted:
            counts[word] += 1
    return total, counts


def cut_query(text: str, share: Mapping[str, float], max_df: float) -> str:
    """`text` without the words that more than `max_df` of the corpus's documents contain (a word
    the table lacks counts as rare); when that would leave nothing, the rarest word stays.

    Example:
        >>> share = {"i": 0.9, "am": 0.8, "interested": 0.01, "in": 0.95, "information": 0.6, "on": 0.9, "non": 0.02}
        >>> cut_query("I am interested in information on NON-users", share, 0.1)
        'interested NON users'
        >>> cut_query("in on", share, 0.1)
        'on'
    """
    found = [(m.group(0), share.get(m.group(0).lower(), 0.0)) for m in WORD.finditer(text)]
    kept = [word for word, fraction in found if fraction <= max_df]
    if not kept and found:
        kept = [min(found, key=lambda item: item[1])[0]]
    return " ".join(kept)


def corpus_texts(collection: Path) -> Iterable[str]:
    """Every document's title and text, from a BEIR-layout `corpus.jsonl.gz`."""
    import gzip

    with gzip.open(collection / "corpus.jsonl.gz", "rt", encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                doc = json.loads(line)
                yield f"{doc.get('title') or ''} {doc.get('text') or ''}"


def build(candidates: Path, data: Path) -> dict:
    """Per evaluation set with candidates: its corpus's size and the document share of each query word."""
    from es_rerank.data.candidates import read_candidates

    sets = {}
    for name, folder in COLLECTIONS.items():
        path = candidates / f"{name}.jsonl"
        if not path.is_file():
            continue
        wanted = set().union(*(words(q.text) for q in read_candidates(path).queries))
        total, counts = document_frequencies(corpus_texts(data / folder), wanted)
        if not total:
            raise SystemExit(f"{data / folder} has no documents: pass the data directory the carry was made from")
        sets[name] = {"documents": total, "share": {w: round(n / total, 5) for w, n in counts.items()}}
    return {"words": WORD.pattern, "sets": sets}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=Path, required=True, help="the carry's cands folder (unpacked)")
    parser.add_argument("--data", type=Path, required=True, help="the BEIR-layout collections (../shared/data)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    table = build(args.candidates, args.data)
    if not table["sets"]:
        raise SystemExit(f"no evaluation candidates in {args.candidates}: unpack the carry's data.tar.xz first")
    args.out.write_text(json.dumps(table, sort_keys=True) + "\n", encoding="utf-8")
    for name, entry in table["sets"].items():
        print(f"{name}: {entry['documents']} documents, {len(entry['share'])} query words")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
