"""Dashboard definitions (`dashboards/*.yaml`) and the paper's values (`dashboards/paper_values.yaml`) as pydantic
models, validated like sweep files: every problem is one line `file: key.path: message`, and every field a
definition names must be in the vocabulary of `sslsteal.dashboards.fields`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from sslsteal.dashboards.fields import check_field
from sslsteal.specs.base import repeated

PAPER_FILE = "paper_values.yaml"
RunKind = Literal["trial", "sweep", "victim", "optimize", "study", "any"]
Status = Literal["FINISHED", "FAILED", "KILLED", "RUNNING", "SCHEDULED"]
Scalar = str | int | float | bool | None

FieldName = Annotated[str, AfterValidator(check_field)]
TemplateFieldName = Annotated[str, AfterValidator(partial(check_field, template=True))]


class DefinitionError(ValueError):
    """Bad definitions: one line per problem, each `file: key.path: message`."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class Strict(BaseModel):
    """Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


FieldShorthand = BeforeValidator(lambda v: {"field": v} if isinstance(v, str) else v)
"""A bare string stands for `{field: string}` (a column or y series given by its field alone)."""


def _check_format(spec: str | None) -> str | None:
    if spec is not None:
        try:
            format(1.5, spec)
        except ValueError:
            raise ValueError(f"not a Python number format: {spec!r} (e.g. '.2f', '.3g')") from None
    return spec


Format = Annotated[str | None, AfterValidator(_check_format)]


class Column(Strict):
    """A table column: a field (`acc.<dataset>` becomes one column per dataset logged), its header and number format."""

    field: TemplateFieldName
    label: str | None = None
    format: Format = None


class Series(Strict):
    """A plotted y field; `split: false` aggregates it over every series value (one line, e.g. the honest references)."""

    field: FieldName
    label: str | None = None
    split: bool = True


class HLine(Strict):
    """A horizontal reference line (e.g. p = 0.05)."""

    y: float
    label: str = ""


class Selection(Strict):
    """Which runs a panel uses: their `sslsteal.kind`, status and field filters (a value, or a list of allowed ones).
    Unset on a panel: the dashboard's."""

    runs: RunKind | None = None
    status: list[Status] | None = None
    filters: dict[FieldName, Scalar | list[Scalar]] | None = None


class TablePanel(Selection):
    """Rows grouped by `rows` (mean and 95% t-interval over the group's runs, i.e. its seeds; a configuration param
    that varies among them adds a row field), `pooled` over every run with the same `rows` whatever its
    configuration (counts, wall times), or one row per run (`none`)."""

    kind: Literal["table"]
    title: str
    rows: list[FieldName] = []
    columns: list[Annotated[Column, FieldShorthand]] = []
    aggregate: Literal["mean", "pooled", "none"] = "mean"


class LinePanel(Selection):
    """Mean of each y field against x, one line per series value, with 95% t-interval bands."""

    kind: Literal["line"]
    title: str
    x: FieldName
    y: Annotated[list[Annotated[Series, FieldShorthand]], BeforeValidator(lambda v: [v] if isinstance(v, (str, dict)) else v)]
    series: FieldName | None = None
    log_x: bool = False
    log_y: bool = False
    hlines: list[HLine] = []
    x_label: str | None = None
    y_label: str | None = None

    @field_validator("y")
    @classmethod
    def _some_y(cls, v: list[Series]) -> list[Series]:
        if not v:
            raise ValueError("needs at least one field")
        return v


class ScatterPanel(Selection):
    """A trade-off: one point per group of (`points`, `series`, `label`) fields at (mean x, mean y), with 95%
    t-interval bars on both axes; `diagonal` draws y = x."""

    kind: Literal["scatter"]
    title: str
    x: FieldName
    y: FieldName
    points: list[FieldName] = []
    series: FieldName | None = None
    label: FieldName | None = None
    diagonal: bool = False
    x_label: str | None = None
    y_label: str | None = None


class StudiesPanel(Strict):
    """The Optuna studies of the experiment (read from their storage): best loss per budget, the best value of every
    loss, parameter importances and a plot of the per-loss best against the budget."""

    kind: Literal["studies"]
    title: str


class FindingCell(Strict):
    """The runs one side of a finding reads: finished trials of an experiment matching the filters (several
    configurations are averaged per seed, e.g. three losses), and the per-run value `metric` (minus `minus`)."""

    experiment: str
    filters: dict[FieldName, Scalar | list[Scalar]] = {}
    metric: FieldName | None = None
    minus: FieldName | None = None
    label: str


class Finding(Strict):
    """One finding of the paper as a comparison: side `a` against side `b` (or against the constant `value`), paired
    by seed where both sides ran the same seeds. `expect`: greater (a > b), less (a < b) or close (|a - b| < margin).
    Held when the 95% interval of the difference lies on the expected side (inside the margin for close), not held
    when it lies on the other side (outside the margin), inconclusive otherwise."""

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]
    claim: str
    paper: str
    metric: FieldName
    minus: FieldName | None = None
    a: FindingCell
    b: FindingCell | None = None
    value: float | None = None
    expect: Literal["greater", "less", "close"]
    margin: float = Field(0.0, ge=0)
    format: Annotated[str, AfterValidator(_check_format)] = ".2f"

    @model_validator(mode="after")
    def _one_reference(self) -> Finding:
        if (self.b is None) == (self.value is None):
            raise ValueError("give exactly one of b (a second set of runs) and value (a constant)")
        if (self.expect == "close") != (self.margin > 0):
            raise ValueError("margin: a positive margin goes with expect: close, and only with it")
        return self


class FindingsPanel(Strict):
    """The paper's findings, each computed from the runs of the experiments its sides name (rendered once per page,
    not per experiment)."""

    kind: Literal["findings"]
    title: str
    findings: list[Finding] = Field(min_length=1)

    @field_validator("findings")
    @classmethod
    def _unique_ids(cls, v: list[Finding]) -> list[Finding]:
        twice = repeated([f.id for f in v])
        if twice:
            raise ValueError(f"finding ids must be unique; repeated: {', '.join(twice)}")
        return v


Panel = Annotated[TablePanel | LinePanel | ScatterPanel | StudiesPanel | FindingsPanel, Field(discriminator="kind")]
PANEL_KINDS = ("table", "line", "scatter", "studies", "findings")


def members(section: str) -> list[str]:
    """The experiments a page section shows: `a+b` merges experiments `a` and `b` into one section (e.g. budgets
    measured by two sweep files drawn as one curve)."""
    return section.split("+")


class Borrow(Strict):
    """Finished trials of another experiment that stand for cells of a section: runs with the configuration and seed
    the section's own sweep would run (e.g. measured by an earlier sweep of the same commit), read instead of run
    again. A borrowed run is left out where the section has its own finished run of that configuration and seed."""

    experiment: str
    filters: dict[FieldName, Scalar | list[Scalar]] = Field(min_length=1)


class Dashboard(Strict):
    """One page: its experiments (one section each), which runs it uses, its panels and the paper tables beside it."""

    title: str
    description: str = ""
    experiments: list[str] = Field(min_length=1)
    runs: RunKind = "trial"
    status: list[Status] = ["FINISHED"]
    filters: dict[FieldName, Scalar | list[Scalar]] = {}
    confidence: float = Field(0.95, gt=0, lt=1)
    panels: list[Panel] = Field(min_length=1)
    paper: list[str] = []
    labels: dict[TemplateFieldName, str] = {}
    """Field -> how this page names it, over the vocabulary's label (`fields.field_label`)."""
    borrow: dict[str, list[Borrow]] = {}
    """Section -> runs of other experiments that join it (`Borrow`)."""

    @model_validator(mode="after")
    def _borrow_into_sections(self) -> Dashboard:
        unknown = [name for name in self.borrow if name not in self.experiments]
        if unknown:
            raise ValueError(f"borrow: '{unknown[0]}' is not one of this dashboard's experiments ({', '.join(self.experiments)})")
        return self

    def borrowed(self, section: str) -> list[Borrow]:
        """What a section borrows (none unless `borrow` names it)."""
        return self.borrow.get(section, [])

    def sources(self, section: str) -> list[str]:
        """Every experiment whose runs a section reads: its members and the experiments it borrows from."""
        return [*members(section), *(b.experiment for b in self.borrowed(section))]

    def selection(self, panel: Selection) -> tuple[RunKind, list[Status], dict[str, Scalar | list[Scalar]]]:
        """The runs a panel uses: (kind, statuses, filters), the panel's own settings over the dashboard's."""
        return panel.runs or self.runs, panel.status or self.status, dict(self.filters) | dict(panel.filters or {})


class PaperRow(Strict):
    """One row of a paper table: which runs it describes (`match`: field -> value, or a list of allowed values) and
    the paper's numbers."""

    label: str
    match: dict[FieldName, Scalar | list[Scalar]] = {}
    values: dict[FieldName, float]


class PaperTable(Strict):
    """A table transcribed from the paper: number, page (None when the source gives none), where it is, its setup."""

    table: int
    page: int | None
    location: str
    caption: str
    setup: str
    rows: list[PaperRow] = Field(min_length=1)


class PaperValues(Strict):
    source: str
    note: str = ""
    tables: dict[str, PaperTable] = {}


@dataclass(frozen=True)
class Definitions:
    """Every dashboard of a folder (by file stem, in name order) and the paper's values."""

    dashboards: dict[str, Dashboard]
    paper: PaperValues

    def for_experiments(self, names: list[str]) -> Definitions:
        """The same dashboards, each built from `names` instead of the experiments its file names."""
        return Definitions(
            {
                slug: d.model_copy(update={"experiments": list(names), "borrow": {k: v for k, v in d.borrow.items() if k in names}})
                for slug, d in self.dashboards.items()
            },
            self.paper,
        )


def _key_path(loc: tuple[int | str, ...], raw: Any) -> str:
    """`('panels', 0, 'line', 'y', 1, 'field')` -> `panels[0].y[1].field`, following the YAML as written: union tags
    are dropped, a bad dict key is named by its message, and a shorthand string (`y: acc.cifar10`) ends the path."""
    parts: list[str] = []
    node = raw
    for i, item in enumerate(loc):
        previous = loc[i - 1] if i else None
        if (isinstance(previous, int) and item in PANEL_KINDS) or str(item).startswith("function-"):
            continue
        if item == "[key]":
            parts.pop()
            break
        if not isinstance(node, (dict, list)):
            break
        if isinstance(item, int) and parts:
            parts[-1] += f"[{item}]"
        else:
            parts.append(str(item))
        node = _child(node, item)
    return ".".join(parts) or "<top>"


def _child(node: dict[Any, Any] | list[Any], item: int | str) -> Any:
    """node[item] where the YAML has it, else None."""
    if isinstance(node, dict):
        return node.get(item)
    return node[item] if isinstance(item, int) and item < len(node) else None


def _problems(exc: ValidationError, source: str, raw: Any) -> list[str]:
    out = []
    for err in exc.errors():
        message = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        elif err["type"] == "missing":
            message = "required key is missing"
        out.append(f"{source}: {_key_path(err['loc'], raw)}: {message}")
    return out


def _read(path: Path, shown: str) -> tuple[Any, list[str]]:
    try:
        return yaml.safe_load(path.read_text()), []
    except yaml.YAMLError as exc:
        return None, [f"{shown}: invalid YAML: {' '.join(str(exc).split())}"]


def _shown(path: Path) -> str:
    """The path as the user would type it: relative to the working directory when below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def load_definitions(folder: str | Path) -> Definitions:
    """Validate every `*.yaml` of `folder` (dashboards, and the paper's values in `paper_values.yaml`); raises
    DefinitionError listing every problem of every file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DefinitionError([f"{_shown(folder)}: no such folder of dashboard definitions"])
    problems: list[str] = []
    paper = PaperValues(source="")
    paper_path = folder / PAPER_FILE
    if paper_path.is_file():
        raw, bad = _read(paper_path, _shown(paper_path))
        problems += bad
        try:
            paper = PaperValues.model_validate(raw) if not bad else paper
        except ValidationError as exc:
            problems += _problems(exc, _shown(paper_path), raw)
    dashboards: dict[str, Dashboard] = {}
    for path in sorted(folder.glob("*.yaml")):
        if path.name == PAPER_FILE:
            continue
        shown = _shown(path)
        raw, bad = _read(path, shown)
        problems += bad
        if bad:
            continue
        try:
            dashboard = Dashboard.model_validate(raw)
        except ValidationError as exc:
            problems += _problems(exc, shown, raw)
            continue
        known = sorted(paper.tables)
        problems += [
            f"{shown}: paper[{i}]: unknown paper table '{key}'; known: {', '.join(known) or f'none ({PAPER_FILE} is missing or empty)'}"
            for i, key in enumerate(dashboard.paper)
            if key not in paper.tables
        ]
        dashboards[path.stem] = dashboard
    if not dashboards and not problems:
        problems.append(f"{_shown(folder)}: no dashboard definitions (*.yaml)")
    if problems:
        raise DefinitionError(problems)
    return Definitions(dashboards, paper)
