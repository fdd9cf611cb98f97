"""medlex web front end: a Flask app over searchd (in-process or over HTTP)."""
from __future__ import annotations

from flask import Flask, render_template
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

from indexer.settings import Settings, load_settings
from web.client import SearchClient, make_client
from web.highlight import label_slot, neutralise_bidi

# Everything is served from this origin; no inline script or style, no framing, forms post only here.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


class AsciiIntConverter(IntegerConverter):
    """`<int:...>` for ASCII digits only: werkzeug's `\\d+` also matches '²', which int() then refuses (a 500)."""

    regex = r"[0-9]{1,18}"


def create_app(settings: Settings | None = None, search: SearchClient | None = None) -> Flask:
    """Build the app; `search` defaults to the client web.searchd_url selects (in-process when empty)."""
    settings = settings or load_settings()
    app = Flask(__name__)
    app.config.update(DEBUG=False, TESTING=False, JSON_SORT_KEYS=False,
                      # the longest legitimate URL is a long query plus a handful of filters
                      MAX_CONTENT_LENGTH=64 * 1024)
    app.extensions["medlex.settings"] = settings
    app.extensions["medlex.search"] = search if search is not None else make_client(settings)

    from web.eval_views import bp as evaluation
    from web.views import bp

    # route exactly as written: slash-merging and trailing-slash redirects are built from the Host header
    app.url_map.strict_slashes = app.url_map.merge_slashes = False
    app.url_map.converters["int"] = AsciiIntConverter
    app.jinja_env.finalize = neutralise_bidi
    app.register_blueprint(bp)
    app.register_blueprint(evaluation)
    app.jinja_env.globals["legend_labels"] = [(label, label_slot(label)) for label in settings.search.facet_labels]

    @app.after_request
    def secure(response):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return render_template("error.html", status=exc.code, title=exc.name, message=exc.description,
                               q="", args={}, modes=()), exc.code

    @app.errorhandler(Exception)
    def server_error(exc: Exception):
        app.logger.exception("unhandled error")
        return render_template("error.html", status=500, title="Something went wrong",
                               message="The server hit an unexpected error; it has been logged.",
                               q="", args={}, modes=()), 500

    return app
