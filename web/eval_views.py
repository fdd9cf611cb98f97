"""The evaluation pages: the `searchd eval` reports under eval.output_dir, side by side.

/eval lists the reports; /eval/<report> shows one: its systems' metrics, the paired tests, the
bar chart, and for a chosen pair of systems and metric (a GET form, so it works without
scripts) the queries each wins, each linked to that query's search results.
"""
from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template, request, send_file, url_for

from web.reports import PLOT, load_report, list_reports

bp = Blueprint("evaluation", __name__)

OUTCOMES_SHOWN = 50  # wins and losses listed per side


def _root():
    return current_app.extensions["medlex.settings"].eval.output_dir


@bp.get("/eval")
def index():
    """Every report under eval.output_dir, newest first."""
    return render_template("eval_index.html", reports=list_reports(_root()), root=_root(),
                           q="", args={}, modes=())


@bp.get("/eval/<path:report_id>/metrics.png")
def plot(report_id: str):
    """The report's bar chart."""
    report = load_report(_root(), report_id)
    if report is None or not report.info.has_plot:
        abort(404)
    return send_file(report.info.path / PLOT, mimetype="image/png", max_age=60)


@bp.get("/eval/<path:report_id>")
def report(report_id: str):
    """One report; ?a=&b=&metric= choose the per-query comparison (default: the first tested pair)."""
    rep = load_report(_root(), report_id)
    if rep is None:
        abort(404, description=f"no evaluation report {report_id!r} under eval.output_dir; see /eval for the list")
    systems = rep.info.systems
    comparisons = rep.results.get("comparisons") or []
    first = comparisons[0] if comparisons else {}
    a = request.args.get("a") or first.get("a") or (systems[0] if systems else "")
    b = request.args.get("b") or first.get("b") or (systems[1] if len(systems) > 1 else a)
    metrics = rep.metrics()
    metric = request.args.get("metric") or first.get("metric") or (metrics[0] if metrics else "")
    if a not in systems or b not in systems or (metrics and metric not in metrics):
        abort(400, description=f"choose systems among {', '.join(systems)} and a metric among {', '.join(metrics)}")
    wins, losses, ties = rep.outcomes(a, b, metric)
    modes = {n: s.get("mode", "hybrid") for n, s in rep.results.get("systems", {}).items()}

    def search_link(text: str | None, system: str) -> str | None:
        mode = modes.get(system, "hybrid")
        return url_for("web.search", q=text, mode=mode if mode in ("dense", "keyword", "hybrid") else "hybrid") \
            if text else None

    return render_template("eval_report.html", rep=rep, metrics=metrics, comparisons=comparisons, a=a, b=b,
                           metric=metric, wins=wins[:OUTCOMES_SHOWN], losses=losses[:OUTCOMES_SHOWN],
                           n_wins=len(wins), n_losses=len(losses), ties=ties, search_link=search_link,
                           q="", args={}, modes=())
