"""`indexer` command: import, build, add, update, delete, tag, train-ner, eval-ner, train-embedder, eval-embedder."""
from __future__ import annotations

import functools
import sys
from itertools import islice
from pathlib import Path

import click

from indexer.errors import MedlexError, ReaderError
from indexer.settings import Settings, load_settings


def config_options(func):
    """--config and --set on a command; the loaded Settings arrive as `settings`."""

    @click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
                  help="config.toml to read (default: ./config.toml, or the repository's).")
    @click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
                  help="Override one setting; repeatable.")
    @functools.wraps(func)
    def wrapper(config_path, overrides, **kwargs):
        settings = load_settings(config_path, overrides)
        return func(settings=settings, **kwargs)

    return wrapper


class MedlexGroup(click.Group):
    """A click group that turns domain errors into one line and exit status 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MedlexError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted; the store and index are as they were before the last unfinished batch",
                       err=True)
            sys.exit(130)


@click.group(cls=MedlexGroup)
def main() -> None:
    """medlex indexer: import corpora, build indexes, train and run the models."""


def open_store(settings: Settings, create: bool = True):
    """The FacetStore of the configured index directory."""
    from indexer.store import FacetStore

    return FacetStore(settings.index.dir / "store.sqlite", create=create)


def make_chunker(settings: Settings):
    """Document -> chunks with the embedder's tokenizer and the configured window."""
    from indexer.documents import chunk_document, offsets_for_model
    from indexer.models import resolve_embedder_dir

    offsets = offsets_for_model(str(resolve_embedder_dir(settings)))
    return lambda doc: chunk_document(doc, offsets, settings.chunk.max_tokens, settings.chunk.overlap_tokens)


@main.command("import")
@config_options
@click.option("--format", "fmt", required=True, help="Corpus format (see README).")
@click.option("--collection", required=True, help="Collection to add the documents to.")
@click.option("--skip-bad", is_flag=True, help="Skip malformed records with a warning instead of stopping.")
@click.option("--batch-size", default=200, show_default=True, help="Documents per transaction.")
@click.option("--limit", type=int, default=None, help="Import at most this many documents.")
@click.option("--field", "fields", multiple=True, metavar="NAME=FIELD",
              help="json/jsonl: map id, title, text, date, doc_type, court, source to record fields.")
@click.argument("path", type=click.Path(path_type=Path))
def import_cmd(settings: Settings, fmt: str, collection: str, skip_bad: bool, batch_size: int,
               limit: int | None, fields: tuple[str, ...], path: Path) -> None:
    """Read PATH in FORMAT into the store, updating documents whose ids exist already."""
    from tqdm import tqdm

    from indexer.readers import ReadOptions, read
    from indexer.store import ImportStats

    field_map = dict(f.split("=", 1) for f in fields if "=" in f)
    options = ReadOptions(label_map=settings.train_ner.label_map, fields=field_map)
    records = read(fmt, path, options)
    if limit is not None:
        records = islice((r for r in records), limit)
    store = open_store(settings)
    chunker = make_chunker(settings)
    total, skipped, batch = ImportStats(), [], []

    def flush() -> None:
        stats = store.upsert_documents(collection, batch, chunker)
        total.added += stats.added
        total.updated += stats.updated
        total.unchanged += stats.unchanged
        total.chunks += stats.chunks
        total.mentions.update(stats.mentions)
        batch.clear()

    with tqdm(records, desc=f"import {collection}", unit="doc", dynamic_ncols=True) as bar:
        for record in bar:
            if isinstance(record, ReaderError):
                if not skip_bad:
                    raise ReaderError(f"{record.reason} (nothing of this batch was written; "
                                      f"--skip-bad skips such records)", record.path, record.where)
                skipped.append(record)
                tqdm.write(f"warning: skipped {record}", file=sys.stderr)
                continue
            batch.append(record)
            if len(batch) >= batch_size:
                flush()
        if batch:
            flush()
    mentions = ", ".join(f"{k} {v}" for k, v in sorted(total.mentions.items())) or "none"
    click.echo(f"{collection}: {total.added} added, {total.updated} updated, {total.unchanged} unchanged, "
               f"{len(skipped)} skipped; {total.chunks} chunks; gold mentions: {mentions}")


@main.command("info")
@config_options
def info_cmd(settings: Settings) -> None:
    """Show what the store holds."""
    store = open_store(settings, create=False)
    for key, value in store.counts().items():
        click.echo(f"{key:12} {value}")
    click.echo(f"{'collections:':12} {', '.join(store.collections())}")


@main.command("train-embedder")
@config_options
@click.option("--report/--no-report", default=True, show_default=True,
              help="After training, compare the base and the tuned model on every dev set.")
def train_embedder_cmd(settings: Settings, report: bool) -> None:
    """Fine-tune the sentence embedder ([train_embedder]) and save it to its output_dir."""
    from indexer.train.embedder import train_embedder

    result = train_embedder(settings)
    click.echo(f"saved {result.model_dir} after {result.steps} steps in {result.seconds:.0f} s on {result.device}; "
               f"pairs: {', '.join(f'{k} {v}' for k, v in sorted(result.pairs.items()))}")
    if report:
        _embedder_report(settings, result.model_dir, {"seconds": result.seconds, "device": result.device,
                                                      "steps": result.steps, "pairs": result.pairs},
                         result.dev_metrics)


@main.command("eval-embedder")
@config_options
@click.option("--model", "model_dir", type=click.Path(path_type=Path), default=None,
              help="Tuned model dir (default: train_embedder.output_dir).")
def eval_embedder_cmd(settings: Settings, model_dir: Path | None) -> None:
    """Compare the base and a tuned embedder on the dev sets; writes JSON and prints a Markdown table."""
    _embedder_report(settings, model_dir or settings.train_embedder.output_dir, None, None)


def _embedder_report(settings: Settings, model_dir: Path, training: dict | None, metrics: dict | None) -> None:
    from indexer.train.ir_eval import compare, markdown

    report, path = compare(settings, model_dir, training, metrics)
    click.echo(markdown(report))
    click.echo(f"report: {path}")


if __name__ == "__main__":
    main()
