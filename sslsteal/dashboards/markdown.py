"""Generated blocks of a Markdown file (docs/RESULTS.md): tables, findings and costs written from the tracking
store between markers, so the prose around them stays hand-written and a test can regenerate the file and compare.

A block is
    <!-- sslsteal:table dashboard=losses panel=0 experiment=cpu-table2-losses -->
    ... (generated) ...
    <!-- sslsteal:end -->
with `sslsteal:findings dashboard=findings panel=0` (a findings panel), `sslsteal:studies experiment=NAME` (the
experiment's Optuna studies: best loss per budget) or `sslsteal:cost experiments=a,b` (wall time and CPU-hours per
experiment) instead of a table. Nothing in a block depends on when it was built.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sslsteal.dashboards.aggregate import lenders, members, section_runs, select
from sslsteal.dashboards.fields import as_number, value
from sslsteal.dashboards.findings import FINDINGS_HEADER, findings_rows, measure
from sslsteal.dashboards.render import Context, TableData, studies_rows, table_data
from sslsteal.dashboards.spec import Dashboard, Definitions, FindingsPanel, TablePanel
from sslsteal.orchestration.records import GIT_COMMIT, RunRecord, StudyRecord

BLOCK = re.compile(r"(?P<open><!-- sslsteal:(?P<kind>[a-z]+)(?P<args>(?: [a-z_]+=[^ >]+)*) -->\n)(?P<body>.*?)(?P<close><!-- sslsteal:end -->)", re.S)
KINDS = ("table", "findings", "studies", "cost")


class BlockError(ValueError):
    """A marker that names an unknown kind, dashboard or panel, or lacks an argument."""


@dataclass(frozen=True)
class Block:
    kind: str
    args: dict[str, str]

    def arg(self, key: str) -> str:
        if key not in self.args:
            raise BlockError(f"sslsteal:{self.kind} block: missing {key}=...")
        return self.args[key]


def blocks(text: str) -> list[Block]:
    """Every generated block of `text`, in order."""
    out = []
    for m in BLOCK.finditer(text):
        if m["kind"] not in KINDS:
            raise BlockError(f"unknown block sslsteal:{m['kind']}; known: {', '.join(KINDS)}")
        out.append(Block(m["kind"], dict(pair.split("=", 1) for pair in m["args"].split())))
    return out


def _panel(definitions: Definitions, block: Block) -> tuple[Dashboard, object]:
    slug = block.arg("dashboard")
    if slug not in definitions.dashboards:
        raise BlockError(f"sslsteal:{block.kind} block: unknown dashboard '{slug}'; known: {', '.join(definitions.dashboards)}")
    dashboard = definitions.dashboards[slug]
    index = int(block.arg("panel"))
    if not 0 <= index < len(dashboard.panels):
        raise BlockError(f"sslsteal:{block.kind} block: dashboard '{slug}' has no panel {index}")
    return dashboard, dashboard.panels[index]


def experiments(definitions: Definitions, text: str) -> list[str]:
    """The experiments whose runs the blocks of `text` read."""
    names: list[str] = []
    for block in blocks(text):
        if block.kind == "cost":
            names += block.arg("experiments").split(",")
            continue
        if block.kind == "studies":
            names += members(block.arg("experiment"))
            continue
        dashboard, panel = _panel(definitions, block)
        if isinstance(panel, FindingsPanel):
            names += [name for f in panel.findings for c in (f.a, f.b) if c is not None for name in members(c.experiment)]
        else:
            names += dashboard.sources(block.arg("experiment"))
    return list(dict.fromkeys(names))


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A pipe table (pipes inside cells escaped)."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *(line(r) for r in rows)]) + "\n"


def table_markdown(data: TableData) -> str:
    """A grouped table: row values, runs, seeds, then each cell's mean [interval] with the paper's value after it."""
    rows = []
    for row in data.rows:
        cells = [*row.values.values(), str(row.runs), *([", ".join(row.seeds)] if data.with_seeds else [])]
        for cell in row.cells:
            paper = "; ".join(f"paper {format(p.value, cell.fmt)} (T{p.table})" for p in cell.paper)
            cells.append(cell.text() + (f" ({paper})" if paper else ""))
        rows.append(cells)
    return markdown_table(data.header, rows) + (f"\nNo run logged {', '.join(data.absent)}.\n" if data.absent else "")


def _table_block(definitions: Definitions, block: Block, records: Sequence[RunRecord]) -> str:
    dashboard, panel = _panel(definitions, block)
    if not isinstance(panel, TablePanel):
        raise BlockError(f"sslsteal:table block: panel {block.arg('panel')} of '{block.arg('dashboard')}' is not a table")
    experiment = block.arg("experiment")
    used = select(section_runs(records, experiment, dashboard.borrowed(experiment)), *dashboard.selection(panel))
    if not used:
        return f"No finished runs of {experiment} yet.\n"
    context = Context.of(dashboard, definitions.paper.tables)
    lent = lenders(used, experiment)
    where = f"\n{lent.total()} of these {len(used)} runs are borrowed from {', '.join(sorted(lent))} (same configuration and seed).\n" if lent else ""
    return table_markdown(table_data(panel, used, context)) + where


def _findings_block(definitions: Definitions, block: Block, records: Sequence[RunRecord]) -> str:
    _, panel = _panel(definitions, block)
    if not isinstance(panel, FindingsPanel):
        raise BlockError(f"sslsteal:findings block: panel {block.arg('panel')} of '{block.arg('dashboard')}' is not a findings panel")
    rows = findings_rows([measure(f, records) for f in panel.findings])
    return markdown_table(FINDINGS_HEADER, [[*row[:-1], f"**{row[-1]}**"] for row in rows])


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f}"


def cost_rows(records: Sequence[RunRecord], names: Sequence[str]) -> list[list[str]]:
    """Per experiment: finished and failed trials, the commits that made them, its wall time (`busy_seconds`) and the
    CPU-hours of its trials (each trial's wall time times the CPUs it reserved, `sslsteal.trial_cpus`)."""
    rows = []
    for name in names:
        trials = [r for r in records if r.experiment == name and r.kind == "trial"]
        finished = sum(r.status == "FINISHED" for r in trials)
        failed = sum(r.status == "FAILED" for r in trials)
        commits = sorted({r.tags[GIT_COMMIT][:7] for r in trials if GIT_COMMIT in r.tags}) or ["—"]
        cpu = sum(_duration(r) * float(r.tags.get("sslsteal.trial_cpus", "1")) for r in trials)
        rows.append([name, str(finished), str(failed), ", ".join(commits), _hours(busy_seconds(trials)), _hours(cpu)])
    return rows


def busy_seconds(trials: Sequence[RunRecord]) -> float:
    """Seconds during which at least one of the trials ran: an experiment's wall time without the hours between
    sessions that a resumed sweep or study spans (its parent run stays open across them) and without start-up."""
    spans = sorted((r.start_time, r.end_time) for r in trials if r.start_time is not None and r.end_time is not None)
    total, reach = 0.0, None
    for start, end in spans:
        if reach is None or start > reach:
            total, reach = total + (end - start).total_seconds(), end
        elif end > reach:
            total, reach = total + (end - reach).total_seconds(), end
    return total


def _duration(record: RunRecord) -> float:
    """The run's wall seconds (`run.duration_s`), 0 while it has not ended."""
    return as_number(value(record, "run.duration_s")) or 0.0


COST_HEADER = ["experiment", "trials finished", "failed", "commit", "wall hours", "CPU-hours"]


def _studies_block(block: Block, studies: Sequence[StudyRecord]) -> str:
    found = [s for s in studies if s["experiment"] in members(block.arg("experiment"))]
    if not found:
        return f"No Optuna studies of {block.arg('experiment')} yet.\n"
    found.sort(key=lambda s: (s["budget"] is None, s["budget"] or 0, s["name"]))
    header, rows = studies_rows(found)
    return markdown_table(header, rows)


def render_block(definitions: Definitions, block: Block, records: Sequence[RunRecord], studies: Sequence[StudyRecord] = ()) -> str:
    """The generated Markdown of one block."""
    if block.kind == "table":
        return _table_block(definitions, block, records)
    if block.kind == "findings":
        return _findings_block(definitions, block, records)
    if block.kind == "studies":
        return _studies_block(block, studies)
    return markdown_table(COST_HEADER, cost_rows(records, block.arg("experiments").split(",")))


def regenerate(text: str, definitions: Definitions, records: Sequence[RunRecord], studies: Sequence[StudyRecord] = ()) -> str:
    """`text` with every generated block rewritten from `records` (and the Optuna `studies` of their study runs);
    the markers and everything outside them stay."""
    parsed = iter(blocks(text))

    def one(m: re.Match[str]) -> str:
        return m["open"] + render_block(definitions, next(parsed), records, studies) + m["close"]

    return BLOCK.sub(one, text)
