"""`searchd` command: serve the JSON API, search from the command line, run the benchmark, evaluate retrieval."""
from __future__ import annotations

import json
from pathlib import Path

import click

from indexer.cli import MedlexGroup, config_options
from indexer.errors import ConfigError, QueryError
from indexer.settings import Settings


@click.group(cls=MedlexGroup)
def main() -> None:
    """medlex search daemon: JSON API over an index directory."""


@main.command("serve")
@config_options
@click.option("--host", default=None, help="Bind address (default: server.host).")
@click.option("--port", type=int, default=None, help="Port (default: server.port).")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Processes sharing the port and the memory-mapped index (default: server.workers).")
def serve_cmd(settings: Settings, host: str | None, port: int | None, workers: int | None) -> None:
    """Serve /search, /documents/<id>, /documents/<id>/similar, /facets, /health, /stats with waitress."""
    host, port, workers = host or settings.server.host, settings.server.port if port is None else port, \
        workers or settings.server.workers
    if workers > 1 and settings.cluster.serve_shards and not settings.cluster.address:
        raise ConfigError(f"cluster.serve_shards with a local Ray cluster (cluster.address empty) needs one searchd "
                          f"process, not --workers {workers}: each worker would start a Ray cluster and replicas of "
                          f"its own; run `ray start --head` and set cluster.address = \"auto\" to share one")
    if workers > 1:  # forks before numpy, torch or FAISS are imported (no threads to inherit)
        from searchd.workers import serve_workers

        serve_workers(settings, host, port, workers)
        return
    from searchd.server import serve

    serve(settings, host, port)


@main.command("search")
@config_options
@click.option("--mode", default=None, help="dense | keyword | hybrid (default: search.default_mode).")
@click.option("-k", "k", default=None, help="Hits to show.")
@click.option("--offset", default=None, help="Hits to skip.")
@click.option("--filter", "filters", multiple=True, metavar="NAME=VALUE",
              help="Filter, e.g. disease=MESH:D013313, doc_type=decision, year_from=2010, negated=1; repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole SearchResult as JSON.")
@click.argument("query", nargs=-1, required=True)
def search_cmd(settings: Settings, mode: str | None, k: str | None, offset: str | None, filters: tuple[str, ...],
               as_json: bool, query: tuple[str, ...]) -> None:
    """Search the index and print a table of hits (or JSON)."""
    from indexer.errors import QueryError
    from searchd.service import SearchService

    params: dict[str, list[str]] = {"q": [" ".join(query)]}
    for name, value in (("mode", mode), ("k", k), ("offset", offset)):
        if value is not None:
            params[name] = [str(value)]
    for item in filters:
        if "=" not in item:
            raise QueryError(f"--filter {item!r} must look like NAME=VALUE")
        name, value = item.split("=", 1)
        params.setdefault(name.strip(), []).append(value)
    with SearchService.load(settings) as service:
        result = service.search(service.parse(params))
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        return
    click.echo(f"{result.total} documents match ({result.mode}, {result.timings['total']:.1f} ms)"
               + "".join(f"; {f.label}" for f in result.filters))
    click.echo(f"{'rank':>4}  {'score':>8}  {'id':<16} {'collection':<12} title")
    for hit in result.hits:
        click.echo(f"{hit.rank:>4}  {hit.score:>8.4f}  {hit.external_id[:16]:<16} {hit.collection[:12]:<12} "
                   f"{hit.title}")
        click.echo(f"{'':>16}{' '.join(hit.snippet.text.split())[:110]}")


@main.command("bench")
@config_options
@click.option("--chunks", default=100_000, show_default=True, help="Synthetic chunks in the benchmark index.")
@click.option("--queries", default=200, show_default=True, help="Timed queries per row.")
@click.option("--http-seconds", default=5.0, show_default=True, help="Seconds per HTTP concurrency level.")
@click.option("--workdir", type=click.Path(), default=None, help="Where to build the index (default: a temp dir).")
@click.option("--filter-harness", is_flag=True,
              help="Only the filtered vector search harness: random unit vectors, medlex vs FAISS vs numpy "
                   "(--chunks vectors, --queries queries, dimension 256).")
@click.option("--inference", type=click.Choice(["with", "only", "skip"]), default="with", show_default=True,
              help="The inference table (every backend x precision of embedder and tagger): with the rest, only, or skip.")
@click.option("--inference-passages", default=96, show_default=True,
              help="Passages (~128 tokens each) per variant and thread count in the inference table; more give "
                   "steadier rates.")
@click.option("--shards", "shard_counts", default=None, metavar="N,N,...",
              help="Only the sharded exact search benchmark: --chunks random unit vectors x 384 split into each "
                   "number of shards (e.g. 1,2,4); latency and threaded throughput.")
@click.option("--clients", default=4, show_default=True, help="Client threads of the --shards throughput column.")
@click.option("--serve", "on_serve", is_flag=True,
              help="With --shards: the same shards also on Ray Serve replicas ([cluster] settings, the [cluster] "
                   "extra), rows beside the threaded ones.")
@click.option("--workers", default="1,2", show_default=True,
              help="Comma-separated `searchd serve --workers` counts for the HTTP rows (0 skips HTTP).")
@click.option("--long-queries", default=0, show_default=True,
              help="Also time this many long queries (2,000-5,000 characters: facts of legal decisions) per mode.")
def bench_cmd(settings: Settings, chunks: int, queries: int, http_seconds: float, workdir: str | None,
              filter_harness: bool, inference: str, shard_counts: str | None, clients: int, on_serve: bool,
              workers: str, long_queries: int, inference_passages: int) -> None:
    """Build a synthetic index and print build speed, latency per mode and filter, HTTP QPS and memory."""
    if shard_counts is not None:
        from searchd.eval.shard_bench import format_shard_table, run_shard_bench

        try:
            counts = [int(c) for c in shard_counts.split(",")]
        except ValueError:
            counts = [0]
        if not counts or min(counts) < 1:
            raise QueryError(f"--shards {shard_counts!r} is not a list of shard counts of at least 1, e.g. 1,2,4")
        rows = run_shard_bench(settings.index, counts, chunks, n_queries=queries, clients=clients, echo=click.echo,
                               serve=settings if on_serve else None)
        click.echo(format_shard_table(rows, chunks, 384, queries, clients))
        return
    if on_serve:
        raise QueryError("--serve goes with --shards (e.g. --shards 1,2,4 --serve)")
    if filter_harness:
        from searchd.eval.harness import format_table, run_harness

        rows = run_harness(settings.index, chunks, n_queries=queries)
        click.echo(format_table(f"\nfiltered search harness: {chunks} unit vectors x 256, {queries} queries, "
                                f"one category filter, 1 FAISS thread (medlex's split flat search: index.scan_threads)", rows))
        return
    from searchd.eval.bench import run_bench

    try:
        counts = tuple(int(w) for w in workers.split(",") if int(w) > 0)
    except ValueError:
        raise click.BadParameter(f"{workers!r} is not a comma-separated list of numbers", param_hint="--workers")
    if long_queries < 0:
        raise click.BadParameter(f"{long_queries} is not a number of queries", param_hint="--long-queries")
    if inference_passages < 8:
        raise click.BadParameter(f"{inference_passages} passages are too few to time (at least 8)",
                                 param_hint="--inference-passages")
    run_bench(settings, chunks, queries, http_seconds, workdir, inference, counts, long_queries, inference_passages)


@main.command("gate")
@config_options
@click.option("--kind", "kinds", multiple=True, type=click.Choice(["embedder", "tagger"]),
              help="Model to measure; repeatable (default: both).")
@click.option("--corpus-sample", type=int, default=0, show_default=True,
              help="Evaluate on a seeded subsample of each corpus of this many documents (0 = the whole corpus).")
@click.option("--max-queries", type=int, default=None, help="A seeded sample of this many queries per set.")
@click.option("--ner-limit", type=int, default=None, help="Score the tagger on the first N BC5CDR dev documents.")
@click.option("--speed-only", is_flag=True,
              help="Time the variants of the existing record again (throughput, query latency); keep its quality.")
@click.option("--variant", "variants", multiple=True,
              help="Measure only this backend-precision (repeatable), keeping the record's other rows; "
                   "the options must match the record's.")
def gate_cmd(settings: Settings, kinds: tuple[str, ...], corpus_sample: int, max_queries: int | None,
             ner_limit: int | None, speed_only: bool, variants: tuple[str, ...]) -> None:
    """Measure every backend x precision against torch fp32 (quality and speed) and record it for `auto`."""
    from searchd.eval.gate import run_gate

    run_gate(settings, kinds or ("embedder", "tagger"), corpus_sample, max_queries, ner_limit, click.echo,
             speed_only, variants)


@main.command("rerank-bench")
@config_options
@click.option("--index", "index_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Index whose store gives the passages (default: index.dir).")
@click.option("--dataset", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="BEIR directory whose queries.jsonl gives the queries.")
@click.option("--queries", "n_queries", default=30, show_default=True, help="Timed queries per row.")
@click.option("--depth", default=20, show_default=True, help="Passages reranked per query.")
@click.option("--max-length", "lengths", type=int, multiple=True, help="Reranker max_length; repeatable (default: 128 64).")
@click.option("--variant", "variants", multiple=True, help="backend-precision; repeatable (default: all six).")
@click.option("--threads", default=2, show_default=True, help="torch / ONNX Runtime / OpenVINO threads.")
def rerank_bench_cmd(settings: Settings, index_dir: Path | None, dataset: Path, n_queries: int, depth: int,
                     lengths: tuple[int, ...], variants: tuple[str, ...], threads: int) -> None:
    """Latency of the reranker on a query's top N real passages, per backend, precision and max_length."""
    import os

    import torch

    from indexer.errors import ModelError
    from indexer.readers.beir import load_queries
    from indexer.reranker import resolve_reranker_dir, store_pairs
    from searchd.eval.rerank_bench import VARIANTS, markdown, passages_of, run

    torch.set_num_threads(threads)
    model_dir = resolve_reranker_dir(settings)
    if model_dir is None:
        raise ModelError("no reranker on the models search path; run `indexer train-reranker` or set search.rerank_model")
    index_dir = index_dir or settings.index.dir
    queries = list(load_queries(_data_path(settings, dataset)).values())[:n_queries]
    passages = passages_of(index_dir, max(depth * 4, n_queries * depth // 2), seed=0)
    load = "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    rows = run(settings, model_dir, queries, passages, depth, lengths or (128, 64), variants or VARIANTS, threads,
               lambda: store_pairs(index_dir), say=lambda m: click.echo(m, err=True))
    click.echo(markdown(rows, len(queries), threads, f"{load} before, " + " ".join(f"{x:.2f}" for x in os.getloadavg())
                        + " after"))


@main.command("eval")
@config_options
@click.option("--dataset", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="BEIR directory: corpus.jsonl[.gz], queries.jsonl, qrels/<split>.tsv.")
@click.option("--split", required=True, help="qrels/<split>.tsv to score against.")
@click.option("--fold", type=click.Choice(["dev", "train"]), default=None,
              help="Only the seeded dev (or train) fold of the split's queries: the embedder's held-out draw "
                   "(train_embedder.dev_fraction, train_embedder.seed).")
@click.option("--system", "systems", multiple=True,
              help="System to run; repeatable (default: eval.systems). bm25, dense-base, dense-tuned, hybrid, "
                   "hybrid-entities.")
@click.option("--max-queries", type=int, default=None, help="Run a seeded sample of this many queries (eval.max_queries).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Report folder (default: eval.output_dir/<dataset>-<split>[-<fold>]).")
def eval_cmd(settings: Settings, dataset: Path, split: str, fold: str | None, systems: tuple[str, ...],
             max_queries: int | None, out: Path | None) -> None:
    """Score systems side by side on a BEIR set through SearchService.search; Markdown, JSON and a plot."""
    from searchd.eval.report import markdown, write_report
    from searchd.eval.evaluate import evaluate

    dataset = _eval_dataset(settings, dataset, split)
    report, runs = evaluate(dataset, split, settings, list(systems or settings.eval.systems), fold, max_queries)
    name = f"{report['dataset']['name']}-{split}" + (f"-{fold}" if fold else "")
    out = out or settings.eval.output_dir / name
    per_query = report.pop("per_query")
    paths = write_report(report, per_query, {n: r.rankings for n, r in runs.items()}, out)
    click.echo(markdown(report))
    click.echo("written: " + ", ".join(str(p) for p in paths.values()))


@main.command("compare-runs")
@config_options
@click.option("--run", "runs", multiple=True, required=True, metavar="LABEL=DIR:SYSTEM",
              help="A system of a `searchd eval` report folder, e.g. long=var/eval/bva-long-mean:bm25; repeatable.")
def compare_runs_cmd(settings: Settings, runs: tuple[str, ...]) -> None:
    """Paired randomisation and Wilcoxon tests between systems of different eval runs, on their shared queries."""
    from indexer.errors import ConfigError
    from searchd.eval.compare_runs import compare_runs

    parsed = {}
    for item in runs:
        label, _, rest = item.partition("=")
        folder, _, system = rest.rpartition(":")
        if not label or not folder or not system:
            raise ConfigError(f"--run {item!r} must look like LABEL=DIR:SYSTEM")
        parsed[label] = (Path(folder), system)
    ev = settings.eval
    click.echo("| metric | A | B | mean A | mean B | A wins | B wins | ties | p (randomisation) | p (Wilcoxon) |")
    click.echo("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for c in compare_runs(parsed, list(ev.significance_metrics), ev.permutations, ev.sample_seed):
        click.echo(f"| {c.metric} | {c.a} | {c.b} | {c.mean_a:.4f} | {c.mean_b:.4f} | {c.wins} | {c.losses} | "
                   f"{c.ties} | {c.p_randomisation:.4f} | {'-' if c.p_wilcoxon is None else format(c.p_wilcoxon, '.4f')} |")


@main.command("pool")
@config_options
@click.option("--dataset", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Eval set: a BEIR directory or a reader set (corpora.json, queries.jsonl, qrels/).")
@click.option("--split", default="dev", show_default=True, help="Candidates already in qrels/<split>.tsv are left out.")
@click.option("--system", "systems", multiple=True, help="System to pool from; repeatable (default: eval.systems).")
@click.option("--depth", type=int, default=20, show_default=True, help="Top documents taken from each system.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for pool.jsonl (default: eval.output_dir/<dataset>-pool).")
def pool_cmd(settings: Settings, dataset: Path, split: str, systems: tuple[str, ...], depth: int,
             out: Path | None) -> None:
    """Write the unjudged candidates of every query, pooled from the systems' top hits, for judging."""
    from searchd.eval.pool import pool, write_pool

    dataset = _eval_dataset(settings, dataset, split, check=False)
    candidates = pool(dataset, split, settings, list(systems or settings.eval.systems), depth)
    path = write_pool(candidates, out or settings.eval.output_dir / f"{dataset.name}-pool")
    click.echo(f"{path}: {len(candidates)} unjudged candidates for {len({c['query_id'] for c in candidates})} queries")


def _study_options(command):
    """The options the eval studies share: one eval set, its split, an optional fold and a query sample."""
    for option in reversed((config_options,
                            click.option("--dataset", required=True, type=click.Path(file_okay=False, path_type=Path),
                                         help="BEIR directory."),
                            click.option("--split", required=True, help="qrels/<split>.tsv to score against."),
                            click.option("--fold", type=click.Choice(["dev", "train"]), default=None,
                                         help="Only the seeded dev (or train) fold."),
                            click.option("--max-queries", type=int, default=None,
                                         help="Run a seeded sample of this many queries."))):
        command = option(command)
    return command


@main.command("fusion-study")
@_study_options
@click.option("--save", is_flag=True, help="Record the choice in the studied index's fusion.json (searchd then "
                                          "fuses queries of its collections so).")
@click.option("--save-to", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Record it in this index directory's fusion.json instead (e.g. the served index.dir).")
@click.option("--collection", "collections", multiple=True,
              help="Collections the saved choice is for (default: those of the studied index); repeatable.")
def fusion_study_cmd(settings: Settings, dataset: Path, split: str, fold: str | None, max_queries: int | None,
                     save: bool, save_to: Path | None, collections: tuple[str, ...]) -> None:
    """Fusion rules and chunk-to-document scores side by side on one eval set (one retrieval per query)."""
    from searchd.eval.fusion_study import run_study

    if save_to is not None and not (save_to / "manifest.json").is_file():
        raise click.UsageError(f"--save-to {save_to}: no manifest.json there; give an index directory")
    click.echo(run_study(_eval_dataset(settings, dataset, split), split, settings, fold, max_queries,
                         save, save_to, collections))


@main.command("keyword-study")
@_study_options
def keyword_study_cmd(settings: Settings, dataset: Path, split: str, fold: str | None, max_queries: int | None) -> None:
    """Keyword-side variants for long documents (chunk-to-document rules, boilerplate, feedback, whole documents)."""
    from searchd.eval.keyword_study import run_study

    click.echo(run_study(_eval_dataset(settings, dataset, split), split, settings, fold, max_queries))


@main.command("window-study")
@config_options
@click.option("--window", "windows", type=int, multiple=True, help="Windows to try (default: 10 20 50 100 200 500).")
def window_study_cmd(settings: Settings, windows: tuple[int, ...]) -> None:
    """Facets of a few legal queries at several search.result_window sizes, as a Markdown table."""
    from searchd.eval.window import WINDOWS, markdown, study
    from searchd.service import SearchService

    with SearchService.load(settings) as service:
        click.echo(markdown(study(service, windows or WINDOWS)))


@main.command("make-evalset")
@config_options
@click.argument("kind", type=click.Choice(["pubtator", "medquad", "bva-long", "nm-long"]))
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="Name of the set (its folder under eval.evalsets_dir).")
@click.option("--split", default="dev", show_default=True, help="Write qrels/<split>.tsv.")
@click.option("--fold", type=click.Choice(["dev", "train", "all"]), default="dev", show_default=True,
              help="medquad: which seeded fold of source pages, the embedder's held-out draw "
                   "(train_embedder.dev_fraction, train_embedder.seed).")
@click.option("--limit", type=int, default=None, help="bva-long, nm-long: read only the first N documents.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to write (default: eval.evalsets_dir/<name>).")
def make_evalset_cmd(settings: Settings, kind: str, path: Path, name: str, split: str, fold: str,
                     limit: int | None, out: Path | None) -> None:
    """Write a BEIR eval set from paired data: PubTator title->abstract, MedQuAD question->answer, and long
    queries: a BVA decision's discussion of the evidence (bva-long) or a New Mexico opinion's statement of
    facts (nm-long) -> the rest of that decision, the passage removed from it."""
    from searchd.eval import evalsets

    path = _data_path(settings, path)
    if kind.endswith("-long"):
        from searchd.eval.long_sets import long_query_set

        data = long_query_set("bva" if kind == "bva-long" else "nm-appeals", path, name, limit=limit)
    elif kind == "pubtator":
        data = evalsets.from_pubtator(path, name, settings.train_ner.label_map)
    else:
        data = evalsets.from_medquad(path, name, fold, settings.train_embedder.dev_fraction,
                                      settings.train_embedder.seed)
    out = out or settings.eval.evalsets_dir / name
    counts = evalsets.write_beir(data, out, split)
    click.echo(f"{out}: {counts['documents']} documents, {counts['queries']} queries, "
               f"{counts['judgments']} judgments in qrels/{split}.tsv")


def _eval_dataset(settings: Settings, dataset: Path, split: str, check: bool = True) -> Path:
    """The BEIR folder to evaluate: the dataset itself, or a reader set's corpus read from the data directory."""
    from searchd.eval.reader_sets import is_reader_set, materialise

    dataset = _data_path(settings, dataset)
    return materialise(dataset, split, settings, check) if is_reader_set(dataset) else dataset


def _data_path(settings: Settings, path: Path) -> Path:
    """A path as given, or relative to the data directory when it does not exist as given."""
    if path.exists() or path.is_absolute():
        return path
    return settings.data_path(path)


if __name__ == "__main__":
    main()
