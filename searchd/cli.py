"""`searchd` command: serve the JSON API, search from the command line, run the benchmark, evaluate retrieval."""
from __future__ import annotations

import json
from pathlib import Path

import click

from indexer.cli import MedlexGroup, config_options
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
@click.option("--workers", default="1,2", show_default=True,
              help="Comma-separated `searchd serve --workers` counts for the HTTP rows (0 skips HTTP).")
def bench_cmd(settings: Settings, chunks: int, queries: int, http_seconds: float, workdir: str | None,
              filter_harness: bool, inference: str, workers: str) -> None:
    """Build a synthetic index and print build speed, latency per mode and filter, HTTP QPS and memory."""
    if filter_harness:
        from searchd.eval.harness import format_table, run_harness

        rows = run_harness(settings.index, chunks, n_queries=queries)
        click.echo(format_table(f"\nfiltered search harness: {chunks} unit vectors x 256, {queries} queries, "
                                f"one category filter, 1 FAISS thread", rows))
        return
    from searchd.eval.bench import run_bench

    try:
        counts = tuple(int(w) for w in workers.split(",") if int(w) > 0)
    except ValueError:
        raise click.BadParameter(f"{workers!r} is not a comma-separated list of numbers", param_hint="--workers")
    run_bench(settings, chunks, queries, http_seconds, workdir, inference, counts)


@main.command("gate")
@config_options
@click.option("--kind", "kinds", multiple=True, type=click.Choice(["embedder", "tagger"]),
              help="Model to measure; repeatable (default: both).")
@click.option("--corpus-sample", type=int, default=0, show_default=True,
              help="Evaluate on a seeded subsample of each corpus of this many documents (0 = the whole corpus).")
@click.option("--max-queries", type=int, default=None, help="A seeded sample of this many queries per set.")
@click.option("--ner-limit", type=int, default=None, help="Score the tagger on the first N BC5CDR dev documents.")
def gate_cmd(settings: Settings, kinds: tuple[str, ...], corpus_sample: int, max_queries: int | None,
             ner_limit: int | None) -> None:
    """Measure every backend x precision against torch fp32 (quality and speed) and record it for `auto`."""
    from searchd.eval.gate import run_gate

    run_gate(settings, kinds or ("embedder", "tagger"), corpus_sample, max_queries, ner_limit, click.echo)


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

    dataset = _data_path(settings, dataset)
    report, runs = evaluate(dataset, split, settings, list(systems or settings.eval.systems), fold, max_queries)
    name = f"{report['dataset']['name']}-{split}" + (f"-{fold}" if fold else "")
    out = out or settings.eval.output_dir / name
    per_query = report.pop("per_query")
    paths = write_report(report, per_query, {n: r.rankings for n, r in runs.items()}, out)
    click.echo(markdown(report))
    click.echo("written: " + ", ".join(str(p) for p in paths.values()))


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
@click.argument("kind", type=click.Choice(["pubtator", "medquad"]))
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="Name of the set (its folder under eval.evalsets_dir).")
@click.option("--split", default="dev", show_default=True, help="Write qrels/<split>.tsv.")
@click.option("--fold", type=click.Choice(["dev", "train", "all"]), default="dev", show_default=True,
              help="medquad: which seeded fold of source pages, the embedder's held-out draw "
                   "(train_embedder.dev_fraction, train_embedder.seed).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to write (default: eval.evalsets_dir/<name>).")
def make_evalset_cmd(settings: Settings, kind: str, path: Path, name: str, split: str, fold: str,
                     out: Path | None) -> None:
    """Write a BEIR eval set from paired data: PubTator title->abstract, MedQuAD question->answer."""
    from searchd.eval import evalsets

    path = _data_path(settings, path)
    if kind == "pubtator":
        data = evalsets.from_pubtator(path, name, settings.train_ner.label_map)
    else:
        data = evalsets.from_medquad(path, name, fold, settings.train_embedder.dev_fraction,
                                      settings.train_embedder.seed)
    out = out or settings.eval.evalsets_dir / name
    counts = evalsets.write_beir(data, out, split)
    click.echo(f"{out}: {counts['documents']} documents, {counts['queries']} queries, "
               f"{counts['judgments']} judgments in qrels/{split}.tsv")


def _data_path(settings: Settings, path: Path) -> Path:
    """A path as given, or relative to the data directory when it does not exist as given."""
    if path.exists() or path.is_absolute():
        return path
    return settings.data_path(path)


if __name__ == "__main__":
    main()
