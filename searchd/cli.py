"""`searchd` command: serve the JSON API, search from the command line, run the benchmark."""
from __future__ import annotations

import json

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
def serve_cmd(settings: Settings, host: str | None, port: int | None) -> None:
    """Serve /search, /documents/<id>, /documents/<id>/similar, /facets, /health, /stats with waitress."""
    from searchd.server import serve

    serve(settings, host or settings.server.host, port or settings.server.port)


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
    service = SearchService.load(settings)
    result = service.search(service.parse(params))
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        return
    click.echo(f"{result.total} documents match ({result.mode}, {result.timings['total']:.1f} ms)"
               + "".join(f"; {f.label}" for f in result.filters))
    click.echo(f"{'rank':>4}  {'score':>8}  {'id':<16} {'collection':<12} title")
    for hit in result.hits:
        click.echo(f"{hit.rank:>4}  {hit.score:>8.4f}  {hit.external_id[:16]:<16} {hit.collection[:12]:<12} "
                   f"{hit.title[:70]}")
        click.echo(f"{'':>16}{' '.join(hit.snippet.text.split())[:110]}")


@main.command("bench")
@config_options
@click.option("--chunks", default=100_000, show_default=True, help="Synthetic chunks in the benchmark index.")
@click.option("--queries", default=200, show_default=True, help="Timed queries per row.")
@click.option("--http-seconds", default=5.0, show_default=True, help="Seconds per HTTP concurrency level.")
@click.option("--workdir", type=click.Path(), default=None, help="Where to build the index (default: a temp dir).")
def bench_cmd(settings: Settings, chunks: int, queries: int, http_seconds: float, workdir: str | None) -> None:
    """Build a synthetic index and print build speed, latency per mode and filter, HTTP QPS and memory."""
    from searchd.bench import run_bench

    run_bench(settings, chunks, queries, http_seconds, workdir)


if __name__ == "__main__":
    main()
