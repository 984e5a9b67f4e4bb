"""`es-rerank mix`: several collections' mined groups as one training set for `es-rerank train`."""

from __future__ import annotations

from pathlib import Path

import click

from es_rerank.cli.options import option


@click.command(name="mix")
@option("--source", "sources", multiple=True, required=True, nargs=3,
        type=(str, click.Path(exists=True, file_okay=False, path_type=Path),
              click.Path(exists=True, dir_okay=False, path_type=Path)),
        metavar="NAME BEIR_DIR GROUPS",
        help="A collection to train on: its name (the id prefix), BEIR folder and `es-rerank mine` groups. "
             "Repeat for each collection.")
@option("--neg-depth", type=click.IntRange(min=1), default=None,
        help="Keep only each group's top this many BM25 negatives (and only their documents).")
@option("--out", required=True, type=click.Path(path_type=Path),
        help="New or empty folder to write the mixture to (BEIR layout plus groups.jsonl.gz and MIXTURE.json).")
def mix_command(sources: tuple[tuple[str, Path, Path], ...], neg_depth: int | None, out: Path) -> None:
    """Merge mined collections into one training set, every id prefixed with its collection's name.

    Then: es-rerank train --groups OUT/groups.jsonl.gz --corpus OUT --queries OUT ...
    """
    from es_rerank.data.mixture import MixtureSource, mix_sources

    record = mix_sources([MixtureSource(name, dataset, groups) for name, dataset, groups in sources], out, neg_depth)
    for source in record["sources"]:
        dropped = source["dropped_no_query_text"] + source["dropped_no_positive_in_corpus"]
        click.echo(f"{source['name']}: {source['groups']} groups, {source['documents']} documents"
                   + (f" ({dropped} groups dropped, see MIXTURE.json)" if dropped else ""))
        if source["missing_documents"]:
            click.echo(f"warning: {source['name']}: {source['missing_documents']} documents named by its groups are "
                       f"not in {source['dataset']}; pass the BEIR folder the groups were mined from", err=True)
    click.echo(f"wrote {record['groups']} groups over {record['documents']} documents to {out}")
