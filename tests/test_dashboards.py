"""Dashboards: every table cell is the mean and 95% t-interval of its runs (recomputed here with scipy's own
interval), definitions fail with the key that is wrong, empty and partial experiments say so, the paper's
values are the paper's, a real sweep's site matches its runs in MLflow, and the pages load in Chromium."""

from __future__ import annotations

import functools
import itertools
import json
import math
import re
import statistics
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO
from headless_chromium import Browser, find_chromium
from scipy import stats

from sslsteal.dashboards import cli, svg
from sslsteal.dashboards.fields import METRICS, RUN_ATTRIBUTES, bounds, check_field, field_label
from sslsteal.dashboards.markdown import experiments, regenerate
from sslsteal.dashboards.site import build_site
from sslsteal.dashboards.spec import Dashboard, DefinitionError, Definitions, PaperValues, load_definitions
from sslsteal.orchestration.records import RunRecord
from sslsteal.orchestration.run_records import experiment_names, read_studies

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
PAPER_TEXT = sorted((REPO.parent / "shared" / "paper").glob("*.txt"))


# --- reading the pages back ---------------------------------------------------------------------------------------


class Page(HTMLParser):
    """A built page as data: its tables (attributes, rows of cells with their attributes and text) and its text."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.tables: list[dict[str, Any]] = []
        self.text: list[str] = []
        self.svg: list[tuple[str, dict[str, str]]] = []
        self._cell: dict[str, Any] | None = None
        self._in_svg = self._in_body = False
        self.feed(path.read_text())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "svg":
            self._in_svg = True
        if self._in_svg:
            self.svg.append((tag, a))
        elif tag == "table":
            self.tables.append({"attrs": a, "header": [], "rows": []})
        elif tag == "tr" and self.tables and self._in_body:
            self.tables[-1]["rows"].append({"attrs": a, "cells": []})
        elif tag == "tbody":
            self._in_body = True
        elif tag in ("td", "th") and self.tables:
            self._cell = {"attrs": a, "text": "", "tag": tag}

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._in_svg = False
        elif tag == "tbody":
            self._in_body = False
        elif tag in ("td", "th") and self._cell is not None:
            if self._cell["tag"] == "th":
                self.tables[-1]["header"].append(self._cell["text"])
            else:
                self.tables[-1]["rows"][-1]["cells"].append(self._cell)
            self._cell = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell["text"] += data

    @property
    def all_text(self) -> str:
        return " ".join(" ".join(self.text).split())

    def data_tables(self) -> list[dict[str, Any]]:
        return [t for t in self.tables if "data-aggregate" in t["attrs"]]


def interval(values: list[float]) -> tuple[float, float | None, float | None]:
    """(mean, lo, hi) with scipy's t interval (not the formula the code uses); no interval for one value."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None, None
    if statistics.stdev(values) == 0:  # scipy's interval needs a positive scale
        return mean, mean, mean
    lo, hi = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=stats.sem(values))
    return mean, float(lo), float(hi)


def check_cell(cell: dict[str, Any], values: list[float], fmt: str = ".2f") -> None:
    """The cell's n, mean and interval (attributes and text) are those of `values`."""
    a = cell["attrs"]
    mean, lo, hi = interval(values)
    assert int(a["data-n"]) == len(values)
    assert float(a["data-mean"]) == pytest.approx(mean, rel=1e-12)
    if lo is None:
        assert "data-lo" not in a and cell["text"].startswith(format(mean, fmt))
        assert "[" not in cell["text"]
    else:
        assert float(a["data-lo"]) == pytest.approx(lo, rel=1e-9) and float(a["data-hi"]) == pytest.approx(hi, rel=1e-9)
        assert cell["text"].startswith(f"{mean:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"), cell["text"]


# --- hand-made runs -------------------------------------------------------------------------------------------------


RUN_IDS = itertools.count(1)


def trial(experiment: str, params: dict[str, object], metrics: dict[str, float], status: str = "FINISHED") -> RunRecord:
    n = next(RUN_IDS)
    tags = {"sslsteal.kind": "trial", "mlflow.runName": f"trial-{n}", "sslsteal.account": f"t{n}.1"}
    return RunRecord(f"run{n}", experiment, status, {k: str(v) for k, v in params.items()}, metrics, tags, T0, T0 + timedelta(seconds=60))


def sweep_run(experiment: str, trials: int) -> RunRecord:
    return RunRecord(f"sweep-{experiment}", experiment, "RUNNING", {"trials": str(trials)}, {}, {"sslsteal.kind": "sweep"}, T0, None)


def dashboard(**fields: object) -> Dashboard:
    return Dashboard.model_validate({"title": "T", "experiments": ["exp"], **fields})


def build(tmp_path: Path, dashboards: dict[str, Dashboard], records: list[RunRecord], paper: dict[str, Any] | None = None) -> dict[str, Page]:
    values = PaperValues.model_validate({"source": "test", "tables": paper or {}})
    paths = build_site(Definitions(dashboards, values), records, tmp_path / "site")
    return {p.stem: Page(p) for p in paths}


ACC = {"mse": [41.0, 44.5, 39.25], "softnn": [52.0]}


def loss_runs() -> list[RunRecord]:
    runs = [
        trial("exp", {"attack.loss": loss, "attack.seed": s, "attack.queries": 9000}, {"acc.cifar10": a})
        for loss, accs in ACC.items()
        for s, a in enumerate(accs)
    ]
    runs.append(trial("exp", {"attack.loss": "mse", "attack.seed": 0, "attack.queries": 500}, {"acc.cifar10": 30.0, "acc.stl10": 20.0}))
    runs.append(trial("exp", {"attack.loss": "mse", "attack.seed": 3, "attack.queries": 9000}, {"acc.cifar10": 99.0}, status="FAILED"))
    runs.append(trial("other", {"attack.loss": "mse", "attack.seed": 0, "attack.queries": 9000}, {"acc.cifar10": 1.0}))
    return runs


def test_table_cells_are_seed_means_with_t_intervals(tmp_path: Path) -> None:
    panel = {"kind": "table", "title": "losses", "rows": ["params.attack.loss"], "columns": ["acc.<dataset>"], "filters": {"params.attack.queries": 9000}}
    page = build(tmp_path, {"d": dashboard(panels=[panel])}, loss_runs())["d"]
    (found,) = page.data_tables()
    assert found["header"] == ["loss", "runs", "seeds", "stolen accuracy (CIFAR-10)"]  # acc.stl10 only at 500 queries: filtered out
    rows = {json.loads(r["attrs"]["data-group"])["params.attack.loss"]: r["cells"] for r in found["rows"]}
    assert set(rows) == {"mse", "softnn"}  # the FAILED run and the other experiment's are not used
    for loss, accs in ACC.items():
        runs, seeds, acc = rows[loss][1:]
        assert runs["text"] == str(len(accs)) and seeds["text"] == ", ".join(str(i) for i in range(len(accs)))
        check_cell(acc, accs)
    assert json.loads(found["attrs"]["data-filters"]) == {"params.attack.queries": 9000}
    assert "4 runs used: trial runs, status FINISHED; queries = 9000" in page.all_text


def test_runs_of_different_configurations_are_never_pooled_as_seeds(tmp_path: Path) -> None:
    """Runs that differ in a configuration param the rows do not name (here the query pool) get rows of their own,
    a param that changes no metric (save_encoder) does not split, and `aggregate: pooled` pools them on purpose."""
    pools = {"cifar10:train": [57.0, 57.5], "cifar10:test[:9000]": [53.0, 61.0]}
    runs = [
        trial("exp", {"attack.loss": "mse", "attack.seed": s, "attack.query_data": pool, "evaluate.save_encoder": s == 1}, {"acc.cifar10": a})
        for pool, accs in pools.items()
        for s, a in enumerate(accs)
    ]
    table_of = {"kind": "table", "title": "t", "rows": ["params.attack.loss"], "columns": ["acc.cifar10"]}
    pooled = table_of | {"aggregate": "pooled"}
    line = {"kind": "line", "title": "l", "x": "params.attack.seed", "y": "acc.cifar10", "series": "params.attack.loss"}
    page = build(tmp_path, {"d": dashboard(panels=[table_of, pooled, line])}, runs)["d"]
    split, together = page.data_tables()
    assert split["header"] == ["loss", "query data", "runs", "seeds", "stolen accuracy (CIFAR-10)"]
    cells = {json.loads(r["attrs"]["data-group"])["params.attack.query_data"]: r["cells"][-1] for r in split["rows"]}
    assert set(cells) == set(pools)
    for pool, accs in pools.items():
        check_cell(cells[pool], accs)
    (row,) = together["rows"]
    check_cell(row["cells"][-1], [a for accs in pools.values() for a in accs])
    assert "mse, cifar10:train" in page.all_text and "mse, cifar10:test[:9000]" in page.all_text  # one curve per pool


def test_a_loss_and_strategy_a_method_never_used_read_as_a_dash(tmp_path: Path) -> None:
    """StolenEncoder trains with its own objective: the default `attack.loss` and `attack.strategy` logged with it show
    as `—`, not as a loss it did not use; direct extraction keeps its loss and strategy."""
    runs = [
        trial("exp", {"attack.method": m, "attack.loss": loss, "attack.strategy": "once", "attack.seed": s}, {"acc.cifar10": 60.0 + s})
        for m, loss in (("direct", "softnn"), ("stolenencoder", "infonce"))
        for s in (0, 1)
    ]
    table_of = {"kind": "table", "title": "t", "rows": ["params.attack.method"], "columns": ["acc.cifar10"]}
    (table,) = build(tmp_path, {"d": dashboard(panels=[table_of])}, runs)["d"].data_tables()
    assert table["header"][:3] == ["method", "loss", "runs"]
    shown = {row["cells"][0]["text"]: row["cells"][1]["text"] for row in table["rows"]}
    assert shown == {"direct": "softnn", "stolenencoder": "—"}


def test_template_columns_and_missing_values(tmp_path: Path) -> None:
    panel = {"kind": "table", "title": "t", "rows": ["params.attack.loss", "params.attack.queries"], "columns": ["acc.<dataset>", "fidelity.cosine"]}
    (found,) = build(tmp_path, {"d": dashboard(panels=[panel])}, loss_runs())["d"].data_tables()
    assert found["header"][-3:] == ["stolen accuracy (CIFAR-10)", "stolen accuracy (STL-10)", "fidelity (cosine)"]
    by_key = {tuple(json.loads(r["attrs"]["data-group"]).values()): r["cells"] for r in found["rows"]}
    assert list(by_key) == [("mse", "500"), ("mse", "9000"), ("softnn", "9000")]  # numeric order within each loss
    check_cell(by_key[("mse", "500")][-2], [20.0])
    assert by_key[("mse", "9000")][-2]["text"] == "—" and by_key[("mse", "9000")][-2]["attrs"]["data-n"] == "0"


def test_paper_values_beside_the_same_cell_only(tmp_path: Path) -> None:
    paper = {
        "t2": {
            "table": 2,
            "page": None,
            "location": "x",
            "caption": "c",
            "setup": "s",
            "rows": [{"label": "MSE", "match": {"params.attack.loss": "mse", "params.attack.queries": 9000}, "values": {"acc.cifar10": 75.5}}],
        }
    }
    panel = {"kind": "table", "title": "t", "rows": ["params.attack.loss", "params.attack.queries"], "columns": ["acc.cifar10"]}
    page = build(tmp_path, {"d": dashboard(panels=[panel], paper=["t2"])}, loss_runs(), paper)["d"]
    cells = {tuple(json.loads(r["attrs"]["data-group"]).values()): r["cells"][-1] for r in page.data_tables()[0]["rows"]}
    assert cells[("mse", "9000")]["attrs"]["data-paper"] == "75.5" and "paper 75.50 (T2)" in cells[("mse", "9000")]["text"]
    assert "data-paper" not in cells[("mse", "500")]["attrs"] and "data-paper" not in cells[("softnn", "9000")]["attrs"]
    assert "Table 2 (t2): c" in page.all_text  # the cited table in full below


def test_paper_values_sit_under_the_stolen_figure_of_their_cell_and_the_paper_victim_beside_ours_there(tmp_path: Path) -> None:
    """A row's list of allowed query pools matches either pool, never another dataset's; the table's victim row (no
    `match`) shows only in the cells one of the table's rows describes."""
    runs = [trial("exp", {"attack.loss": "mse", "attack.queries": 9000, "attack.query_data": "cifar10:train", "attack.seed": s}, {}) for s in (0, 1)]
    runs += [trial("exp", {"attack.loss": "mse", "attack.queries": 9000, "attack.query_data": "svhn:train", "attack.seed": 0}, {})]
    runs += [trial("exp", {"attack.loss": "mse", "attack.queries": 500, "attack.query_data": "cifar10:train", "attack.seed": 0}, {})]
    for r in runs:
        r.metrics.update({"acc.cifar10": 60.0, "victim_acc.cifar10": 66.0})
    pools = ["cifar10:test[:9000]", "cifar10:train"]
    rows = [
        {"label": "Victim Model", "values": {"victim_acc.cifar10": 79.0}},
        {
            "label": "MSE",
            "match": {"params.attack.loss": "mse", "params.attack.queries": 9000, "params.attack.query_data": pools},
            "values": {"acc.cifar10": 75.5},
        },
    ]
    paper = {"t2": {"table": 2, "page": None, "location": "x", "caption": "c", "setup": "s", "rows": rows}}
    panel = {"kind": "table", "title": "t", "rows": ["params.attack.loss", "params.attack.queries"], "columns": ["acc.cifar10", "victim_acc.cifar10"]}
    page = build(tmp_path, {"d": dashboard(panels=[panel], paper=["t2"])}, runs, paper)["d"]
    (found,) = page.data_tables()
    assert found["header"] == ["loss", "queries", "query data", "runs", "seeds", "stolen accuracy (CIFAR-10)", "victim accuracy (CIFAR-10)"]
    papers = {tuple(json.loads(r["attrs"]["data-group"]).values()): [c["attrs"].get("data-paper") for c in r["cells"][-2:]] for r in found["rows"]}
    assert papers == {
        ("mse", "500", "cifar10:train"): [None, None],
        ("mse", "9000", "cifar10:train"): ["75.5", "79.0"],
        ("mse", "9000", "svhn:train"): [None, None],
    }
    assert "query data = cifar10:test[:9000] or cifar10:train" in page.all_text  # the cited row's match, in words


def test_fields_are_labelled_in_words_and_a_definition_may_rename_them(tmp_path: Path) -> None:
    examples = {
        "<dataset>": "cifar10",
        "<test>": "dataset_inference",
        "<key>": "p_value",
        "<objective>": "val_acc.svhn",
        "<param>": "attack.batch_size",
        "<source>": "stolen",
        "<eps>": "0.1",
    }
    metrics = [functools.reduce(lambda name, kv: name.replace(*kv), examples.items(), m) for m in METRICS]
    others = ["params.attack.query_data", "params.defense.sigma", "params.trials", "tags.sslsteal.victim_device", "tags.mlflow.runName"]
    for name in [*metrics, *others, *(f"run.{a}" for a in RUN_ATTRIBUTES)]:
        text = field_label(name)
        assert text and "_" not in text and "params." not in text and (text != name or "." not in name), (name, text)
    assert field_label("best.val_acc.svhn") == "best validation accuracy (SVHN)"
    assert field_label("ownership.dataset_inference.p_value") == "dataset inference p-value"
    assert field_label("transfer.fgsm.knockoff.0.05") == "FGSM transfer from knockoff (eps 0.05)"
    labels = {"params.attack.loss": "stealing loss", "acc.<dataset>": "copy on <dataset>"}
    panel = {"kind": "table", "title": "t", "rows": ["params.attack.loss"], "columns": ["acc.<dataset>", {"field": "acc.cifar10", "label": "again"}]}
    (found,) = build(tmp_path, {"d": dashboard(panels=[panel], labels=labels)}, loss_runs())["d"].data_tables()
    assert found["header"] == ["stealing loss", "queries", "runs", "seeds", "copy on CIFAR-10", "copy on STL-10", "again"]  # queries: a confounder


def test_pages_name_the_store_without_its_absolute_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store outside the working directory is named by its file alone, one inside it by its relative path."""
    store = tmp_path / "elsewhere" / "runs.db"
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    assert cli.main(["--tracking-uri", f"sqlite:///{store}", "--out", str(tmp_path / "site")]) == 0
    for path in (tmp_path / "site").glob("*.html"):
        text = path.read_text()
        assert "from sqlite:///runs.db" in text and str(tmp_path) not in text, path.name


def test_line_plot_draws_means_bands_and_paper_points(tmp_path: Path) -> None:
    runs = [
        trial("exp", {"attack.loss": "mse", "attack.queries": q, "attack.seed": s}, {"acc.cifar10": q / 100 + s}) for q in (500, 1000, 5000) for s in (0, 1, 2)
    ]
    runs += [trial("exp", {"attack.loss": "softnn", "attack.queries": 1000, "attack.seed": 0}, {"acc.cifar10": 50.0})]
    paper = {
        "t7": {
            "table": 7,
            "page": None,
            "location": "x",
            "caption": "c",
            "setup": "s",
            "rows": [{"label": "r", "match": {"params.attack.queries": 500}, "values": {"acc.cifar10": 33.0}}],
        }
    }
    panel = {
        "kind": "line",
        "title": "acc",
        "x": "params.attack.queries",
        "y": "acc.cifar10",
        "series": "params.attack.loss",
        "log_x": True,
        "hlines": [{"y": 10}],
    }
    page = build(tmp_path, {"d": dashboard(panels=[panel], paper=["t7"])}, runs, paper)["d"]
    points = [(a["data-x"], a["data-y"], a["data-n"], a["fill"]) for tag, a in page.svg if tag == "circle" and "data-x" in a]
    expected = {(repr(float(q)), repr(statistics.fmean([q / 100 + s for s in (0, 1, 2)])), "3") for q in (500, 1000, 5000)}
    assert {p[:3] for p in points if p[2] == "3"} == expected and all(p[3] != "white" for p in points if p[2] == "3")
    assert [p for p in points if p[2] == "1"] == [(repr(1000.0), repr(50.0), "1", "white")]  # one seed: hollow, no band
    assert sum(tag == "polygon" and a.get("class") == "band" for tag, a in page.svg) == 1
    assert sum(tag == "path" and a.get("class") == "paper" for tag, a in page.svg) == 1  # only mse ran at 500
    assert sum(tag == "line" and a.get("class") == "hline" for tag, a in page.svg) == 1
    values = [r for t in page.tables if "plot-values" in t["attrs"].get("class", "") for r in t["rows"]]
    mse_500 = next(r for r in values if r["attrs"]["data-series"] == "mse" and r["attrs"]["data-x"] == "500.0")
    check_cell(mse_500["cells"][2], [5.0, 6.0, 7.0])


def test_a_p_value_interval_is_cut_at_zero_and_a_log_axis_draws_it_down_to_its_floor(tmp_path: Path) -> None:
    """Three seeds' p-values (0.001, 0.002, 0.0035) have a t-interval whose lower end is negative: the page shows
    it cut at 0 (a p-value cannot be lower) and the bar reaches the bottom of the log axis instead of failing."""
    runs = [trial("exp", {"attack.queries": 1000, "attack.seed": s}, {"ownership.watermark.p_value": p}) for s, p in enumerate((0.001, 0.002, 0.0035))]
    panel = {"kind": "line", "title": "p", "x": "params.attack.queries", "y": "ownership.watermark.p_value", "log_x": True, "log_y": True}
    page = build(tmp_path, {"d": dashboard(panels=[panel])}, runs, {})["d"]
    bars = [a for tag, a in page.svg if tag == "line" and "class" not in a and a.get("x1") == a.get("x2") and a.get("y1") != a.get("y2")]
    bottoms = [float(a["y1"]) for a in bars]
    assert bottoms and max(bottoms) == pytest.approx(svg.HEIGHT - svg.BOTTOM)  # the lower end sits on the x axis
    values = [r for t in page.tables if "plot-values" in t["attrs"].get("class", "") for r in t["rows"]]
    (cell,) = [c for r in values for c in r["cells"] if "data-lo" in c["attrs"]]
    assert interval([0.001, 0.002, 0.0035])[1] < 0 and float(cell["attrs"]["data-lo"]) == 0.0


def test_durations_and_shares_of_queries_keep_their_intervals_in_range(tmp_path: Path) -> None:
    """A time over three seeds (0.1, 0.2, 1.5 s) and a detected share (0, 0, 0.9) have t-intervals below 0: the
    table cuts them at 0, and the share at 1 above; an accuracy's interval is left as it is."""
    values = {"time.query_s": [0.1, 0.2, 1.5], "defense.detected_fraction": [0.0, 0.0, 0.9], "acc.cifar10": [50.0, 51.0, 60.0]}
    runs = [trial("exp", {"attack.seed": s}, {k: v[s] for k, v in values.items()}) for s in range(3)]
    panel = {"kind": "table", "title": "t", "columns": list(values), "aggregate": "pooled"}
    (table,) = build(tmp_path, {"d": dashboard(panels=[panel])}, runs)["d"].data_tables()
    (row,) = table["rows"]
    assert len(table["header"]) == len(row["cells"]) and table["header"][-3:] == [field_label(name) for name in values]
    for (name, vs), cell in zip(values.items(), row["cells"][-3:], strict=True):
        _, lo, hi = interval(vs)
        shown = float(cell["attrs"]["data-lo"]), float(cell["attrs"]["data-hi"])
        if name == "acc.cifar10":
            assert shown == pytest.approx((lo, hi))
        else:
            assert lo < 0 and shown[0] == 0.0
            assert shown[1] == pytest.approx(min(hi, 1.0) if name.startswith("defense.") else hi)
    assert interval(values["defense.detected_fraction"])[2] > 1  # the share's upper end was cut too


def test_counts_of_images_print_as_whole_numbers(tmp_path: Path) -> None:
    """Paid queries, distinct query images and victim forward passes are counts: their cells read `50 [50, 50]`, not
    `50.00`; an accuracy keeps two decimals."""
    metrics = {"queries_used": 500.0, "queries.source_images": 50.0, "queries.victim_forward": 500.0, "acc.cifar10": 60.0}
    runs = [trial("exp", {"attack.seed": s}, metrics) for s in range(2)]
    panel = {"kind": "table", "title": "t", "columns": list(metrics)}
    (table,) = build(tmp_path, {"d": dashboard(panels=[panel])}, runs)["d"].data_tables()
    (row,) = table["rows"]
    assert [cell["text"] for cell in row["cells"][-4:]] == ["500 [500, 500]", "50 [50, 50]", "500 [500, 500]", "60.00 [60.00, 60.00]"]


def test_scatter_points_are_group_means_on_both_axes(tmp_path: Path) -> None:
    legit, adversary = {0: [60.0, 62.0], 2: [58.0, 57.0]}, {0: [55.0, 51.0], 2: [45.0, 46.0]}
    runs = [
        trial(
            "exp",
            {"defense.name": "noise", "defense.sigma": sigma, "attack.seed": s},
            {"legit_acc.cifar10": legit[sigma][s], "acc.cifar10": adversary[sigma][s]},
        )
        for sigma in (0, 2)
        for s in (0, 1)
    ]
    panel = {"kind": "scatter", "title": "s", "x": "legit_acc.cifar10", "y": "acc.cifar10", "points": ["params.defense.sigma"], "diagonal": True}
    page = build(tmp_path, {"d": dashboard(panels=[panel])}, runs)["d"]
    points = {(float(a["data-x"]), float(a["data-y"])) for tag, a in page.svg if tag == "circle" and "data-x" in a}
    assert points == {(statistics.fmean(legit[s]), statistics.fmean(adversary[s])) for s in (0, 2)}
    assert any(tag == "line" and a.get("class") == "diagonal" for tag, a in page.svg)


def test_a_section_may_merge_experiments_and_a_findings_panel_reads_every_experiment(tmp_path: Path) -> None:
    runs = [
        trial(e, {"attack.loss": "mse", "attack.seed": s, "attack.queries": q}, {"acc.cifar10": q / 100 + s})
        for e, q in (("a", 500), ("b", 9000))
        for s in (0, 1)
    ]
    line = {"kind": "line", "title": "acc", "x": "params.attack.queries", "y": "acc.cifar10", "series": "params.attack.loss"}
    found = {
        "kind": "findings",
        "title": "Findings",
        "findings": [
            {
                "id": "more-queries",
                "claim": "more queries steal more",
                "paper": "47.7 vs 63.9",
                "metric": "acc.cifar10",
                "a": {"experiment": "b", "label": "9,000"},
                "b": {"experiment": "a", "label": "500"},
                "expect": "greater",
            }
        ],
    }
    pages = build(tmp_path, {"q": dashboard(experiments=["a+b"], panels=[line]), "f": dashboard(experiments=["a", "b"], panels=[found])}, runs)
    assert "4 runs used" in " ".join(pages["q"].text)  # both experiments in one section, one curve
    (table,) = [t for t in pages["f"].tables if "findings" in t["attrs"].get("class", "")]
    (row,) = table["rows"]
    assert row["attrs"]["data-finding"] == "more-queries" and row["cells"][-1]["attrs"]["data-verdict"] == "held"
    assert row["cells"][4]["text"].startswith("85.00 [85.00, 85.00] (paired by seed)")


def test_a_section_borrows_runs_of_the_same_configuration_and_seed_only_where_it_has_none(tmp_path: Path) -> None:
    """Borrowed trials join their section where it has no finished run of that configuration and seed; other
    configurations of the lending experiment, and its unfinished runs, stay out; the page and the Markdown say so."""
    own = [trial("front", {"attack.method": "rda", "attack.queries": 500, "attack.seed": s}, {"acc.cifar10": 50.0 + s}) for s in (0, 1)]
    own.append(trial("front", {"attack.method": "direct", "attack.queries": 500, "attack.seed": 0}, {"acc.cifar10": 40.0}))
    lent = [trial("table7", {"attack.method": "direct", "attack.queries": 500, "attack.seed": s}, {"acc.cifar10": 60.0 + s}) for s in (0, 1, 2)]
    lent.append(trial("table7", {"attack.method": "direct", "attack.queries": 500, "attack.seed": 3}, {"acc.cifar10": 99.0}, status="FAILED"))
    lent.append(trial("table7", {"attack.method": "recreate_head", "attack.queries": 500, "attack.seed": 0}, {"acc.cifar10": 99.0}))
    panel = {"kind": "table", "title": "t", "rows": ["params.attack.method"], "columns": ["acc.cifar10"]}
    borrow = {"front": [{"experiment": "table7", "filters": {"params.attack.method": "direct"}}]}
    board = dashboard(experiments=["front"], panels=[panel], borrow=borrow)
    page = build(tmp_path, {"d": board}, own + lent)["d"]
    (found,) = page.data_tables()
    rows = {json.loads(r["attrs"]["data-group"])["params.attack.method"]: r["cells"] for r in found["rows"]}
    assert set(rows) == {"direct", "rda"}  # the lender's recreate_head run is not borrowed
    check_cell(rows["direct"][-1], [40.0, 61.0, 62.0])  # seed 0: the section's own run; seeds 1, 2 borrowed
    assert rows["direct"][2]["text"] == "0, 1, 2"
    assert "plus 2 finished trials borrowed with the same configuration and seed: 2 from table7" in page.all_text
    assert "3 runs in the experiment" in page.all_text
    definitions = Definitions({"d": board}, PaperValues.model_validate({"source": "test"}))
    doc = "<!-- sslsteal:table dashboard=d panel=0 experiment=front -->\n<!-- sslsteal:end -->\n"
    assert experiments(definitions, doc) == ["front", "table7"]
    assert "2 of these 5 runs are borrowed from table7 (same configuration and seed)." in regenerate(doc, definitions, own + lent)
    assert definitions.for_experiments(["other"]).dashboards["d"].borrow == {}
    with pytest.raises(ValueError, match="borrow: 'elsewhere' is not one of this dashboard's experiments"):
        dashboard(experiments=["front"], panels=[panel], borrow={"elsewhere": borrow["front"]})


def test_empty_and_partial_experiments_say_so(tmp_path: Path) -> None:
    runs = [trial("exp", {"attack.loss": "mse", "attack.seed": s}, {"acc.cifar10": 40.0 + s}) for s in range(3)]
    runs += [trial("exp", {"attack.loss": "mse", "attack.seed": 3}, {}, status="FAILED")]
    runs += [trial("exp", {"attack.loss": "mse", "attack.seed": s}, {}, status="RUNNING") for s in (4, 5)]
    runs += [sweep_run("exp", 10)]
    panels = [
        {"kind": "table", "title": "t", "rows": ["params.attack.loss"], "columns": ["acc.cifar10"]},
        {"kind": "line", "title": "l", "x": "params.attack.queries", "y": "acc.cifar10"},
        {"kind": "table", "title": "none", "filters": {"params.attack.loss": "softnn"}, "columns": ["acc.cifar10"]},
        {"kind": "studies", "title": "studies"},
    ]
    pages = build(tmp_path, {"d": dashboard(experiments=["exp", "never-run"], panels=panels)}, runs)
    text = pages["d"].all_text
    assert "3 of 10 trials finished (1 failed, 2 running)" in text
    assert "experiment never-run no runs yet" in text
    assert "no values of acc.cifar10 against params.attack.queries" in text  # no run logged the x field
    assert "0 runs used: trial runs, status FINISHED; loss = softnn no runs match yet" in text
    assert "no Optuna studies recorded for this experiment yet" in text
    assert "exp: 3 of 10 trials finished (1 failed, 2 running) (7 runs)" in pages["index"].all_text
    assert "never-run: no runs yet" in pages["index"].all_text
    assert re.search(r"built \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", text)
    # nothing at all: every page still builds
    empty = build(tmp_path / "empty", {"d": dashboard(panels=panels)}, [])
    assert "no runs yet" in empty["d"].all_text and "no runs yet" in empty["index"].all_text


# --- definitions ----------------------------------------------------------------------------------------------------


BAD = """
title: X
experiments: [e]
filters: {params.atack.loss: mse}
panels:
  - {kind: line, title: a, x: params.attack.queries, y: acc_ratioo.cifar10}
  - {kind: table, title: b, rows: [params.attack.loss], columns: [acc.<dataset>, {field: acc.cifar10, format: "q"}], colums: []}
  - {kind: bar, title: c}
  - {kind: scatter, title: d, x: acc.<dataset>, y: legit_acc.cifar10}
"""


def test_definition_errors_name_each_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "dashboards"
    folder.mkdir()
    (folder / "x.yaml").write_text(BAD)
    (folder / "y.yaml").write_text("title: Y\nexperiments: [e]\npanels: [{kind: studies, title: s}]\npaper: [table99]\n")
    (folder / "z.yaml").write_text("title: [unclosed\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DefinitionError) as raised:
        load_definitions(folder)
    problems = raised.value.problems
    assert "dashboards/x.yaml: panels[0].y: unknown field 'acc_ratioo.cifar10' (did you mean 'acc_ratio.cifar10'?)" in problems
    assert any(p.startswith("dashboards/x.yaml: filters: unknown field 'params.atack.loss'") for p in problems)
    assert any(p.startswith("dashboards/x.yaml: panels[1].columns[1].format: not a Python number format") for p in problems)
    assert "dashboards/x.yaml: panels[1].colums: unknown key" in problems
    assert any(p.startswith("dashboards/x.yaml: panels[2]: Input tag 'bar'") for p in problems)
    assert "dashboards/x.yaml: panels[3].x: 'acc.<dataset>': <dataset> is allowed only in table columns" in problems
    assert any(p.startswith("dashboards/y.yaml: paper[0]: unknown paper table 'table99'") for p in problems)
    assert any(p.startswith("dashboards/z.yaml: invalid YAML") for p in problems)
    assert all("\n" not in p for p in problems) and len(problems) == 8
    assert cli.main(["--definitions", str(folder), "--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}"]) == 2
    assert capsys.readouterr().err.splitlines() == problems


def test_unknown_experiment_exits_2_and_creates_no_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "mlflow.db"
    code = cli.main(["--experiment", "nope", "--tracking-uri", f"sqlite:///{db}", "--out", str(tmp_path / "site")])
    assert code == 2 and capsys.readouterr().err.strip() == f"--experiment: unknown experiment 'nope' in sqlite:///{db}; known: none"
    assert not db.exists() and experiment_names(f"sqlite:///{db}") == [] and not db.exists()


def test_field_vocabulary_covers_every_metric_of_the_architecture_doc() -> None:
    section = (REPO / "docs" / "architecture.md").read_text().split("## Metrics", 1)[1]
    names: list[str] = []
    for line in section.splitlines():
        if line.startswith("| `"):
            previous = ""
            for name in re.findall(r"`([^`]+)`", line.split("|")[1]):
                stem = previous if previous.endswith("<dataset>") else previous.rsplit(".", 1)[0]  # `.std` after `random_acc.<dataset>`
                full = stem + name if name.startswith(".") else name  # `.hi` after `acc.<dataset>.lo`
                names.append(full.replace("<dataset>", "cifar10").replace("<test>", "watermark").replace("<source>", "knockoff").replace("<eps>", "0.05"))
                previous = full
    assert len(names) >= 25 and "ownership.watermark.p_value" in names
    for name in names:
        assert check_field(name) == name
    for bad in (
        "acc_ratioo.cifar10",
        "acc.cifar10.low",
        "ownership.watermak.p_value",
        "ownership.watermark.pvalue",
        "params.atack.loss",
        "tags.sslsteal.nope",
        "run.nope",
    ):
        with pytest.raises(ValueError, match=re.escape(f"unknown field '{bad}'")):
            check_field(bad)


def test_the_repository_definitions_validate() -> None:
    definitions = load_definitions(REPO / "dashboards")
    assert {"methods", "losses", "queries", "defenses", "ownership", "best_loss", "health"} <= set(definitions.dashboards)
    cited = {key for d in definitions.dashboards.values() for key in d.paper}
    assert {"table1", "table2", "table4", "table7", "table9", "table10", "table11", "table12"} <= cited


def _numbers(text: str) -> set[float]:
    return {float(m) for m in re.findall(r"(?<![\w.])-?\d+(?:\.\d+)?(?:E-?\d+)?", text.replace("10^{-", "1E-").upper())}


@pytest.mark.skipif(not PAPER_TEXT, reason=f"the paper's text is not under {REPO.parent / 'shared' / 'paper'}")
def test_paper_values_are_the_papers() -> None:
    """Every transcribed number is printed in its table in the paper's text, whose caption is at the stated line."""
    lines = PAPER_TEXT[0].read_text().splitlines()
    paper = yaml.safe_load((REPO / "dashboards" / "paper_values.yaml").read_text())
    for key, t in paper["tables"].items():
        start = int(re.search(r"line (\d+)", t["location"]).group(1))
        assert lines[start - 1].startswith(f"Table {t['table']}."), (key, lines[start - 1][:40])
        end = next((i for i in range(start, len(lines)) if re.match(r"Table \d+\.", lines[i])), len(lines))
        printed = _numbers("\n".join(lines[start:end]))
        for row in t["rows"]:
            missing = [v for v in row["values"].values() if not any(math.isclose(v, p, rel_tol=1e-9) for p in printed)]
            assert not missing, (key, row["label"], missing)


# --- Optuna studies and MLflow runs ---------------------------------------------------------------------------------


def test_studies_are_read_from_their_storage(tmp_path: Path) -> None:
    import optuna

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s-q500", storage=url, direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.set_user_attr("sslsteal.budget", 500)
    space = {
        "attack/loss": optuna.distributions.CategoricalDistribution(["mse", "softnn", "infonce"]),
        "attack/lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
    }
    told: dict[str, list[float]] = {}
    for i, (loss, lr) in enumerate([("mse", 1e-3), ("mse", 3e-3), ("softnn", 1e-3), ("softnn", 2e-3), ("infonce", 1e-4)]):
        study.enqueue_trial({"attack/loss": loss, "attack/lr": lr})
        trial = study.ask(space)
        assert trial.params == {"attack/loss": loss, "attack/lr": lr}
        value = 10.0 if loss == "infonce" else 40.0 + i * 1.5
        study.tell(trial, value)
        told.setdefault(loss, []).append(value)
    study.tell(study.ask(), state=optuna.trial.TrialState.PRUNED)
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    run = RunRecord(
        "r", "exp", "FINISHED", {"study": "s-q500", "storage": url, "budget": "500", "objective": "val_acc.cifar10"}, {}, {"sslsteal.kind": "study"}
    )
    (record,) = read_studies([run, RunRecord("t", "exp", "FINISHED", tags={"sslsteal.kind": "trial"})])  # trial runs name no study
    assert record["error"] is None and record["budget"] == 500 and record["direction"] == "maximize"
    assert record["states"] == {"COMPLETE": 5, "PRUNED": 1, "FAIL": 1}
    assert record["best_per_loss"] == {loss: max(v) for loss, v in told.items()}
    best_loss = max(told, key=lambda loss: max(told[loss]))
    assert record["best"] is not None and record["best"]["loss"] == best_loss and record["best"]["value"] == max(max(v) for v in told.values())
    assert set(record["importances"]) <= {"attack/loss", "attack/lr"} and record["importances"]
    assert sum(record["importances"].values()) == pytest.approx(1.0)
    (missing,) = read_studies([run], storage=f"sqlite:///{tmp_path / 'moved.db'}")
    assert "does not exist" in (missing["error"] or "") and missing["best"] is None
    moved = tmp_path / "clone" / "results"  # the store and its Optuna file moved together (a fresh checkout)
    moved.mkdir(parents=True)
    (tmp_path / "optuna.db").rename(moved / "optuna.db")
    (found,) = read_studies([run], beside=f"sqlite:///{moved / 'mlflow.db'}")
    assert found["error"] is None and found["best_per_loss"] == record["best_per_loss"]
    (gone,) = read_studies([run], beside=f"sqlite:///{tmp_path / 'elsewhere' / 'mlflow.db'}")
    assert "does not exist" in (gone["error"] or "")


# --- end to end: a real sweep, its dashboards, its runs in MLflow --------------------------------------------------


def _shown(raw: str | None) -> str:
    """A param as the dashboards group it: its text, `—` when absent."""
    return "—" if raw is None else raw


def _numbers_equal(raw: str | None, wanted: object) -> bool:
    try:
        return raw is not None and float(raw) == float(wanted)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return raw == str(wanted)


@pytest.mark.slow
def test_a_real_sweep_dashboards_match_its_runs(cifar_root: Path, tmp_path: Path, mlflow_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    from mlflow.tracking import MlflowClient

    tiny = yaml.safe_load((REPO / "sweeps" / "victims" / "tiny.yaml").read_text())
    # the tiny victim cut to a quarter of its images, one epoch and a smaller probe: the sweep takes about a minute alone
    victim = tiny | {"name": "tiny-dash", "train_images": 1024, "epochs": 1, "evaluate": {"downstream": ["cifar10"], "train_images": 1000, "test_images": 500}}
    sweep = {
        "name": "dash-e2e",
        "victim": victim,
        "attack": {"loss": {"grid": ["mse", "softnn"]}, "queries": 300, "epochs": 2, "query_data": "cifar10:test[:8000]"},
        "defense": {"name": "noise", "sigma": 0.1},
        "evaluate": {"legit": True, "fidelity_images": 500},
        "run": {"seeds": [0, 1], "max_concurrent_trials": 2, "resources_per_trial": {"cpu": 1}, "data_root": str(cifar_root)},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    command = [sys.executable, "-m", "sslsteal.cli", "sweep", str(path), "--tracking-uri", mlflow_uri, "--storage", str(tmp_path / "tune"), "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    assert cli.main(["--experiment", "dash-e2e", "--tracking-uri", mlflow_uri, "--out", str(tmp_path / "site")]) == 0
    assert "dashboards from" in capsys.readouterr().out
    client = MlflowClient(tracking_uri=mlflow_uri)
    experiment = client.get_experiment_by_name("dash-e2e")
    runs = client.search_runs([experiment.experiment_id], "tags.`sslsteal.kind` = 'trial'")
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)

    checked: dict[str, int] = {}
    for page_path in sorted((tmp_path / "site").glob("*.html")):
        page = Page(page_path)
        if page_path.stem != "index":
            assert "experiment dash-e2e 4 of 4 trials finished" in page.all_text, page_path.stem
        assert f"from {mlflow_uri}" in page.all_text
        for t in page.data_tables():
            a = t["attrs"]
            rows_fields = json.loads(a["data-rows"])
            if a["data-aggregate"] not in ("mean", "pooled") or json.loads(a["data-kind"]) != "trial" or not all(f.startswith("params.") for f in rows_fields):
                continue
            statuses, filters = json.loads(a["data-status"]), json.loads(a["data-filters"])
            for row in t["rows"]:
                group = json.loads(row["attrs"]["data-group"])
                members = [
                    r
                    for r in runs
                    if r.info.status in statuses
                    and all(
                        any(_numbers_equal(r.data.params.get(f.removeprefix("params.")), v) for v in (w if isinstance(w, list) else [w]))
                        for f, w in filters.items()
                    )
                    and all(_shown(r.data.params.get(f.removeprefix("params."))) == v for f, v in group.items())
                ]
                assert members, (page_path.stem, group)
                for cell in row["cells"]:
                    field = cell["attrs"].get("data-field", "")
                    if "data-n" not in cell["attrs"]:
                        continue
                    if field == "run.duration_s":
                        values = [(r.info.end_time - r.info.start_time) / 1000 for r in members]
                    else:
                        values = [r.data.metrics[field] for r in members if field in r.data.metrics and not math.isnan(r.data.metrics[field])]
                    if not values:
                        assert cell["attrs"]["data-n"] == "0" and cell["text"] == "—"
                        continue
                    mean, lo, hi = interval(values)
                    if lo is not None and (within := bounds(field)) is not None:  # the field's range (tested above)
                        lo, hi = max(lo, within[0]), min(hi, within[1])
                    assert int(cell["attrs"]["data-n"]) == len(values), (page_path.stem, group, field)
                    assert float(cell["attrs"]["data-mean"]) == pytest.approx(mean, rel=1e-12)
                    assert float(cell["attrs"]["data-lo"]) == pytest.approx(lo, rel=1e-9) and float(cell["attrs"]["data-hi"]) == pytest.approx(hi, rel=1e-9)
                    checked[page_path.stem] = checked.get(page_path.stem, 0) + 1
    # methods, losses, queries and the defense trade-off all showed these runs, every cell recomputed
    assert {"methods", "losses", "queries", "defenses", "health"} <= set(checked), checked
    assert sum(checked.values()) >= 30, checked


# --- the pages in a browser -----------------------------------------------------------------------------------------


@pytest.mark.skipif(find_chromium() is None, reason="Chromium is not installed (Debian: apt-get install chromium)")
def test_pages_load_in_headless_chromium(tmp_path: Path) -> None:
    pools = {"mse": "cifar10:test[:9000]", "sliced_wasserstein": "cifar10:train"}  # a confounder: long series names
    runs = [
        trial(
            "exp",
            {"attack.loss": loss, "attack.query_data": pool, "attack.queries": q, "attack.seed": s},
            {"acc.cifar10": 30 + q / 500 + s + (loss == "mse"), "gain_recovered.cifar10": 0.5},
        )
        for loss, pool in pools.items()
        for q in (500, 1000, 5000)
        for s in (0, 1)
    ]
    panels = [
        {"kind": "line", "title": "acc", "x": "params.attack.queries", "y": "acc.cifar10", "series": "params.attack.loss", "log_x": True},
        {"kind": "table", "title": "t", "rows": ["params.attack.loss", "params.attack.queries"], "columns": ["acc.<dataset>"]},
    ]
    build(tmp_path, {"queries": dashboard(panels=panels)}, runs)
    site = tmp_path / "site"
    broken = site / "broken.html"  # a control: the checks below must see a script error and a missing file
    broken.write_text(
        '<!doctype html><html><head><link rel="icon" href="data:,"></head><body><img src="missing.png"><script>undefined_fn()</script></body></html>'
    )
    legend_fits = (  # every legend text ends inside its plot's drawing
        "[...document.querySelectorAll('svg.plot')].every(s => [...s.querySelectorAll('.legend text')]"
        ".every(t => t.getBBox().x + t.getBBox().width <= s.viewBox.baseVal.width))"
    )
    legend = "[...document.querySelectorAll('svg.plot .legend text')].map(t => t.textContent).join('|')"
    expressions = [
        "document.title",
        "document.querySelectorAll('svg.plot circle.point').length",
        "document.querySelectorAll('table.data tbody tr').length",
        legend_fits,
        legend,
    ]
    with Browser() as browser:
        index = browser.open((site / "index.html").as_uri(), expressions, screenshot=tmp_path / "index.png")
        page = browser.open((site / "queries.html").as_uri(), expressions, screenshot=tmp_path / "queries.png")
        control = browser.open(broken.as_uri(), expressions)
    assert index.errors == [] and index.values[:3] == ["sslsteal dashboards", 0, 0]
    assert page.errors == [] and page.values[0] == "T (queries)"
    assert page.values[1] == 6 and page.values[2] == 6 + 6  # 2 losses x 3 budgets: plot points, the plot's values and the table's rows
    assert page.values[3] is True and page.values[4].startswith("loss, query data|mse, cifar10:test[:9000]|sliced_wasserstein, cifar10:train")
    assert any("undefined_fn" in e for e in control.errors) and any("missing.png" in e or "ERR_FILE_NOT_FOUND" in e for e in control.errors), control.errors
    for shot in ("index.png", "queries.png"):
        data = (tmp_path / shot).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_the_dashboards_package_imports_no_mlflow_ray_or_torch() -> None:
    code = (
        "import sys, sslsteal.dashboards.cli, sslsteal.dashboards.site, sslsteal.orchestration.run_records; "
        "print(sorted(m for m in ('mlflow', 'ray', 'torch', 'optuna') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert done.stdout.strip() == "[]"
