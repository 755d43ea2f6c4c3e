"""The paper's value for a cell of ours: a row of a transcribed paper table applies to a group of runs when every
run of the group has every value the row's `match` names; its `values` then give the paper's number per field."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sslsteal.dashboards.fields import same_value, value
from sslsteal.dashboards.spec import PaperTable
from sslsteal.orchestration.records import RunRecord


@dataclass(frozen=True)
class PaperValue:
    """One number from the paper, with the table (and its row) it came from."""

    table: int
    row: str
    value: float

    def cite(self) -> str:
        return f"paper Table {self.table}, {self.row}"


def lookup(tables: Sequence[PaperTable], records: Sequence[RunRecord], field: str) -> list[PaperValue]:
    """The paper's numbers for `field` on the group `records` (empty when no row matches, or the group is empty)."""
    if not records:
        return []
    return [
        PaperValue(t.table, row.label, row.values[field])
        for t in tables
        for row in t.rows
        if field in row.values and all(same_value(value(r, name), wanted) for r in records for name, wanted in row.match.items())
    ]
