"""Line and scatter panels: runs grouped into curves of means with 95% t-intervals, drawn by
`sslsteal.dashboards.svg`, each followed by a collapsed table of the numbers behind it."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from sslsteal.core.stats import Estimate
from sslsteal.dashboards.aggregate import confounders, estimate, group
from sslsteal.dashboards.fields import as_number, default_format, value
from sslsteal.dashboards.paper import lookup
from sslsteal.dashboards.render import Context, attrs, estimate_cell, estimate_text, note, table
from sslsteal.dashboards.spec import LinePanel, ScatterPanel, Series
from sslsteal.dashboards.svg import Axes, Curve, Point, plot
from sslsteal.orchestration.records import RunRecord, StudyRecord


def _curve_name(series: str | None, spec: Series, several: bool, context: Context) -> str:
    """The series value, the y field's label when there is no series, or both when the panel plots several fields."""
    y = spec.label or context.label(spec.field)
    if series is None:
        return y
    return f"{series} · {y}" if several else series


def series_fields(panel: LinePanel, split: bool) -> tuple[list[str], list[str]]:
    """(fields a line's series split on, fields pooled within one series: x, and the series field when not `split`)."""
    fields = [panel.series] if split and panel.series else []
    return fields, [panel.x] if fields else [panel.x, *([panel.series] if panel.series else [])]


def line_curves(panel: LinePanel, records: Sequence[RunRecord], context: Context) -> list[Curve]:
    """One curve per y field and series value: at each x the mean over the runs there, with its interval, and the
    paper's values for the same runs."""
    curves = []
    for spec in panel.y:
        fmt = default_format(spec.field)
        fields, within = series_fields(panel, spec.split)
        for by_series in group(records, fields, within=within):
            series = ", ".join(by_series.values.values()) or None
            points, paper = [], []
            for at_x in group(by_series.records, [panel.x]):
                x = as_number(value(at_x.records[0], panel.x))
                est = estimate(at_x.records, spec.field, context.confidence)
                if x is None or est is None:
                    continue
                tip = f"{series or context.label(spec.field)}, {context.label(panel.x)} = {x:g}: {estimate_text(est, fmt)} (n = {est.n})"
                points.append(Point(x, est.mean, est.n, est.lo, est.hi, tip=tip))
                paper += [Point(x, p.value, tip=f"{p.cite()}: {format(p.value, fmt)}") for p in lookup(context.paper, at_x.records, spec.field)]
            if points:
                curves.append(Curve(_curve_name(series, spec, len(panel.y) > 1, context), points, paper))
    return curves


def values_table(curves: Sequence[Curve], x_field: str, y_field: str, context: Context) -> str:
    """The numbers behind a plot (series, x, mean [interval], paper), in a collapsed table."""
    fmt = default_format(y_field)
    rows = []
    for c in curves:
        for p in sorted(c.points, key=lambda p: p.x):
            paper = "; ".join(format(q.y, fmt) for q in c.paper if q.x == p.x) or "—"
            cell = estimate_cell(y_field, Estimate(p.n, p.y, p.y_lo, p.y_hi), fmt)
            row = f"<td>{escape(c.name)}</td><td class='num'>{p.x:g}</td>{cell}<td class='num'>{paper}</td>"
            rows.append(f"<tr{attrs({'data-series': c.name, 'data-x': repr(p.x)})}>{row}</tr>")
    header = ["series", context.label(x_field), context.label(y_field), "paper"]
    return f"<details><summary>values</summary>{table(header, rows, {'class': 'data plot-values'})}</details>"


def line_panel(panel: LinePanel, records: Sequence[RunRecord], context: Context) -> str:
    curves = line_curves(panel, records, context)
    fields = ", ".join(s.field for s in panel.y)
    if not curves:
        return note(f"no values of {fields} against {panel.x} in these runs", "empty")
    y_label = panel.y_label or ", ".join(s.label or context.label(s.field) for s in panel.y)
    split, within = series_fields(panel, any(s.split for s in panel.y))
    legend = ", ".join(map(context.label, [*split, *confounders(records, [*split, *within])]))  # what the series names are made of
    hlines = [(h.y, h.label) for h in panel.hlines]
    axes = Axes(panel.x_label or context.label(panel.x), y_label, panel.log_x, panel.log_y, hlines, legend_title=legend)
    return plot(curves, axes, panel.title) + values_table(curves, panel.x, panel.y[0].field, context)


def scatter_panel(panel: ScatterPanel, records: Sequence[RunRecord], context: Context) -> str:
    """One point per group of the `points`, `series` and `label` fields at (mean x, mean y), with interval bars on
    both axes; the paper's point where one of its rows gives both x and y for the same runs."""
    fields = list(dict.fromkeys(f for f in [*panel.points, panel.series, panel.label] if f))
    fx, fy = default_format(panel.x), default_format(panel.y)
    x_label, y_label = panel.x_label or context.label(panel.x), panel.y_label or context.label(panel.y)
    curves: dict[str, Curve] = {}
    for g in group(records, fields):
        x = estimate(g.records, panel.x, context.confidence)
        y = estimate(g.records, panel.y, context.confidence)
        if x is None or y is None:
            continue
        text = g.values[panel.label] if panel.label else ""
        where = ", ".join(f"{context.label(k)} = {v}" for k, v in g.values.items())
        tip = f"{where}: {x_label} {estimate_text(x, fx)}, {y_label} {estimate_text(y, fy)} (n = {y.n})"
        name = g.values[panel.series] if panel.series else y_label
        curve = curves.setdefault(name, Curve(name, []))
        curve.points.append(Point(x.mean, y.mean, y.n, y.lo, y.hi, x.lo, x.hi, text, tip))
        px, py = lookup(context.paper, g.records, panel.x), lookup(context.paper, g.records, panel.y)
        same_row = [(a, b) for a in px for b in py if (a.table, a.row) == (b.table, b.row)]
        curve.paper.extend(Point(a.value, b.value, tip=f"{a.cite()}: {x_label} {a.value:g}, {y_label} {b.value:g}") for a, b in same_row)
    if not curves:
        return note(f"no runs with both {panel.x} and {panel.y}", "empty")
    legend = context.label(panel.series) if panel.series else ""
    axes = Axes(x_label, y_label, diagonal=panel.diagonal, connect=False, legend_title=legend)
    return plot(list(curves.values()), axes, panel.title)


def studies_plot(studies: Sequence[StudyRecord]) -> str:
    """The best objective of every loss against the budget (each a single best value, not a mean: no interval)."""
    losses = sorted({loss for s in studies for loss in s["best_per_loss"]})
    curves = []
    for loss in losses:
        at = [(s["budget"], s["best_per_loss"][loss]) for s in studies if s["budget"] is not None and loss in s["best_per_loss"]]
        curves.append(Curve(loss, [Point(float(b), v, n=0, tip=f"{loss}, {b} queries: best {v:.4g}") for b, v in at]))
    curves = [c for c in curves if c.points]
    if not curves:
        return ""
    objective = studies[0]["objective"]
    return plot(curves, Axes("queries (budget)", f"best {objective}", log_x=True, legend_title="loss"), f"best {objective} per loss")
