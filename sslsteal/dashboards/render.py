"""Panels as HTML: tables of means with their 95% t-intervals (the paper's value beside ours where it has the same
cell), and the Optuna studies' tables. Plots come from `sslsteal.dashboards.plots`.

Cells carry their numbers as data attributes (`data-field`, `data-n`, `data-mean`, `data-lo`, `data-hi`,
`data-paper`), so a page can be checked against the runs by a program as well as read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

from sslsteal.core.stats import Estimate
from sslsteal.dashboards.aggregate import Group, estimate, group, label
from sslsteal.dashboards.fields import default_format, expand, field_label, is_numeric, value
from sslsteal.dashboards.paper import PaperValue, lookup
from sslsteal.dashboards.spec import Dashboard, PaperTable, TablePanel
from sslsteal.orchestration.records import RunRecord, StudyRecord


@dataclass(frozen=True)
class Context:
    """What every panel of a dashboard needs: the paper tables it cites, the interval's confidence level and the
    labels its definition gives fields."""

    paper: list[PaperTable]
    confidence: float
    labels: Mapping[str, str]

    @classmethod
    def of(cls, dashboard: Dashboard, tables: Mapping[str, PaperTable]) -> Context:
        """The context of `dashboard`'s panels: the paper tables it cites (from `tables`), its confidence and labels."""
        return cls([tables[k] for k in dashboard.paper], dashboard.confidence, dashboard.labels)

    def label(self, field: str) -> str:
        """The field as this page names it (`fields.field_label`)."""
        return field_label(field, self.labels)


def attrs(values: Mapping[str, object]) -> str:
    """HTML attributes, escaped; None values left out."""
    return "".join(f' {k}="{escape(str(v))}"' for k, v in values.items() if v is not None)


def estimate_text(est: Estimate | None, fmt: str) -> str:
    """`41.23 [38.10, 44.36]`; just the mean for one run; `—` for none."""
    if est is None:
        return "—"
    if est.lo is None or est.hi is None:
        return format(est.mean, fmt)
    return f"{format(est.mean, fmt)} [{format(est.lo, fmt)}, {format(est.hi, fmt)}]"


def estimate_cell(field: str, est: Estimate | None, fmt: str, paper: Sequence[PaperValue] = ()) -> str:
    """A cell with our mean and interval, and below them the paper's value(s) for the same cell."""
    data: dict[str, object] = {"data-field": field, "data-n": est.n if est else 0}
    if est is not None:
        data |= {"data-mean": repr(est.mean), "data-lo": _repr(est.lo), "data-hi": _repr(est.hi)}
    data["data-paper"] = ";".join(repr(p.value) for p in paper) or None
    cited = "".join(f'<div class="paper" title="{escape(p.cite())}">paper {format(p.value, fmt)} <small>(T{p.table})</small></div>' for p in paper)
    return f'<td class="num"{attrs(data)}>{escape(estimate_text(est, fmt))}{cited}</td>'


def _repr(v: float | None) -> str | None:
    return None if v is None else repr(v)


def table(header: Sequence[str], rows: Sequence[str], table_attrs: Mapping[str, object] | None = None) -> str:
    """An HTML table from header labels and already-rendered `<tr>` rows (scrolling sideways when wide)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    return f'<div class="scroll"><table{attrs(table_attrs or {})}><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def note(text: str, kind: str = "note") -> str:
    return f'<p class="{kind}">{escape(text)}</p>'


@dataclass(frozen=True)
class ColumnPlan:
    field: str
    header: str
    fmt: str


def plan_columns(panel: TablePanel, records: Sequence[RunRecord], context: Context) -> tuple[list[ColumnPlan], list[str]]:
    """Every column with `<dataset>` templates expanded to the datasets the runs logged, headed by its label (a
    column's own label of a template gets the dataset's name); and the fields no run has."""
    out, absent = [], []
    for column in panel.columns:
        names = expand(column.field, list(records))
        if not any(value(r, name) is not None for r in records for name in names):
            absent.append(column.field)
        labels = {**context.labels, column.field: column.label} if column.label else context.labels
        out += [ColumnPlan(name, field_label(name, labels), column.format or default_format(name)) for name in names]
    return out, absent


@dataclass(frozen=True)
class Cell:
    """One aggregated cell: a number column's estimate and the paper's values, or a label column's distinct values."""

    field: str
    fmt: str
    est: Estimate | None = None
    paper: tuple[PaperValue, ...] = ()
    labels: tuple[str, ...] | None = None

    def text(self) -> str:
        """`41.23 [38.10, 44.36]`, or the label column's values joined."""
        return ", ".join(self.labels) if self.labels is not None else estimate_text(self.est, self.fmt)


@dataclass(frozen=True)
class Row:
    """One group of runs: its row fields' shown values, its runs and seeds, and a cell per column."""

    values: dict[str, str]
    runs: int
    seeds: list[str]
    cells: list[Cell]


@dataclass(frozen=True)
class TableData:
    """A grouped table ready for any output (HTML page, Markdown in docs/RESULTS.md)."""

    header: list[str]
    rows: list[Row]
    with_seeds: bool
    absent: list[str]


def table_data(panel: TablePanel, records: Sequence[RunRecord], context: Context) -> TableData:
    """Rows grouped by the row fields (a configuration param that varies among a group's runs adds a row field),
    each column's mean [interval] over the group's runs and the paper's value."""
    columns, absent = plan_columns(panel, records, context)
    with_seeds = any("attack.seed" in r.params for r in records)
    groups = group(records, panel.rows, pooled=panel.aggregate == "pooled")
    row_fields = list(groups[0].values) if groups else list(panel.rows)
    rows = [Row(g.values, len(g.records), g.seeds, [_group_cell(g, c, context) for c in columns]) for g in groups]
    header = [*map(context.label, row_fields), "runs", *(["seeds"] if with_seeds else []), *(c.header for c in columns)]
    return TableData(header, rows, with_seeds, absent)


def table_panel(panel: TablePanel, records: Sequence[RunRecord], context: Context, selection: Mapping[str, object]) -> str:
    """The panel as an HTML table (or, with `aggregate: none`, one row per run). `selection` (which runs were used)
    goes into the table's attributes."""
    table_attrs = {"class": "data", "data-aggregate": panel.aggregate, "data-rows": json.dumps(panel.rows)}
    table_attrs |= {f"data-{k}": json.dumps(v) for k, v in selection.items()}
    if panel.aggregate == "none":
        columns, absent = plan_columns(panel, records, context)
        rows = [_run_row(g, panel.rows, columns) for g in group(records, [*panel.rows, "run.id"], pooled=True)]
        return table([*map(context.label, panel.rows), *(c.header for c in columns)], rows, table_attrs) + _absent_note(absent)
    data = table_data(panel, records, context)
    html_rows = []
    for row in data.rows:
        cells = [f"<td>{escape(v)}</td>" for v in row.values.values()]
        cells.append(f'<td class="num" data-field="runs">{row.runs}</td>')
        cells += [f'<td data-field="seeds">{escape(", ".join(row.seeds))}</td>'] if data.with_seeds else []
        cells += [_html_cell(c) for c in row.cells]
        html_rows.append(f"<tr{attrs({'data-group': json.dumps(row.values)})}>{''.join(cells)}</tr>")
    return table(data.header, html_rows, table_attrs) + _absent_note(data.absent)


def _absent_note(absent: Sequence[str]) -> str:
    return note(f"no run logged {', '.join(absent)}") if absent else ""


def _html_cell(cell: Cell) -> str:
    if cell.labels is not None:
        return f"<td{attrs({'data-field': cell.field})}>{escape(cell.text())}</td>"
    return estimate_cell(cell.field, cell.est, cell.fmt, cell.paper)


def _run_row(g: Group, row_fields: Sequence[str], columns: Sequence[ColumnPlan]) -> str:
    (run,) = g.records
    cells = [f"<td>{escape(g.values[f])}</td>" for f in row_fields]
    for c in columns:
        raw = value(run, c.field)
        shown = format(raw, c.fmt) if isinstance(raw, float) else label(raw)
        cells.append(f"<td{attrs({'data-field': c.field})}>{escape(shown)}</td>")
    return f"<tr{attrs({'data-run': run.run_id})}>{''.join(cells)}</tr>"


def _group_cell(g: Group, column: ColumnPlan, context: Context) -> Cell:
    """A number column: mean [interval] and the paper's value; a label column (params, tags): its distinct values."""
    if is_numeric(column.field):
        est = estimate(g.records, column.field, context.confidence)
        return Cell(column.field, column.fmt, est, tuple(lookup(context.paper, g.records, column.field)))
    return Cell(column.field, column.fmt, labels=tuple(sorted({label(value(r, column.field)) for r in g.records})))


def _best_params(params: Mapping[str, object]) -> str:
    """`lr=0.001, batch_size=256` from Optuna names (`attack/lr`)."""
    return ", ".join(f"{k.rsplit('/', 1)[-1]}={format(v, '.4g') if isinstance(v, float) else v}" for k, v in params.items()) or "—"


def studies_rows(studies: Sequence[StudyRecord]) -> tuple[list[str], list[list[str]]]:
    """Per budget: trial counts, the best loss, value and parameters, and the best value of every loss (header, rows)."""
    losses = sorted({loss for s in studies for loss in s["best_per_loss"]})
    objective = studies[0]["objective"] if studies else "objective"
    rows = []
    for s in studies:
        best = s["best"]
        counts = "/".join(str(s["states"].get(k, 0)) for k in ("COMPLETE", "PRUNED", "FAIL", "RUNNING"))
        cells = [label(None if s["budget"] is None else str(s["budget"])), s["name"], counts]
        cells += [best["loss"] or "—", format(best["value"], ".4g"), _best_params(best["params"])] if best else ["—", "—", "—"]
        cells += [format(s["best_per_loss"][loss], ".4g") if loss in s["best_per_loss"] else "—" for loss in losses]
        rows.append(cells)
    header = ["budget", "study", "trials complete/pruned/failed/running", "best loss", f"best {objective}", "best params"]
    return [*header, *(f"best {loss}" for loss in losses)], rows


def studies_table(studies: Sequence[StudyRecord]) -> str:
    """The studies as an HTML table (and any study that could not be read)."""
    header, rows = studies_rows(studies)
    html_rows = [
        f"<tr{attrs({'data-study': s['name']})}>{''.join(f'<td>{escape(c)}</td>' for c in cells)}</tr>" for s, cells in zip(studies, rows, strict=True)
    ]
    html = table(header, html_rows, {"class": "data studies"})
    return html + "".join(note(f"{s['name']}: {s['error']}") for s in studies if s["error"])


def importances_table(studies: Sequence[StudyRecord]) -> str:
    """Each study's parameter importances, most important first."""
    ranked = [(s, k, v) for s in studies for k, v in sorted(s["importances"].items(), key=lambda kv: -kv[1])]
    rows = [f'<tr><td>{s["budget"]}</td><td>{escape(k)}</td><td class="num">{v:.3f}</td></tr>' for s, k, v in ranked]
    html = "<h4>Parameter importances (Optuna)</h4>"
    if not rows:
        return html + note("none yet: importances need at least two complete trials in which a parameter varied")
    return html + table(["budget", "param", "importance"], rows, {"class": "data importances"})
