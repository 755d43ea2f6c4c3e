"""The static site: `index.html` and one page per dashboard, each with a section per experiment (its progress, then
every panel with the runs it used), the paper tables it cites, and when and from where it was built.

Pages are self-contained HTML with inline CSS and SVG: no scripts, no network, readable from file://.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from html import escape
from pathlib import Path

from sslsteal.dashboards.aggregate import Progress, lenders, members, progress, section_runs, select
from sslsteal.dashboards.findings import FINDINGS_HEADER, findings_rows, measure
from sslsteal.dashboards.plots import line_panel, scatter_panel, studies_plot
from sslsteal.dashboards.render import Context, importances_table, note, studies_table, table, table_panel
from sslsteal.dashboards.spec import Dashboard, Definitions, FindingsPanel, LinePanel, PaperTable, ScatterPanel, StudiesPanel, TablePanel
from sslsteal.orchestration.records import RunRecord, StudyRecord

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1100px; padding: 0 16px; color: #222; }
h1 { font-size: 22px; margin: 4px 0; } h2 { font-size: 18px; margin-top: 28px; border-bottom: 1px solid #ddd; }
h3 { font-size: 15px; margin: 18px 0 4px; } h4 { font-size: 13px; margin: 12px 0 4px; }
table { border-collapse: collapse; margin: 6px 0 10px; } th, td { border: 1px solid #ddd; padding: 3px 8px; vertical-align: top; }
th { background: #f4f4f4; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.paper { color: #8a4b08; font-size: 12px; } .note, .selection, .built { color: #666; font-size: 12px; margin: 2px 0; }
.empty, .progress { font-weight: 600; } .progress.partial, .empty { color: #a15c00; } .scroll { overflow-x: auto; }
svg.plot { max-width: 100%; height: auto; font-size: 11px; } svg .tick { fill: #444; } svg .axis { fill: #222; font-size: 12px; }
details { margin: 4px 0 12px; } summary { cursor: pointer; color: #555; }
td.verdict { font-weight: 600; white-space: nowrap; } .verdict.held { color: #1a7f37; } .verdict.not-held { color: #b42318; }
.verdict.inconclusive, .verdict.not-measured { color: #8a6d00; }
"""


def page(title: str, body: str, built: str) -> str:
    """A complete HTML document (the empty icon keeps browsers from asking for /favicon.ico)."""
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f'<link rel="icon" href="data:,"><style>{CSS}</style></head>\n<body>\n{body}\n'
        f'<p class="built">built {escape(built)}</p>\n</body></html>\n'
    )


def _conditions(conditions: Mapping[str, object], context: Context) -> list[str]:
    """`loss = mse`, `query data = cifar10:train or cifar10:test[:9000]`: filters or a paper row's match, labelled."""
    return [f"{context.label(k)} = {' or '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in conditions.items()]


def _selection_text(n: int, kind: str, statuses: Sequence[str], filters: Mapping[str, object], context: Context) -> str:
    runs = "runs of any kind" if kind == "any" else f"{kind} runs"
    where = "".join(f"; {c}" for c in _conditions(filters, context))
    return f"{n} {'run' if n == 1 else 'runs'} used: {runs}, status {' or '.join(statuses)}{where}"


def _panel(
    panel: TablePanel | LinePanel | ScatterPanel | StudiesPanel,
    dashboard: Dashboard,
    experiment: str,
    records: Sequence[RunRecord],
    studies: Sequence[StudyRecord] | None,
    context: Context,
) -> str:
    """One panel of one experiment section (`records`: the section's runs): its title, the runs it used, and its
    table, plot or studies."""
    if isinstance(panel, StudiesPanel):
        found = sorted((s for s in studies or [] if s["experiment"] in members(experiment)), key=lambda s: (s["budget"] is None, s["budget"] or 0, s["name"]))
        body = (
            studies_table(found) + studies_plot(found) + importances_table(found)
            if found
            else note("no Optuna studies recorded for this experiment yet", "empty")
        )
        return f'<div class="panel"><h3>{escape(panel.title)}</h3>{body}</div>'
    kind, statuses, filters = dashboard.selection(panel)
    used = select(records, kind, statuses, filters)
    text = _selection_text(len(used), kind, statuses, filters, context)
    head = f'<div class="panel" data-kind="{panel.kind}"><h3>{escape(panel.title)}</h3><p class="selection">{escape(text)}</p>'
    if not used:
        return head + note("no runs match yet", "empty") + "</div>"
    if isinstance(panel, TablePanel):
        selection = {"experiment": experiment, "kind": kind, "status": statuses, "filters": filters}
        return head + table_panel(panel, used, context, selection) + "</div>"
    return head + (line_panel(panel, used, context) if isinstance(panel, LinePanel) else scatter_panel(panel, used, context)) + "</div>"


def _findings(panel: FindingsPanel, records: Sequence[RunRecord]) -> str:
    """The findings panel: each finding's sides, difference with its interval and verdict (from every experiment)."""
    outcomes = [measure(f, records) for f in panel.findings]
    rows = []
    for o, cells in zip(outcomes, findings_rows(outcomes), strict=True):
        shown = "".join(f"<td>{escape(c)}</td>" for c in cells[:-1])
        verdict = f'<td class="verdict {o.verdict.replace(" ", "-")}" data-verdict="{escape(o.verdict)}">{escape(o.verdict)}</td>'
        rows.append(f'<tr data-finding="{escape(o.finding.id)}">{shown}{verdict}</tr>')
    return f'<div class="panel" data-kind="findings"><h2>{escape(panel.title)}</h2>{table(FINDINGS_HEADER, rows, {"class": "data findings"})}</div>'


def _borrowed_note(lent: Counter[str]) -> str:
    """Where a section's borrowed trials come from: how many of each experiment (same configuration and seed)."""
    where = ", ".join(f"{n} from {name}" for name, n in lent.items())
    return note(f"plus {lent.total()} finished trials borrowed with the same configuration and seed: {where}", "borrowed")


def _progress_html(p: Progress) -> str:
    partial = " partial" if p.total and p.finished < p.total else ""
    return f'<p class="progress{partial}">{escape(p.text())}</p>'


def _paper_section(keys: Sequence[str], context: Context) -> str:
    """The cited paper tables in full, with their source (table, page, location) and setup."""
    if not context.paper:
        return ""
    out = [
        "<h2>Paper values</h2>",
        note("Dziedzic et al., ICML 2022, transcribed in dashboards/paper_values.yaml; shown beside ours where a row matches the same runs"),
    ]
    for key, t in zip(keys, context.paper, strict=True):
        fields = list(dict.fromkeys(f for row in t.rows for f in row.values))
        rows = []
        for row in t.rows:
            match = ", ".join(_conditions(row.match, context)) or "every run"
            cells = [f"<td>{escape(row.label)}</td><td>{escape(match)}</td>"] + [
                f'<td class="num">{row.values[f]:g}</td>' if f in row.values else "<td></td>" for f in fields
            ]
            rows.append(f"<tr>{''.join(cells)}</tr>")
        page_text = f"page {t.page}" if t.page is not None else "page not given by the source text"
        out.append(f"<details><summary>Table {t.table} ({escape(key)}): {escape(t.caption)}</summary>")
        out.append(note(f"{t.location}; {page_text}. Setup: {t.setup}"))
        out.append(table(["row", "matches", *map(context.label, fields)], rows, {"class": "paper-table"}) + "</details>")
    return "\n".join(out)


def dashboard_page(
    slug: str, dashboard: Dashboard, paper: dict[str, PaperTable], records: Sequence[RunRecord], studies: Sequence[StudyRecord] | None, built: str
) -> str:
    """One dashboard: a section per experiment with its progress and panels, then the paper tables it cites."""
    context = Context.of(dashboard, paper)
    body = ['<p><a href="index.html">all dashboards</a></p>', f"<h1>{escape(dashboard.title)}</h1>"]
    body += [note(dashboard.description, "description")] if dashboard.description else []
    body += [_findings(p, records) for p in dashboard.panels if isinstance(p, FindingsPanel)]
    for experiment in dashboard.experiments:
        runs = section_runs(records, experiment, dashboard.borrowed(experiment))
        own = [r for r in runs if r.experiment in members(experiment)]
        lent = lenders(runs, experiment)
        body.append(f'<section class="experiment" data-experiment="{escape(experiment)}"><h2>experiment {escape(experiment)}</h2>')
        if not runs:
            body.append('<p class="progress partial">no runs yet</p></section>')
            continue
        body.append(_progress_html(progress(own, experiment)))
        kinds = sorted({r.kind or "other" for r in own})
        body.append(note(f"{len(own)} runs in the experiment: " + ", ".join(f"{sum((r.kind or 'other') == k for r in own)} {k}" for k in kinds)))
        body += [_borrowed_note(lent)] if lent else []
        body += [_panel(panel, dashboard, experiment, runs, studies, context) for panel in dashboard.panels if not isinstance(panel, FindingsPanel)]
        body.append("</section>")
    body.append(_paper_section(dashboard.paper, context))
    return page(f"{dashboard.title} ({slug})", "\n".join(body), built)


def index_page(definitions: Definitions, records: Sequence[RunRecord], built: str) -> str:
    """Every dashboard with its experiments' progress and run counts, and the paper tables it cites."""
    rows = []
    for slug, d in definitions.dashboards.items():
        lines = []
        for experiment in d.experiments:
            count = sum(r.experiment in members(experiment) for r in records)
            state = f"{progress(records, experiment).text()} ({count} runs)" if count else "no runs yet"
            lines.append(f"{escape(experiment)}: {escape(state)}")
        cited = ", ".join(f"Table {definitions.paper.tables[k].table}" for k in d.paper) or "—"
        link = f'<a href="{escape(slug)}.html">{escape(d.title)}</a>'
        rows.append(f"<tr><td>{link}</td><td>{escape(d.description)}</td><td>{'<br>'.join(lines)}</td><td>{escape(cited)}</td></tr>")
    body = "<h1>sslsteal dashboards</h1>" + table(["dashboard", "what", "experiments", "paper"], rows, {"class": "index"})
    return page("sslsteal dashboards", body, built)


def build_site(
    definitions: Definitions,
    records: Sequence[RunRecord],
    out_dir: str | Path,
    studies: Sequence[StudyRecord] | None = None,
    *,
    source: str = "",
) -> list[Path]:
    """Write `index.html` and `<dashboard>.html` for every definition into `out_dir`; returns the paths, index first.
    `source` (e.g. the tracking URI) is printed with the build time on every page."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    built = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") + (f" from {source}" if source else "")
    paths = [out / "index.html"]
    paths[0].write_text(index_page(definitions, records, built))
    for slug, dashboard in definitions.dashboards.items():
        path = out / f"{slug}.html"
        path.write_text(dashboard_page(slug, dashboard, definitions.paper.tables, records, studies, built))
        paths.append(path)
    return paths
