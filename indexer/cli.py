"""`indexer` command: import, build, add, update, delete, tag, models, train-models, train-ner, eval-ner, train-embedder, eval-embedder, train-reranker, config."""
from __future__ import annotations

import contextlib
import functools
import os
import sys
from pathlib import Path
from typing import Iterator

import click

from indexer.documents import Document
from indexer.errors import ConfigError, MedlexError
from indexer.importing import CorpusReader, StoppedAtBadRecord, import_corpus, make_chunker, open_store
from indexer.readers import ReadOptions
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


def writes_index(func, store_only: bool = False):
    """--no-wait on a command that writes the index directory; its body runs holding the writer lock.

    `store_only`: the command writes the store and nothing else of the directory (import), so on
    PostgreSQL (store.url), which takes writes from many processes at once, it runs without the lock.
    """

    @click.option("--no-wait", is_flag=True,
                  help="Refuse at once when another writer is at work on the index instead of waiting for it.")
    @functools.wraps(func)
    def wrapper(settings: Settings, no_wait: bool, **kwargs):
        from indexer.writer_lock import writer_lock

        if store_only and settings.store.url:
            return func(settings=settings, **kwargs)
        with writer_lock(settings.index.dir, _command_line(), wait=not no_wait,
                         say=lambda message: click.echo(message, err=True)):
            return func(settings=settings, **kwargs)

    return wrapper


def writes_store(func):
    """writes_index for a command that writes only the store: no lock on a PostgreSQL store."""
    return writes_index(func, store_only=True)


def _command_line() -> str:
    """'indexer add --format beir ...' as this process was started (the command name alone under a test runner)."""
    name = click.get_current_context().info_name
    args = sys.argv[1:] if sys.argv[1:2] == [name] else [name]
    return " ".join(["indexer", *args])


def locked_store_message(exc: BaseException) -> str | None:
    """The one-line message for SQLite's 'database is locked' (another process held its write lock too long)."""
    if "database is locked" not in str(getattr(exc, "orig", exc)):
        return None
    return ("the store is locked by another process that kept SQLite's write lock past the 30 s busy timeout "
            "(a writer that does not take the index's writer.lock, or a long transaction); nothing of this "
            "run's last transaction was written; run the command again once that process has finished")


class MedlexGroup(click.Group):
    """A click group that turns domain errors into one line and exit status 1."""

    def invoke(self, ctx):
        import sqlite3

        from sqlalchemy.exc import OperationalError

        try:
            return super().invoke(ctx)
        except MedlexError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except (OperationalError, sqlite3.OperationalError) as exc:
            message = locked_store_message(exc)
            if message is None:
                raise
            click.echo(f"error: {message}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted; the store and index are as they were before the last unfinished batch",
                       err=True)
            sys.exit(130)


@click.group(cls=MedlexGroup)
def main() -> None:
    """medlex indexer: import corpora, build indexes, train and run the models."""


def field_map(fields: tuple[str, ...]) -> dict[str, str]:
    """--field NAME=FIELD options as a mapping; a malformed one is an error naming it."""
    bad = [f for f in fields if "=" not in f or not f.split("=", 1)[1]]
    if bad:
        raise ConfigError(f"--field {bad[0]!r} is not NAME=FIELD, e.g. --field text=body.full")
    return dict(f.split("=", 1) for f in fields)


def record_options(func):
    """--skip-bad, --field, --source and PATH, shared by `import`, `add` and `update`."""
    for option in reversed((
            click.option("--skip-bad", is_flag=True, help="Skip malformed records with a warning instead of stopping."),
            click.option("--strict-utf8", is_flag=True,
                         help="Refuse a file holding bytes that are not UTF-8 (default: replace and count them)."),
            click.option("--field", "fields", multiple=True, metavar="NAME=FIELD",
                         help="json/jsonl: map id, title, text, date, doc_type, court, source to record fields."),
            click.option("--source", default=None, help="Value of the source facet (default: the reader's)."),
            click.argument("path", type=click.Path(path_type=Path)))):
        func = option(func)
    return func


def _corpus(settings: Settings, fmt: str, path: Path, skip_bad: bool, fields: tuple[str, ...], source: str | None,
            limit: int | None = None, strict_utf8: bool = False) -> CorpusReader:
    options = ReadOptions(label_map=settings.train_ner.label_map, fields=field_map(fields), source=source)
    return CorpusReader(fmt, path, options, limit, skip_bad, strict_utf8=strict_utf8,
                        max_chars=settings.chunk.max_document_chars)


@contextlib.contextmanager
def _skip_bad_hint(*notes: str) -> Iterator[None]:
    """A stop at a malformed record gets these notes and says how to skip such records."""
    try:
        yield
    except StoppedAtBadRecord as err:
        raise err.with_note(*notes, "--skip-bad skips such records") from None


@main.command("import")
@config_options
@writes_store
@click.option("--format", "fmt", required=True, help="Corpus format (see README).")
@click.option("--collection", required=True, help="Collection to add the documents to.")
@click.option("--batch-size", default=200, show_default=True, help="Documents per transaction.")
@click.option("--limit", type=int, default=None, help="Import at most this many documents.")
@record_options
def import_cmd(settings: Settings, fmt: str, collection: str, batch_size: int, limit: int | None, skip_bad: bool,
               strict_utf8: bool, fields: tuple[str, ...], source: str | None, path: Path) -> None:
    """Read PATH in FORMAT into the store, updating documents whose ids exist already."""
    corpus = _corpus(settings, fmt, path, skip_bad, fields, source, limit, strict_utf8)
    with _skip_bad_hint():
        total = import_corpus(settings, collection, corpus, batch_size)
    mentions = ", ".join(f"{k} {v}" for k, v in sorted(total.mentions.items())) or "none"
    click.echo(f"{collection}: {total.added} added, {total.updated} updated, {total.unchanged} unchanged, "
               f"{len(corpus.skipped)} skipped; {total.chunks} chunks; gold mentions: {mentions}"
               + (f"; {corpus.replaced_bytes} bytes not UTF-8 replaced" if corpus.replaced_bytes else ""))


def _read_documents(settings: Settings, fmt: str, path: Path, skip_bad: bool, fields: tuple[str, ...] = (),
                    source: str | None = None, strict_utf8: bool = False) -> list[Document]:
    """All documents of PATH; a malformed record stops unless --skip-bad."""
    with _skip_bad_hint("nothing was changed"):
        return list(_corpus(settings, fmt, path, skip_bad, fields, source, strict_utf8=strict_utf8))


@main.command("build")
@config_options
@writes_index
@click.option("--collection", default=None, help="Check that this collection is in the store (the index covers all).")
@click.option("--rebuild", is_flag=True, help="Re-encode every chunk instead of syncing the existing index.")
@click.option("--tag/--no-tag", default=True, show_default=True,
              help="Tag documents without gold mentions with the tagger found on the [models] path.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: tag and encode as a Ray Data job with the [cluster] settings (pip install -e .[cluster]).")
def build_cmd(settings: Settings, collection: str | None, rebuild: bool, tag: bool, engine: str) -> None:
    """Tag untagged documents and encode the store's chunks into vectors.faiss (incremental and resumable)."""
    from indexer.embedder import load_embedder
    from indexer.errors import StoreError
    from indexer.ner import load_tagger
    from indexer.pipeline import sync

    if engine == "ray":  # before the models load: a missing extra or a bad [cluster] setting fails fast
        from indexer.cluster import check_cluster, import_ray

        import_ray()
        check_cluster(settings)
    store = open_store(settings, create=False)
    if collection is not None and collection not in store.collections():
        raise StoreError(f"unknown collection {collection!r}; known: {', '.join(store.collections()) or 'none'}")
    tagger = load_tagger(settings) if tag else None
    if tag and tagger is None:
        click.echo("no tagger found on the models search path (`indexer models` lists it): documents keep their "
                   "gold mentions only; train one with `indexer train-models`", err=True)
    if engine == "ray":
        from indexer.cluster import sync_on_ray as run_build
    else:
        run_build = sync
    manifest = run_build(settings, store, load_embedder(settings, prepare=True), rebuild=rebuild, tagger=tagger)
    rate = manifest["encoded_last_build"] / max(manifest["build_seconds"], 1e-9)
    tagged = f"; tagged {manifest['tagged_last_build']} documents ({_label_counts(manifest['mentions_last_build'])})" \
        if tagger is not None else ""
    click.echo(f"{settings.index.dir}: {manifest['live_vectors']} vectors ({manifest['index_type']}, dim "
               f"{manifest['dim']}) for {manifest['documents']} documents; encoded {manifest['encoded_last_build']} "
               f"chunks in {manifest['build_seconds']:.1f} s ({rate:.0f} chunks/s){tagged}")


@main.command("reshard")
@config_options
@click.argument("shards", type=int)
def reshard_cmd(settings: Settings, shards: int) -> None:
    """Split vectors.faiss afresh into SHARDS chunk-id ranges for searchd (1: search vectors.faiss alone)."""
    import dataclasses

    from indexer.shards import reshard

    configured = settings.index.shards
    settings = settings.replace(index=dataclasses.replace(settings.index, shards=shards))
    manifest = reshard(settings)
    for i, shard in enumerate(manifest.get("shards", [])):
        click.echo(f"shard {i}: {shard['vectors']} vectors from chunk id {shard['first_id']} ({shard['file']})")
    click.echo(f"{settings.index.dir}: {manifest['live_vectors']} vectors in {max(shards, 1)} "
               f"{'shards' if shards > 1 else 'file (vectors.faiss)'} ({manifest['reshard_seconds']:.1f} s)")
    if configured != shards:
        click.echo(f"note: index.shards is {configured} in the configuration, so the next `indexer build` or "
                   f"add/update/delete writes {configured}; set index.shards = {shards} to keep this split", err=True)


@main.command("bench-build")
@config_options
@click.option("--engines", default="local,ray:1,ray:2", show_default=True,
              help="Engines to time, in order: local and ray:WORKERS (Ray runs are compared with the first, local).")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=Path("var/bench-build"),
              show_default=True, help="Where each engine's copy of the store is built.")
@click.option("--tag/--no-tag", default=True, show_default=True, help="Tag the documents too (--no-tag: encoding only).")
def bench_build_cmd(settings: Settings, engines: str, workdir: Path, tag: bool) -> None:
    """Build copies of the imported store with each engine; print chunks/s and agreement with the local build."""
    from indexer.build_bench import format_build_table, parse_engines, run_build_bench

    plan = parse_engines(engines)
    if any(name == "ray" for name, _ in plan):
        from indexer.cluster import import_ray

        import_ray()
    rows = run_build_bench(settings, plan, workdir, tag, echo=click.echo)
    click.echo(f"\n{settings.index.dir} built by each engine; {os.cpu_count()} CPUs, "
               f"cluster.cpus_per_worker={settings.cluster.cpus_per_worker}\n")
    click.echo(format_build_table(rows))


def _label_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no mentions"


def _change(settings: Settings, collection: str, upserts: list, deletes: list[str]) -> None:
    from indexer.embedder import load_embedder
    from indexer.pipeline import change

    stats = change(settings, load_embedder(settings, prepare=True), collection, upserts, deletes,
                   make_chunker(settings))
    click.echo(f"{collection}: {stats.added} added, {stats.updated} updated, {stats.unchanged} unchanged, "
               f"{stats.deleted} deleted; {stats.chunks} chunks encoded")


@main.command("add")
@config_options
@writes_index
@click.option("--format", "fmt", required=True, help="Corpus format (see README).")
@click.option("--collection", required=True, help="Collection to add the documents to.")
@record_options
def add_cmd(settings: Settings, fmt: str, collection: str, skip_bad: bool, strict_utf8: bool,
            fields: tuple[str, ...], source: str | None, path: Path) -> None:
    """Add documents (and their vectors) without a rebuild; existing ids are updated."""
    _change(settings, collection, _read_documents(settings, fmt, path, skip_bad, fields, source, strict_utf8), [])


@main.command("update")
@config_options
@writes_index
@click.option("--format", "fmt", required=True, help="Corpus format (see README).")
@click.option("--collection", required=True, help="Collection holding the documents.")
@record_options
def update_cmd(settings: Settings, fmt: str, collection: str, skip_bad: bool, strict_utf8: bool,
               fields: tuple[str, ...], source: str | None, path: Path) -> None:
    """Replace documents that exist already (by id); unknown ids are an error."""
    from indexer.errors import StoreError

    docs = _read_documents(settings, fmt, path, skip_bad, fields, source, strict_utf8)
    store = open_store(settings, create=False)
    known = set(store.external_ids(collection))
    store.close()
    unknown = [d.id for d in docs if d.id not in known]
    if unknown:
        raise StoreError(f"update: {len(unknown)} documents are not in collection {collection!r} "
                         f"(first: {unknown[0]!r}); use `indexer add` for new documents")
    _change(settings, collection, docs, [])


@main.command("delete")
@config_options
@writes_index
@click.option("--collection", required=True, help="Collection holding the documents.")
@click.argument("ids", nargs=-1, required=True)
def delete_cmd(settings: Settings, collection: str, ids: tuple[str, ...]) -> None:
    """Delete documents by their corpus ids, with their chunks, mentions and vectors."""
    from indexer.errors import StoreError

    store = open_store(settings, create=False)
    known = set(store.external_ids(collection))
    store.close()
    unknown = [i for i in ids if i not in known]
    if unknown:
        behind = _out_of_step(settings)
        if not behind:
            raise StoreError(f"delete: no document {unknown[0]!r} in collection {collection!r}")
        more = f" and {len(unknown) - 1} more" if len(unknown) > 1 else ""
        click.echo(f"warning: no document {unknown[0]!r}{more} in collection {collection!r}, and the index is out "
                   f"of step with the store: an earlier run stopped midway (a delete that removed them?); "
                   f"bringing the index in step", err=True)
    _change(settings, collection, [], [i for i in ids if i in known])


def _out_of_step(settings: Settings) -> str:
    """'' when the index agrees with its store, else why not.

    An earlier `delete` killed after the store committed leaves the ids gone but their vectors indexed.
    """
    from indexer.errors import IndexMismatchError
    from indexer.pipeline import MANIFEST, open_index

    if not (settings.index.dir / MANIFEST).is_file():
        return ""
    try:
        open_index(settings)[0].close()
    except IndexMismatchError as exc:
        return str(exc)
    return ""


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
    from indexer.train.models import tagger_card

    path, metrics = train_ner(settings)
    tagger_card(settings, path, metrics, "indexer train-ner")
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
@click.option("--where", multiple=True, metavar="KEY=VALUE", help="Only documents whose meta KEY is VALUE.")
@click.option("--by", default=None, metavar="KEY", help="Also score each value of meta KEY (e.g. source).")
@click.option("--sweep-confidence", "sweep", default=None, metavar="T1,T2,...",
              help="Tag once without ner.min_confidence, then score at each of these confidence thresholds.")
@click.argument("path", type=click.Path(path_type=Path))
def eval_ner_cmd(settings: Settings, fmt: str, model_dir: Path | None, output: Path | None, limit: int | None,
                 skip_bad: bool, threads: int | None, where: tuple[str, ...], by: str | None, sweep: str | None,
                 path: Path) -> None:
    """Score the tagger on gold mentions in PATH (seqeval, strict IOB2, exact span and label)."""
    import dataclasses
    import json

    import torch

    from indexer.errors import ModelError
    from indexer.ner import load_tagger
    from indexer.train.ner import (evaluate, format_report, format_sweep, load_documents, parse_thresholds,
                                   select_documents)

    if threads:
        torch.set_num_threads(threads)
    if model_dir is not None:
        settings = settings.replace(ner=dataclasses.replace(settings.ner, model=str(model_dir)))
    tagger = load_tagger(settings)
    if tagger is None:
        raise ModelError(f"no trained tagger at {str(settings.train_ner.output_dir)!r}; run `indexer train-ner` "
                         f"or pass --model")
    docs = select_documents(load_documents([path], fmt, settings.train_ner.label_map, None, skip_bad), where)[:limit]
    thresholds = parse_thresholds(sweep) if sweep else ()
    if thresholds:  # one pass without any floor; the sweep applies each threshold to every text
        tagger.min_confidence = 0.0
        if tagger.mention_filter is not None:
            tagger.mention_filter.min_confidence = 0.0
    metrics = evaluate(tagger, docs, progress=True, by=by, thresholds=thresholds)
    click.echo(format_report(metrics))
    if thresholds:
        click.echo(f"\n(the scores above: no confidence floor; ner.min_confidence is {settings.ner.min_confidence:g}, "
                   f"ner.legal_min_confidence {settings.ner.legal_min_confidence:g})")
        click.echo("\n".join(format_sweep(metrics["sweep"])))
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(dict(metrics, data=str(path), model=str(settings.ner.model)), indent=2),
                          encoding="utf-8")
        click.echo(f"wrote {output}")


@main.command("tag")
@config_options
@writes_index
@click.option("--collection", required=True, help="Collection whose documents are tagged.")
@click.option("--batch-size", default=64, show_default=True, help="Documents per transaction.")
def tag_cmd(settings: Settings, collection: str, batch_size: int) -> None:
    """Run the tagger over a collection, replacing its earlier model mentions (gold ones stay)."""
    from indexer.errors import ModelError
    from indexer.ner import load_tagger
    from indexer.tagging import tag_collection

    tagger = load_tagger(settings)
    if tagger is None:
        raise ModelError("no tagger on the models search path (`indexer models` lists it); run `indexer "
                         "train-models` or set ner.model")
    counts = tag_collection(open_store(settings, create=False), collection, tagger, batch_size)
    found = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"
    click.echo(f"{collection}: model mentions by label: {found}")


@main.command("train-embedder")
@config_options
@click.option("--report/--no-report", default=True, show_default=True,
              help="After training, compare the base and the tuned model on every dev set.")
def train_embedder_cmd(settings: Settings, report: bool) -> None:
    """Fine-tune the sentence embedder ([train_embedder]) and save it to its output_dir."""
    from indexer.train.embedder import train_embedder

    from indexer.train.models import embedder_card

    result = train_embedder(settings)
    embedder_card(settings, result, "indexer train-embedder")
    click.echo(f"saved {result.model_dir} after {result.steps} steps in {result.seconds:.0f} s on {result.device}; "
               f"pairs: {', '.join(f'{k} {v}' for k, v in sorted(result.pairs.items()))}")
    if report:
        _embedder_report(settings, result.model_dir, {"seconds": result.seconds, "device": result.device,
                                                      "steps": result.steps, "pairs": result.pairs},
                         None)  # re-evaluated in fp32: training-time scores may come from bf16 autocast


@main.command("train-reranker")
@config_options
@click.option("--threads", type=int, default=None, help="Torch CPU threads (default: torch's choice).")
def train_reranker_cmd(settings: Settings, threads: int | None) -> None:
    """Train the cross-encoder reranker ([train_reranker]) and save it, with its card, to its output_dir."""
    import torch

    from indexer.train.models import reranker_card
    from indexer.train.reranker import train_reranker

    if threads:
        torch.set_num_threads(threads)
    result = train_reranker(settings)
    reranker_card(settings, result, "indexer train-reranker")
    dev = ", ".join(f"{k} {v:.3f}" for k, v in sorted(result.dev_metrics.items())) or "not measured"
    click.echo(f"saved {result.model_dir} after {result.steps} steps in {result.seconds:.0f} s on {result.device}; "
               f"rows: {', '.join(f'{k} {v}' for k, v in sorted(result.rows.items()))}; dev: {dev}")


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


@main.command("config")
@click.option("--write", "path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the file here (e.g. config.toml) instead of printing it.")
def config_cmd(path: Path | None) -> None:
    """Print config.toml with every key at its default and its help, generated from indexer/settings.py."""
    from indexer.settings import render_config

    if path is None:
        click.echo(render_config(), nl=False)
    else:
        path.write_text(render_config(), encoding="utf-8")
        click.echo(f"written: {path}")


@main.command("legal-dev-set")
@config_options
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the BEIR corpus (default: var/legal-ner-dev/corpus.jsonl).")
def legal_dev_set_cmd(settings: Settings, out: Path | None) -> None:
    """Write the hand-annotated legal NER dev set, its passages read from the data directory."""
    from indexer.legal_dev import DEFAULT_OUT, materialize

    out = out or settings.root / DEFAULT_OUT
    click.echo(f"wrote {materialize(settings.data.dir, out)} passages to {out}")


@main.command("models")
@config_options
def models_cmd(settings: Settings) -> None:
    """List the trained models on the [models] search path and which one each command uses."""
    from indexer.registry import describe

    for line in describe(settings):
        click.echo(line)


@main.command("export-models")
@config_options
def export_models_cmd(settings: Settings) -> None:
    """Make the ONNX/OpenVINO exports the configured backends need (indexer build also makes them;
    the reranker's only here, when search.rerank_depth is set)."""
    from indexer.embedder import load_embedder
    from indexer.ner import load_tagger

    embedder = load_embedder(settings, prepare=True)
    click.echo(f"embedder {embedder.name}: {embedder.choice.variant} ({embedder.choice.reason})")
    queries = load_embedder(settings, prepare=True, purpose="query")  # what searchd encodes queries with
    if queries.choice.variant != embedder.choice.variant:
        click.echo(f"query encoder (searchd): {queries.choice.variant} ({queries.choice.reason})")
    tagger = load_tagger(settings, prepare=True)
    if tagger is not None:
        click.echo(f"tagger encoder: {tagger.choice.variant} ({tagger.choice.reason})")
    if settings.search.rerank_depth > 0:
        from indexer.reranker import load_reranker

        reranker = load_reranker(settings, prepare=True)
        click.echo(f"reranker {reranker.name}: {reranker.choice.variant} ({reranker.choice.reason})")


@main.command("train-models")
@config_options
@click.option("--only", type=click.Choice(["tagger", "embedder", "reranker"]), default=None, help="Train one of them.")
@click.option("--threads", type=int, default=None, help="Torch CPU threads (default: torch's choice).")
def train_models_cmd(settings: Settings, only: str | None, threads: int | None) -> None:
    """Train the tagger, the embedder and the reranker (on the GPU when present) into the first writable [models] path entry."""
    import torch

    from indexer.train.models import KINDS, train_models

    if threads:
        torch.set_num_threads(threads)
    for path in train_models(settings, (only,) if only else KINDS):
        click.echo(f"saved {path}")


if __name__ == "__main__":
    main()
