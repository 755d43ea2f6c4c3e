"""The shipped results store (`results/cpu/`): docs/RESULTS.md's generated blocks are exactly what the store gives,
every dashboard view builds from it on a fresh checkout, and its runs say which commit made them."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from conftest import REPO

from sslsteal.dashboards import cli
from sslsteal.orchestration.records import GIT_COMMIT, SOURCE_DIRTY

STORE = REPO / "results" / "cpu"
COPIED_FROM = "sslsteal.copied_from"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """Copies of the tracking store and the Optuna storage (reading never touches the committed files)."""
    folder = tmp_path_factory.mktemp("results")
    for name in ("mlflow.db", "optuna.db"):
        if (STORE / name).is_file():
            shutil.copy(STORE / name, folder / name)
    return f"sqlite:///{folder / 'mlflow.db'}", f"sqlite:///{folder / 'optuna.db'}"


def test_results_md_is_what_the_store_gives(store: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    uri, optuna = store
    code = cli.main(["--markdown", str(REPO / "docs" / "RESULTS.md"), "--check", "--tracking-uri", uri, "--optuna-storage", optuna])
    assert code == 0, (
        capsys.readouterr().out
        + "\nregenerate: sslsteal dashboard --markdown docs/RESULTS.md --tracking-uri sqlite:///results/cpu/mlflow.db --optuna-storage sqlite:///results/cpu/optuna.db"
    )


def test_every_dashboard_view_builds_from_the_store(store: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    uri, optuna = store
    assert cli.main(["--tracking-uri", uri, "--optuna-storage", optuna, "--out", str(tmp_path / "site")]) == 0
    pages = {p.stem for p in (tmp_path / "site").glob("*.html")}
    assert pages == {"index"} | {p.stem for p in (REPO / "dashboards").glob("*.yaml") if p.name != "paper_values.yaml"}
    findings = (tmp_path / "site" / "findings.html").read_text()
    verdicts = re.findall(r'data-verdict="([a-z ]+)"', findings)
    assert len(verdicts) >= 15 and set(verdicts) <= {"held", "not held", "inconclusive", "not measured"}


def test_runs_name_their_commit_and_no_ownership_p_value_is_exactly_zero(store: tuple[str, str]) -> None:
    from sslsteal.orchestration.run_records import experiment_names, fetch_records

    uri, _ = store
    records = fetch_records(uri, experiment_names(uri))
    trials = [r for r in records if r.kind == "trial" and COPIED_FROM not in r.tags]
    assert trials, "the store has no trial runs of its own"
    for r in trials:
        assert len(r.tags.get(GIT_COMMIT, "")) == 40, (r.experiment, r.name)
        assert r.tags.get(SOURCE_DIRTY) == "false", (r.experiment, r.name, "made from uncommitted source")
    zeros = [(r.experiment, r.name, k) for r in records for k, v in r.metrics.items() if k.endswith(".p_value") and v == 0.0]
    assert not zeros, f"a p-value of exactly 0 is a bug until shown otherwise: {zeros}"


def test_the_store_holds_no_artifacts_and_stays_small() -> None:
    """What the checkout ships under results/cpu/ (MLflow's local artifact folder beside a store is ignored by git)."""
    import subprocess

    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "results/cpu"], capture_output=True, text=True, check=True).stdout.split()
    files = [REPO / name for name in listed]
    assert REPO / "results" / "cpu" / "mlflow.db" in files
    assert sum(p.stat().st_size for p in files) < 50 * 2**20
    assert not [p for p in files if p.suffix in (".pt", ".pth", ".ckpt")]
