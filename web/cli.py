"""`web` command: serve the front end on waitress (a production WSGI server, never Flask's debug server)."""
from __future__ import annotations

import dataclasses

import click

from indexer.cli import MedlexGroup, config_options
from indexer.settings import Settings


@click.group(cls=MedlexGroup)
def main() -> None:
    """medlex web front end."""


@main.command("serve")
@config_options
@click.option("--host", default=None, help="Bind address (default: web.host).")
@click.option("--port", type=int, default=None, help="Port (default: web.port; 0 picks a free one).")
@click.option("--searchd-url", default=None, help="Use searchd over HTTP at this URL instead of in-process.")
def serve_cmd(settings: Settings, host: str | None, port: int | None, searchd_url: str | None) -> None:
    """Serve the search front end until interrupted."""
    from waitress import create_server

    from web import create_app
    from web.client import InProcessClient, SearchUnavailable

    web = dataclasses.replace(settings.web, **{k: v for k, v in
                                               (("host", host), ("port", port), ("searchd_url", searchd_url))
                                               if v is not None})
    settings = settings.replace(web=web)
    app = create_app(settings)
    client = app.extensions["medlex.search"]
    if isinstance(client, InProcessClient):
        try:  # load now so the first visitor does not wait for the model and index
            client.service()
            click.echo(f"index: {settings.index.dir}")
        except SearchUnavailable as exc:
            click.echo(f"warning: {exc}; the page will say so until an index exists", err=True)
    else:
        click.echo(f"searchd: {web.searchd_url}")
    server = create_server(app, host=web.host, port=web.port, threads=web.threads, ident="medlex")
    click.echo(f"medlex web serving on http://{web.host}:{server.effective_port}/  (Ctrl-C to stop)")
    try:
        server.run()
    finally:
        client.close()  # the app made this client, so its index and store are ours to close


if __name__ == "__main__":
    main()
