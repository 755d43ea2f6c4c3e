"""The paper's value for a cell of ours: a row of a transcribed paper table applies to a group of runs when every
run of the group has every value the row's `match` names (or one of a list of allowed values); its `values` then give
the paper's number per field. A row without `match` (the table's victim) applies where the table has a row for the
same runs, so the paper's victim sits beside our victim only in the cells the paper measured."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sslsteal.dashboards.aggregate import matches
from sslsteal.dashboards.spec import PaperRow, PaperTable
from sslsteal.orchestration.records import RunRecord


@dataclass(frozen=True)
class PaperValue:
    """One number from the paper, with the table (and its row) it came from."""

    table: int
    row: str
    value: float

    def cite(self) -> str:
        return f"paper Table {self.table}, {self.row}"


def _describes(row: PaperRow, records: Sequence[RunRecord]) -> bool:
    return all(matches(r, row.match) for r in records)


def _covers(table: PaperTable, records: Sequence[RunRecord]) -> bool:
    """Whether one of the table's matched rows describes `records` (a table of unmatched rows only covers every run)."""
    scoped = [row for row in table.rows if row.match]
    return not scoped or any(_describes(row, records) for row in scoped)


def lookup(tables: Sequence[PaperTable], records: Sequence[RunRecord], field: str) -> list[PaperValue]:
    """The paper's numbers for `field` on the group `records` (empty when no row applies, or the group is empty)."""
    if not records:
        return []
    return [
        PaperValue(t.table, row.label, row.values[field])
        for t in tables
        for row in t.rows
        if field in row.values and (_describes(row, records) if row.match else _covers(t, records))
    ]
