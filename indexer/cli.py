"""`indexer` command: import, build, add, update, delete, tag, train-ner, eval-ner, train-embedder."""
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
@click.option("--source", default=None, help="Value of the source facet (default: the reader's).")
@click.argument("path", type=click.Path(path_type=Path))
def import_cmd(settings: Settings, fmt: str, collection: str, skip_bad: bool, batch_size: int,
               limit: int | None, fields: tuple[str, ...], source: str | None, path: Path) -> None:
    """Read PATH in FORMAT into the store, updating documents whose ids exist already."""
    from tqdm import tqdm

    from indexer.readers import ReadOptions, estimate, read
    from indexer.store import ImportStats

    bad = [f for f in fields if "=" not in f or not f.split("=", 1)[1]]
    if bad:
        raise ReaderError(f"--field {bad[0]!r} is not NAME=FIELD, e.g. --field text=body.full")
    field_map = dict(f.split("=", 1) for f in fields)
    options = ReadOptions(label_map=settings.train_ner.label_map, fields=field_map, source=source)
    records = read(fmt, path, options)
    expected = estimate(fmt, path, options)
    if limit is not None:
        records = islice((r for r in records), limit)
        expected = min(expected, limit) if expected is not None else limit
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

    with tqdm(records, desc=f"import {collection}", unit="doc", total=expected, dynamic_ncols=True) as bar:
        for record in bar:
            if isinstance(record, ReaderError):
                if not skip_bad:
                    kept = total.added + total.updated + total.unchanged
                    raise ReaderError(f"{record.reason} (import stopped: {kept} documents of earlier batches "
                                      f"are stored, nothing of this batch was written; --skip-bad skips "
                                      f"such records)", record.path, record.where)
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


@main.command("train-ner")
@config_options
@click.option("--threads", type=int, default=None, help="Torch CPU threads (default: torch's choice).")
def train_ner_cmd(settings: Settings, threads: int | None) -> None:
    """Train the entity tagger on train_ner.train; early stopping on train_ner.dev."""
    import json

    import torch

    from indexer.train.ner import format_report, train_ner

    if threads:
        torch.set_num_threads(threads)
    path, metrics = train_ner(settings)
    meta = json.loads((path / "tagger.json").read_text(encoding="utf-8"))
    click.echo(format_report(metrics))
    click.echo(f"saved {path} (best epoch {meta['training']['best_epoch']}, "
               f"training time {meta['training']['total_seconds']:.0f} s)")


@main.command("eval-ner")
@config_options
@click.option("--format", "fmt", default="pubtator", show_default=True, help="Corpus format of PATH.")
@click.option("--model", "model_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Tagger directory (default: ner.model).")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the metrics as JSON here.")
@click.option("--limit", type=int, default=None, help="Evaluate on the first N documents only.")
@click.option("--skip-bad", is_flag=True, help="Skip malformed records with a warning instead of stopping.")
@click.option("--threads", type=int, default=None, help="Torch CPU threads (default: torch's choice).")
@click.argument("path", type=click.Path(path_type=Path))
def eval_ner_cmd(settings: Settings, fmt: str, model_dir: Path | None, output: Path | None, limit: int | None,
                 skip_bad: bool, threads: int | None, path: Path) -> None:
    """Score the tagger on gold mentions in PATH (seqeval, strict IOB2, exact span and label)."""
    import dataclasses
    import json

    import torch

    from indexer.errors import ModelError
    from indexer.ner import load_tagger
    from indexer.train.ner import evaluate, format_report, load_documents

    if threads:
        torch.set_num_threads(threads)
    if model_dir is not None:
        settings = settings.replace(ner=dataclasses.replace(settings.ner, model=str(model_dir)))
    tagger = load_tagger(settings)
    if tagger is None:
        raise ModelError(f"no trained tagger at {str(settings.train_ner.output_dir)!r}; run `indexer train-ner` "
                         f"or pass --model")
    docs = load_documents([path], fmt, settings.train_ner.label_map, limit, skip_bad)
    metrics = evaluate(tagger, docs, progress=True)
    click.echo(format_report(metrics))
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(dict(metrics, data=str(path), model=str(settings.ner.model)), indent=2),
                          encoding="utf-8")
        click.echo(f"wrote {output}")


@main.command("tag")
@config_options
@click.option("--collection", required=True, help="Collection whose documents are tagged.")
@click.option("--batch-size", default=64, show_default=True, help="Documents per transaction.")
def tag_cmd(settings: Settings, collection: str, batch_size: int) -> None:
    """Run the tagger over a collection, replacing its earlier model mentions (gold ones stay)."""
    from indexer.errors import ModelError
    from indexer.ner import load_tagger, tag_collection

    tagger = load_tagger(settings)
    if tagger is None:
        raise ModelError(f"no trained tagger at {str(settings.train_ner.output_dir)!r}; run `indexer train-ner` "
                         f"or set ner.model")
    counts = tag_collection(open_store(settings, create=False), collection, tagger, batch_size)
    found = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"
    click.echo(f"{collection}: model mentions by label: {found}")


if __name__ == "__main__":
    main()
