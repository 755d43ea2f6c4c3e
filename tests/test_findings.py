"""Findings as code and the generated Markdown blocks: each difference and its interval recomputed by hand (paired t
over per-seed differences, Welch's t with its Satterthwaite degrees of freedom), verdicts read from the interval,
sides averaged per seed, blocks rewritten in place with the prose around them untouched, and `--check`."""

from __future__ import annotations

import math
import statistics
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from scipy import stats

from sslsteal.core.stats import Estimate, difference_interval
from sslsteal.dashboards import cli
from sslsteal.dashboards.findings import HELD, INCONCLUSIVE, NOT_HELD, NOT_MEASURED, measure, verdict
from sslsteal.dashboards.markdown import BlockError, cost_rows, experiments, regenerate
from sslsteal.dashboards.spec import Dashboard, Definitions, Finding, PaperValues
from sslsteal.orchestration.records import RunRecord

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def run(experiment: str, seed: int, metrics: dict[str, float], status: str = "FINISHED", seconds: float = 60.0, **config: object) -> RunRecord:
    """A finished trial with `attack.seed`; `loss=` and `sigma=` become `attack.loss` and `defense.sigma`."""
    section = {"loss": "attack", "sigma": "defense"}
    params = {"attack.seed": seed, **{f"{section[k]}.{k}": v for k, v in config.items()}}
    tags = {"sslsteal.kind": "trial", "mlflow.source.git.commit": "abcdef1234567890"}
    return RunRecord(
        f"{experiment}-{seed}-{sorted(params.items())}",
        experiment,
        status,
        {k: str(v) for k, v in params.items()},
        metrics,
        tags,
        T0,
        T0 + timedelta(seconds=seconds),
    )


def finding(**fields: object) -> Finding:
    base = {"id": "f", "claim": "A beats B", "paper": "1 vs 0", "metric": "acc.cifar10", "expect": "greater"}
    return Finding.model_validate(base | fields)


# --- the statistics, by hand ----------------------------------------------------------------------------------------


def test_paired_difference_is_the_t_interval_of_per_seed_differences() -> None:
    a, b = [60.0, 62.5, 61.0], [55.0, 58.0, 57.5]
    d = [x - y for x, y in zip(a, b, strict=True)]
    mean, sd = statistics.fmean(d), statistics.stdev(d)
    half = stats.t.ppf(0.975, len(d) - 1) * sd / math.sqrt(len(d))
    est = difference_interval(a, b, paired=True)
    assert est is not None and est.n == 3
    assert (est.mean, est.lo, est.hi) == pytest.approx((mean, mean - half, mean + half), rel=1e-12)


def test_unpaired_difference_is_welchs_interval() -> None:
    a, b = [60.0, 62.5, 61.0, 59.0], [55.0, 58.0, 51.5]
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))  # Welch-Satterthwaite
    mean = statistics.fmean(a) - statistics.fmean(b)
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    est = difference_interval(a, b, paired=False)
    assert est is not None and (est.mean, est.lo, est.hi) == pytest.approx((mean, mean - half, mean + half), rel=1e-9)
    assert difference_interval([1.0], [0.0, 2.0], paired=False) == Estimate(1, 0.0)  # one value: no interval
    assert difference_interval([], [1.0], paired=False) is None
    with pytest.raises(ValueError, match="equal sizes"):
        difference_interval([1.0, 2.0], [1.0], paired=True)


@pytest.mark.parametrize(
    ("lo", "hi", "expect", "margin", "wanted"),
    [
        (0.5, 2.0, "greater", 0.0, HELD),
        (-0.5, 2.0, "greater", 0.0, INCONCLUSIVE),
        (-2.0, -0.5, "greater", 0.0, NOT_HELD),
        (-2.0, -0.5, "less", 0.0, HELD),
        (0.5, 2.0, "less", 0.0, NOT_HELD),
        (-1.0, 2.0, "close", 3.0, HELD),
        (-1.0, 4.0, "close", 3.0, INCONCLUSIVE),
        (3.5, 6.0, "close", 3.0, NOT_HELD),
        (-6.0, -3.0, "close", 3.0, NOT_HELD),
    ],
)
def test_a_verdict_reads_the_whole_interval(lo: float, hi: float, expect: str, margin: float, wanted: str) -> None:
    assert verdict(Estimate(3, (lo + hi) / 2, lo, hi), expect, margin) == wanted


def test_no_interval_is_inconclusive_and_no_runs_not_measured() -> None:
    assert verdict(Estimate(1, 5.0), "greater") == INCONCLUSIVE
    assert verdict(None, "greater") == NOT_MEASURED


# --- findings from runs ---------------------------------------------------------------------------------------------


def test_sides_pair_by_seed_and_average_configurations_per_seed() -> None:
    records = [run("e", s, {"acc.cifar10": 60.0 + s}, loss="mse") for s in (0, 1, 2)]
    records += [run("e", s, {"acc.cifar10": 50.0 + 2 * s}, loss="wasserstein") for s in (0, 1, 2)]
    records += [run("e", s, {"acc.cifar10": 40.0 + 2 * s}, loss="barlow") for s in (0, 1, 2)]
    records += [run("e", 3, {"acc.cifar10": 0.0}, status="FAILED", loss="mse"), run("other", 0, {"acc.cifar10": 99.0}, loss="mse")]
    f = finding(
        a={"experiment": "e", "filters": {"params.attack.loss": "mse"}, "label": "mse"},
        b={"experiment": "e", "filters": {"params.attack.loss": ["wasserstein", "barlow"]}, "label": "bad"},
    )
    out = measure(f, records)
    assert out.a.per_seed == {"0": 60.0, "1": 61.0, "2": 62.0} and out.b is not None and out.b.per_seed == {"0": 45.0, "1": 47.0, "2": 49.0}
    assert out.paired and out.difference == difference_interval([60.0, 61.0, 62.0], [45.0, 47.0, 49.0], paired=True)
    assert out.verdict == HELD


def test_seeds_that_differ_are_compared_unpaired_and_minus_subtracts_within_a_run() -> None:
    records = [run("e", s, {"acc.cifar10": 60.0 + s, "legit_acc.cifar10": 65.0}, sigma=0) for s in (0, 1, 2)]
    records += [run("e", s, {"acc.cifar10": 50.0 + s, "legit_acc.cifar10": 64.0 - s}, sigma=4) for s in (3, 4)]
    f = finding(
        metric="acc.cifar10",
        minus="legit_acc.cifar10",
        a={"experiment": "e", "filters": {"params.defense.sigma": 0}, "label": "no noise"},
        b={"experiment": "e", "filters": {"params.defense.sigma": 4}, "label": "noise"},
    )
    out = measure(f, records)
    assert out.a.per_seed == {"0": -5.0, "1": -4.0, "2": -3.0} and out.b is not None and out.b.per_seed == {"3": -8.0, "4": -6.0}
    assert not out.paired and out.difference == difference_interval([-5.0, -4.0, -3.0], [-8.0, -6.0], paired=False)


def test_a_side_may_read_its_own_metric_and_a_finding_may_compare_with_a_value() -> None:
    records = [run("t", s, {"transfer.fgsm.knockoff.0.05": 0.6 + s / 100, "transfer.fgsm.stolen.0.05": 0.3}) for s in (0, 1, 2)]
    f = finding(
        metric="transfer.fgsm.knockoff.0.05",
        a={"experiment": "t", "label": "knockoff"},
        b={"experiment": "t", "metric": "transfer.fgsm.stolen.0.05", "label": "stolen"},
    )
    out = measure(f, records)
    assert out.paired and out.difference is not None and out.difference.mean == pytest.approx(0.31) and out.verdict == HELD
    p = [run("w", s, {"ownership.watermark.p_value": v}) for s, v in enumerate([1e-4, 2e-3, 0.3])]
    below = measure(finding(metric="ownership.watermark.p_value", a={"experiment": "w", "label": "copies"}, value=0.05, expect="less"), p)
    assert below.b is None and below.difference is not None
    assert below.difference.mean == pytest.approx(statistics.fmean([1e-4, 2e-3, 0.3]) - 0.05) and below.verdict == INCONCLUSIVE
    empty = measure(finding(a={"experiment": "nothing", "label": "x"}, value=0.0), p)
    assert empty.verdict == NOT_MEASURED


def test_a_finding_definition_is_checked() -> None:
    with pytest.raises(ValueError, match="exactly one of b"):
        finding(a={"experiment": "e", "label": "a"})
    with pytest.raises(ValueError, match="margin"):
        finding(a={"experiment": "e", "label": "a"}, value=0.0, expect="close")
    with pytest.raises(ValueError, match=r"unknown field 'acc_ratioo\.cifar10'"):
        finding(metric="acc_ratioo.cifar10", a={"experiment": "e", "label": "a"}, value=0.0)
    with pytest.raises(ValueError, match="repeated: f"):
        Dashboard.model_validate(
            {
                "title": "t",
                "experiments": ["e"],
                "panels": [{"kind": "findings", "title": "f", "findings": [finding(a={"experiment": "e", "label": "a"}, value=0.0).model_dump()] * 2}],
            }
        )


# --- generated Markdown blocks --------------------------------------------------------------------------------------


def definitions() -> Definitions:
    table = {"kind": "table", "title": "losses", "rows": ["params.attack.loss"], "columns": ["acc.cifar10"]}
    found = {
        "kind": "findings",
        "title": "F",
        "findings": [
            finding(a={"experiment": "e", "filters": {"params.attack.loss": "mse"}, "label": "mse"}, b={"experiment": "f", "label": "other"}).model_dump()
        ],
    }
    boards = {
        "losses": Dashboard.model_validate({"title": "L", "experiments": ["e"], "panels": [table]}),
        "findings": Dashboard.model_validate({"title": "F", "experiments": ["e", "f"], "panels": [found]}),
    }
    return Definitions(boards, PaperValues(source="test"))


DOC = """# Results

Prose before, kept.
<!-- sslsteal:table dashboard=losses panel=0 experiment=e -->
stale table
<!-- sslsteal:end -->
Prose between.
<!-- sslsteal:findings dashboard=findings panel=0 -->
<!-- sslsteal:end -->
<!-- sslsteal:cost experiments=e,f -->
<!-- sslsteal:end -->
Prose after.
"""


def block_runs() -> list[RunRecord]:
    runs = [run("e", s, {"acc.cifar10": 60.0 + s}, loss="mse", seconds=3600.0) for s in (0, 1, 2)]
    runs += [run("f", s, {"acc.cifar10": 50.0 + s}, seconds=1800.0) for s in (0, 1, 2)]
    sweep = RunRecord("sweep-e", "e", "FINISHED", {"trials": "3"}, {}, {"sslsteal.kind": "sweep"}, T0, T0 + timedelta(hours=2))
    return [*runs, sweep]


def test_blocks_are_rewritten_in_place_and_the_prose_stays() -> None:
    new = regenerate(DOC, definitions(), block_runs())
    assert "stale table" not in new
    for prose in ("Prose before, kept.", "Prose between.", "Prose after."):
        assert new.count(prose) == 1
    assert "| mse | 3 | 0, 1, 2 | 61.00 [58.52, 63.48] |" in new  # statistics.fmean 61, t(0.975, 2) * 1/sqrt(3) = 2.48
    assert (
        "| A beats B | 1 vs 0 | mse: 61.00 [58.52, 63.48] (3 seeds) | other: 51.00 [48.52, 53.48] (3 seeds) | 10.00 [10.00, 10.00] (paired by seed) | **held** |"
        in new
    )
    assert "| e | 3 | 0 | abcdef1 | 1.00 | 3.00 |" in new and "| f | 3 | 0 | abcdef1 | 0.50 | 1.50 |" in new  # three trials at once
    assert regenerate(new, definitions(), block_runs()) == new  # nothing depends on when it was built
    assert experiments(definitions(), DOC) == ["e", "f"]


def test_cpu_hours_count_each_trials_reserved_cpus() -> None:
    two = RunRecord("r", "e", "FINISHED", {}, {}, {"sslsteal.kind": "trial", "sslsteal.trial_cpus": "2"}, T0, T0 + timedelta(hours=1))
    assert cost_rows([two], ["e"])[0][-1] == "2.00"


def test_wall_hours_count_the_time_some_trial_ran_not_the_gap_between_sessions() -> None:
    """Two overlapping trials (0-1 h, 0.5-1.5 h) and, a day later, a resumed one (25-26 h): 2.5 wall hours, 3 CPU-hours,
    though the sweep's parent run stays open for 26 hours."""
    spans = [(0.0, 1.0), (0.5, 1.5), (25.0, 26.0)]
    trials = [
        RunRecord(f"t{i}", "e", "FINISHED", {}, {}, {"sslsteal.kind": "trial"}, T0 + timedelta(hours=a), T0 + timedelta(hours=b))
        for i, (a, b) in enumerate(spans)
    ]
    parent = RunRecord("sweep", "e", "FINISHED", {}, {}, {"sslsteal.kind": "sweep"}, T0, T0 + timedelta(hours=26))
    assert cost_rows([*trials, parent], ["e"])[0][-2:] == ["2.50", "3.00"]


def test_bad_markers_are_named() -> None:
    for text, message in (
        ("<!-- sslsteal:table dashboard=nope panel=0 experiment=e -->\n<!-- sslsteal:end -->", "unknown dashboard 'nope'"),
        ("<!-- sslsteal:table dashboard=losses panel=3 experiment=e -->\n<!-- sslsteal:end -->", "has no panel 3"),
        ("<!-- sslsteal:table dashboard=losses panel=0 -->\n<!-- sslsteal:end -->", "missing experiment="),
        ("<!-- sslsteal:findings dashboard=losses panel=0 -->\n<!-- sslsteal:end -->", "not a findings panel"),
        ("<!-- sslsteal:chart dashboard=losses -->\n<!-- sslsteal:end -->", "unknown block sslsteal:chart"),
    ):
        with pytest.raises(BlockError, match=message):
            regenerate(text, definitions(), block_runs())


def test_check_exits_1_on_a_stale_file_and_0_once_rewritten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from sslsteal.dashboards import spec
    from sslsteal.orchestration import run_records

    monkeypatch.setattr(spec, "load_definitions", lambda folder: definitions())
    monkeypatch.setattr(run_records, "fetch_records", lambda uri, names: [r for r in block_runs() if r.experiment in names])
    doc = tmp_path / "RESULTS.md"
    doc.write_text(DOC)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert cli.main(["--markdown", str(doc), "--check", "--tracking-uri", uri]) == 1
    assert doc.read_text() == DOC and "generated lines differ" in capsys.readouterr().out
    assert cli.main(["--markdown", str(doc), "--tracking-uri", uri]) == 0
    assert cli.main(["--markdown", str(doc), "--check", "--tracking-uri", uri]) == 0
    doc.write_text("<!-- sslsteal:table dashboard=nope panel=0 experiment=e -->\n<!-- sslsteal:end -->\n")
    assert cli.main(["--markdown", str(doc), "--check", "--tracking-uri", uri]) == 2
    assert "unknown dashboard 'nope'" in capsys.readouterr().err
    assert cli.main(["--check", "--tracking-uri", uri]) == 2
