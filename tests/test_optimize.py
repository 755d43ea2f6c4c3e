"""`sslsteal optimize`: planning and validation (no Ray), the define-by-run space, resumable studies and the table
(Optuna only), the searcher/pruner hooks on a real local Ray (dummy trainable), and end to end with the tiny victim,
a real MLflow server and an Optuna SQLite storage, run twice to show the studies continue."""

from __future__ import annotations

import csv
import itertools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from conftest import REPO

from sslsteal.cli import main
from sslsteal.specs.base import ConfigError
from sslsteal.specs.optimize import OptimizePlan, cover_points, plan_optimize

CPU_FILE = REPO / "sweeps" / "cpu" / "best_loss_per_budget.yaml"
TINY = str(REPO / "sweeps" / "victims" / "tiny.yaml")


def _write(tmp_path: Path, data: dict[str, Any], name: str = "opt.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def _sweep(**optimize: Any) -> dict[str, Any]:
    return {
        "name": "opt",
        "victim": TINY,
        "attack": {
            "method": {"choice": ["direct", "recreate_head"]},
            "strategy": {"choice": ["once", "augmented"]},
            "loss": {"choice": ["mse", "infonce"]},
            "loss_params": {"temperature": {"loguniform": [0.05, 0.5]}},
            "views": {"choice": [2, 3]},
            "lr": {"loguniform": [1.0e-4, 1.0e-2]},
            "epochs": 2,
        },
        "optimize": {"budgets": [200, 400], "trials_per_budget": 3} | optimize,
    }


# --- planning -----------------------------------------------------------------------------------------------------


def test_the_cpu_file_plans_three_studies_over_the_losses() -> None:
    plan = plan_optimize(CPU_FILE)
    o = plan.optimize
    assert o.budgets == [500, 1000, 9000] and o.objective == "val_acc" and o.resolved_direction == "maximize"
    assert plan.study_name(o.budgets[0]) == "cpu-best-loss-per-budget-q500"
    assert set(plan.losses()) >= {"mse", "infonce", "softnn"}
    assert len(cover_points(plan)) == len(plan.losses()) <= o.trials_per_budget
    assert plan.param_space(9000)["attack"]["queries"] == 9000 and "loss" not in plan.param_space(9000)["attack"]
    assert plan.tree["evaluate"]["monitor_images"] > 0
    victim = CPU_FILE.parent / plan.sweep.spec.victim
    assert victim.is_file() and plan.sweep.spec.run.resources_per_trial.cpu == 1
    header = CPU_FILE.read_text().split("\nname:")[0]
    assert "Trials: 18" in header and "sslsteal optimize sweeps/cpu/best_loss_per_budget.yaml" in header
    assert o.trials_per_budget * len(o.budgets) == 18


def test_the_recipe_axes_are_searchable(tmp_path: Path) -> None:
    """Training length (steps, or the default's min_steps floor), batch size, lr and augmentation strength are
    spaces Optuna can search, and the ASHA bound covers the longest length any of them asks for."""
    from sslsteal.orchestration.searcher import most_epochs

    data = _sweep()
    data["attack"] = {
        "loss": "softnn",
        "steps": {"choice": [480, 1500]},
        "batch_size": {"choice": [64, 128]},
        "lr": {"loguniform": [3.0e-4, 3.0e-3]},
        "augment": {"choice": ["weak", "simclr"]},
    }
    plan = plan_optimize(_write(tmp_path, data))
    assert {("attack", key) for key in ("steps", "batch_size", "lr", "augment")} <= set(plan.sweep.spaces)
    assert most_epochs(plan) >= 1500
    data["attack"] = {"loss": "softnn", "min_steps": {"choice": [500, 3000]}}
    assert most_epochs(plan_optimize(_write(tmp_path, data))) >= 3000


def test_dry_run_plans_without_ray(tmp_path: Path) -> None:
    code = (
        "import sys\nfrom sslsteal.cli import main\n"
        f"assert main(['optimize', {str(CPU_FILE)!r}, '--dry-run']) == 0\n"
        "assert 'ray' not in sys.modules and 'optuna' not in sys.modules, 'planning imported ray or optuna'\n"
    )
    env = {**os.environ, "SSLSTEAL_CACHE": str(tmp_path / "cache"), "SSLSTEAL_DATA": str(tmp_path / "no-data")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "study cpu-best-loss-per-budget-q9000: attack.queries = 9000" in proc.stdout


def test_every_problem_is_reported_with_its_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _sweep(budgets=[200, 20000], cover=["attack.lr"], objective="val_acc.stl10", storage="not a url")
    data["attack"] |= {"queries": 100, "lr": {"loguniform": [-1.0, 1.0e-2]}, "batch_size": {"grid": [64, 128]}}
    data["evaluate"] = {"downstream": ["cifar10"]}
    path = _write(tmp_path, data)
    assert main(["optimize", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    for needle in (
        "optimize.storage: not a SQLAlchemy URL",
        "attack.queries: set per study by optimize.budgets",
        "attack.lr.loguniform: bounds must be positive",
        "attack.batch_size.grid: an Optuna search draws values",
    ):
        assert needle in err, err
    data["attack"] |= {"lr": {"uniform": [1.0e-4, 1.0e-2]}, "batch_size": {"choice": [64, 128]}, "epochs": {"uniform": [1, 3]}}
    data["attack"].pop("queries")
    data["attack"]["loss"] = {"choice": ["mse", "cosine"]}
    data["optimize"].pop("storage")
    assert main(["optimize", str(_write(tmp_path, data)), "--dry-run"]) == 2
    err = capsys.readouterr().err
    for needle in (
        "optimize.budgets[1]: 20000 queries need 20000 images but cifar10:test[:9000] has 9000",
        "attack.epochs.uniform: Input should be a valid integer",
        "attack.loss_params.temperature: no loss in attack.loss (mse, cosine) takes 'temperature'",
        "optimize.cover[0]: attack.lr is not a searched choice",
        "optimize.objective: stl10 is not among evaluate.downstream",
    ):
        assert needle in err, err


def test_test_accuracy_is_never_the_objective(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for objective in ("acc", "acc.cifar10", "gain_recovered"):
        assert main(["optimize", str(_write(tmp_path, _sweep(objective=objective))), "--dry-run"]) == 2
        assert "scored on the test split, which is logged but never optimised; use val_acc" in capsys.readouterr().err
    plan = plan_optimize(_write(tmp_path, _sweep()))
    assert plan.sweep.tree["evaluate"]["val_images"] == plan.optimize.val_images  # the objective's validation images


def test_conditional_values_validate_only_where_they_apply(tmp_path: Path) -> None:
    """recreate_head forces the augmented strategy, so method x strategy needs no grid-style check; a fixed
    temperature is kept for infonce and dropped for mse."""
    data = _sweep()
    data["attack"]["loss_params"] = {"temperature": 0.2}
    plan = plan_optimize(_write(tmp_path, data))
    assert plan.space.loss_params == {"temperature": 0.2}
    with pytest.raises(ConfigError, match=r"attack\.views: never used"):
        data["attack"]["strategy"] = "once"
        data["attack"]["method"] = "direct"
        plan_optimize(_write(tmp_path, data))


# --- the define-by-run space ----------------------------------------------------------------------------------------


def _draw(plan: OptimizePlan, fixed: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial(fixed)
    trial = study.ask()
    config = plan.space(trial)
    return trial.params, config


def test_the_space_draws_what_applies_to_each_trial(tmp_path: Path) -> None:
    plan = plan_optimize(_write(tmp_path, _sweep()))
    params, config = _draw(plan, {"attack/method": "direct", "attack/strategy": "once", "attack/loss": "mse"})
    assert set(params) == {"attack/method", "attack/strategy", "attack/loss", "attack/lr"}
    assert config == {"attack": {"method": "direct", "strategy": "once", "loss": "mse", "lr": params["attack/lr"]}}
    params, config = _draw(plan, {"attack/method": "direct", "attack/strategy": "augmented", "attack/loss": "infonce"})
    assert {"attack/loss_params/temperature", "attack/views"} <= set(params)
    assert config["attack"]["loss_params"] == {"temperature": params["attack/loss_params/temperature"]}
    params, config = _draw(plan, {"attack/method": "recreate_head", "attack/loss": "mse"})
    assert config["attack"]["strategy"] == "augmented" and "attack/strategy" not in params and "attack/views" in params
    points = cover_points(plan_optimize(_write(tmp_path, _sweep(cover=["attack.loss"], cover_values={"attack.loss_params.temperature": 0.1}))))
    assert points == [{"attack/loss": "mse"}, {"attack/loss": "infonce", "attack/loss_params/temperature": 0.1}]


# --- studies and the table (Optuna only) ------------------------------------------------------------------------------


def _fake_trials(study: optuna.Study, plan: OptimizePlan, values: list[tuple[str, float | None]]) -> None:
    """Trials told as OptunaSearch would: params drawn by the plan's space, metrics as user attributes."""
    for loss, value in values:
        study.enqueue_trial({"attack/method": "direct", "attack/strategy": "once", "attack/loss": loss})
        trial = study.ask()
        plan.space(trial)
        if value is None:
            trial.report(30.0, 1)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        trial.set_user_attr("metrics", {"acc.cifar10": value, "victim_acc.cifar10": 48.0, "acc_ratio.cifar10": value / 48.0})
        study.tell(trial, value)


def test_a_second_invocation_loads_the_same_study_and_refuses_a_changed_sweep(tmp_path: Path) -> None:
    from sslsteal.orchestration.studies import COVER, load_studies, prepare_study

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    plan = plan_optimize(_write(tmp_path, _sweep(storage=url, cover=["attack.loss"])))
    storage = optuna.storages.RDBStorage(url)
    studies = load_studies(plan, storage)
    study, existing = studies[200]
    assert existing == 0 and set(optuna.get_all_study_names(storage)) == {"opt-q200", "opt-q400"}
    prepare_study(plan, study, 200, "victim-a")
    assert len(study.trials) == 2  # the cover points, waiting
    study.ask()  # left RUNNING, as by an interrupted invocation
    again, existing = load_studies(plan, storage)[200]
    assert again._study_id == study._study_id and existing == 2
    prepare_study(plan, again, 200, "victim-a")
    states = [t.state.name for t in again.trials]
    assert states == ["FAIL", "WAITING", "WAITING"], states  # the stale trial failed; its cover point enqueued anew
    cover = [t.user_attrs[COVER] for t in again.trials]
    assert cover == [cover[0], cover[1], cover[0]] and cover[0] != cover[1]
    prepare_study(plan, load_studies(plan, storage)[200][0], 200, "victim-a")  # a third invocation: every point is held
    assert len(again.trials) == 3
    with pytest.raises(ConfigError, match="different victim"):
        prepare_study(plan, again, 200, "victim-b")
    changed = plan_optimize(_write(tmp_path, _sweep(storage=url)), ["attack.lr={loguniform: [1.0e-3, 1.0e-2]}"])
    with pytest.raises(ConfigError, match=r"study opt-q200 .* different fingerprint"):
        load_studies(changed, storage)


def test_the_table_shows_the_best_per_budget_and_per_loss(tmp_path: Path) -> None:
    from sslsteal.orchestration.report import summarize, write_tables

    plan = plan_optimize(_write(tmp_path, _sweep()))
    rows = []
    for budget, values in ((200, [("mse", 40.0), ("infonce", 42.5), ("mse", 41.0), ("infonce", None)]), (400, [("mse", 44.0)])):
        study = optuna.create_study(study_name=plan.study_name(budget), direction="maximize", sampler=optuna.samplers.RandomSampler(seed=1))
        _fake_trials(study, plan, values)
        rows.append(summarize(study, plan, budget, "acc.cifar10"))
    assert (rows[0].best_loss, rows[0].best_value, rows[0].per_loss) == ("infonce", 42.5, {"mse": 41.0, "infonce": 42.5})
    assert (rows[0].complete, rows[0].pruned, rows[0].failed) == (3, 1, 0)
    assert rows[1].per_loss == {"mse": 44.0, "infonce": None} and rows[1].importances == {}
    assert "attack/lr" in rows[0].importances
    text, files = write_tables(rows, plan, "cifar10", tmp_path / "out")
    table = list(csv.DictReader(files[0].read_text().splitlines()))
    assert [(r["budget"], r["best loss"], r["best mse"], r["best infonce"]) for r in table] == [("200", "infonce", "41", "42.5"), ("400", "mse", "44", "—")]
    assert table[0]["victim acc.cifar10"] == "48" and table[0]["trials (complete/pruned/failed)"] == "3/1/0"
    assert "| 200 | infonce | 42.5 |" in text and "Parameter importances" in text
    assert files[2].read_text() == text


# --- Ray Tune: concurrency and pruning with a dummy trainable ------------------------------------------------------------


@pytest.mark.slow
def test_tune_runs_optuna_trials_concurrently_and_prunes(tmp_path: Path) -> None:
    """Ray Tune before a 2026 fix ran a custom searcher one trial at a time: the two cover trials meet at a barrier,
    which only passes when both run at once under max_concurrent_trials=2. The median stopping rule (2 other trials
    at an epoch) compares no cover trial, and stops the hopeless infonce trial enqueued third, which starts once
    both are done: Tune ends it before its final report and Optuna records it PRUNED."""
    import time

    import ray
    from ray import tune

    from sslsteal.orchestration.searcher import make_scheduler, make_searcher

    data = _sweep(budgets=[200], trials_per_budget=6, pruner={"name": "median", "grace_period": 2, "startup_trials": 2}, cover=["attack.loss"])
    data["attack"] = {"loss": {"choice": ["mse", "infonce"]}, "lr": {"loguniform": [1.0e-4, 1.0e-2]}, "epochs": 4}
    plan = plan_optimize(_write(tmp_path, data))
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    barrier = tmp_path / "barrier"

    def barrier_wait(folder: Path, arrive: str, wait_for: list[str], timeout: float = 120.0) -> None:
        """A file barrier: mark `arrive` (when given), wait until every name in `wait_for` is marked, or fail.
        Defined in the test: Ray's workers cannot import this test module."""
        folder.mkdir(parents=True, exist_ok=True)
        if arrive:
            (folder / arrive).touch()
        deadline = time.monotonic() + timeout
        while not all((folder / name).exists() for name in wait_for):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{arrive or 'a later trial'}: {wait_for} not all reached within {timeout} s")
            time.sleep(0.05)

    def trainable(config: dict[str, Any]) -> None:  # mse "learns", infonce does not
        number = config["optuna"]["trial"]
        if number < 2:  # the cover trials start together, or time out when Tune runs them one at a time
            barrier_wait(barrier, f"started-{number}", ["started-0", "started-1"])
        else:  # later trials start reporting once Tune has taken every result of both cover trials
            barrier_wait(barrier, "", ["done-0", "done-1"])
        good = config["attack"]["loss"] == "mse"
        for epoch in range(1, 5):
            tune.report({"epoch": float(epoch), "val.knn_acc": 20.0 + (5.0 * epoch if good else 0.0)})
        tune.report({"queries_used": 200.0, "acc.cifar10": 40.0 if good else 20.0, "val.knn_acc": 40.0 if good else 20.0})
        if number < 2:  # report() returns once Tune asks for the next result, i.e. after it took this one
            (barrier / f"done-{number}").touch()

    searcher = make_searcher(plan, 200, "acc.cifar10", storage, seed=0)
    for point in [*cover_points(plan), {"attack/loss": "infonce"}]:  # the third trial is compared with both cover trials
        searcher.study.enqueue_trial(point)
    ray.init(address="local", num_cpus=2, include_dashboard=False)  # not a cluster another job started here
    try:
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}),
            param_space=plan.param_space(200),
            tune_config=tune.TuneConfig(search_alg=searcher, scheduler=make_scheduler(plan), num_samples=6, max_concurrent_trials=2),
            run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), name="dummy", verbose=0),
        )
        results = tuner.fit()
    finally:
        ray.shutdown()
    assert results.num_errors == 0, [str(r.error) for r in results if r.error]  # a barrier timeout: no overlap
    assert {p.name for p in barrier.iterdir()} == {"started-0", "started-1", "done-0", "done-1"}
    stopped = [r for r in results if "queries_used" not in r.metrics]
    assert stopped and all(r.metrics["training_iteration"] < 5 for r in stopped), [r.metrics for r in results]
    study = optuna.load_study(study_name="opt-q200", storage=storage)
    states = {t.number: (t.state.name, t.params["attack/loss"]) for t in study.trials}
    assert states[0] == ("COMPLETE", "mse") and states[1] == ("COMPLETE", "infonce")  # the cover trials, never compared
    assert states[2] == ("PRUNED", "infonce"), states
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    assert len(pruned) == len(stopped) and all(t.params["attack/loss"] == "infonce" for t in pruned), states
    assert {t.user_attrs["tune_trial_id"] for t in pruned} == {r.metrics["trial_id"] for r in stopped}
    assert all(t.intermediate_values and max(t.intermediate_values) >= 2 for t in pruned)
    assert all(t.user_attrs["metrics"]["acc.cifar10"] == t.value for t in study.trials if t.state.name == "COMPLETE")
    assert sorted(r.config["optuna"]["trial"] for r in results) == list(range(6)) and {r.config["optuna"]["study"] for r in results} == {"opt-q200"}


# --- end to end ---------------------------------------------------------------------------------------------------


def _overlap(runs: list[Any]) -> bool:
    spans = sorted((r.info.start_time, r.info.end_time) for r in runs)
    return any(b[0] < a[1] for a, b in itertools.pairwise(spans))


@pytest.mark.slow
def test_optimize_end_to_end_and_resume(cifar_root: Path, tmp_path: Path, mlflow_uri: str) -> None:
    import ray

    from sslsteal.orchestration.tracking import Tracker

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    sweep = {
        "name": "e2e-opt",
        "victim": TINY,
        "attack": {
            "loss": {"choice": ["mse", "infonce"]},
            "loss_params": {"temperature": {"loguniform": [0.05, 0.5]}},
            "lr": {"loguniform": [3.0e-4, 3.0e-3]},
            "epochs": 2,
            "batch_size": 64,
        },
        "evaluate": {"fidelity_images": 200},
        "service": {"num_cpus": 0},  # the actor takes no core: two 1-CPU trials fit on 2 cores
        "optimize": {
            "budgets": [200, 400],
            "trials_per_budget": 3,
            "cover": ["attack.loss"],
            "sampler": {"n_startup_trials": 2},
            "pruner": {"name": "asha", "grace_period": 1, "monitor_images": 200},
            "storage": url,
        },
        "run": {"max_concurrent_trials": 2, "resources_per_trial": {"cpu": 1}, "data_root": str(cifar_root)},
    }
    path = _write(tmp_path, sweep)
    args = ["optimize", str(path), "--tracking-uri", mlflow_uri, "--storage", str(tmp_path / "tune"), "--output", str(tmp_path / "out"), "--quiet"]
    args += ["--address", "local"]  # never join a cluster another job started with `ray start` on this machine
    try:
        assert main(args) == 0
    finally:
        ray.shutdown()
    storage = optuna.storages.RDBStorage(url)
    assert set(optuna.get_all_study_names(storage)) == {"e2e-opt-q200", "e2e-opt-q400"}
    first = {name: optuna.load_study(study_name=name, storage=storage) for name in ("e2e-opt-q200", "e2e-opt-q400")}
    ids = {name: s._study_id for name, s in first.items()}
    for study in first.values():
        assert [t.number for t in study.trials] == [0, 1, 2]
        assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials) == 3
        assert {t.params["attack/loss"] for t in study.trials[:2]} == {"mse", "infonce"}  # the cover points first
    table = list(csv.DictReader((tmp_path / "out" / "best_per_budget.csv").read_text().splitlines()))
    assert [r["budget"] for r in table] == ["200", "400"] and all(r["best loss"] in ("mse", "infonce") for r in table)
    assert "| budget | best loss |" in (tmp_path / "out" / "best_per_budget.md").read_text()

    tracker = Tracker(mlflow_uri)
    exp = tracker.client.get_experiment_by_name("e2e-opt")
    tops = tracker.client.search_runs([exp.experiment_id], "tags.`sslsteal.kind` = 'optimize'")
    assert len(tops) == 1 and tops[0].info.status == "FINISHED"
    assert {a.path for a in tracker.client.list_artifacts(tops[0].info.run_id, "table")} >= {"table/best_per_budget.csv", "table/best_per_budget.md"}
    studies = tracker.client.search_runs([exp.experiment_id], "tags.`sslsteal.kind` = 'study'")
    assert sorted(r.info.run_name for r in studies) == ["e2e-opt-q200", "e2e-opt-q400"]
    for run in studies:
        assert run.data.tags["mlflow.parentRunId"] == tops[0].info.run_id and run.info.status == "FINISHED"
        assert "best.val_acc.cifar10" in run.data.metrics and run.data.tags["best.loss"] in ("mse", "infonce")
        children = tracker.children(run.info.run_id)
        assert len(children) == 3
        assert _overlap(children), [(c.info.start_time, c.info.end_time) for c in children]
        runs = {(c.data.tags["sslsteal.optuna_state"], c.info.status) for c in children}
        assert runs <= {("COMPLETE", "FINISHED"), ("PRUNED", "KILLED")}, runs  # each Optuna state with its MLflow status

    # a second invocation (a new process, as a user would run it) continues the same studies: one more trial each
    cmd = [sys.executable, "-m", "sslsteal.cli", *args, "--set", "optimize.trials_per_budget=4"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| 200 |" in proc.stdout and "| 400 |" in proc.stdout
    for name, study_id in ids.items():
        study = optuna.load_study(study_name=name, storage=storage)
        assert study._study_id == study_id and [t.number for t in study.trials] == [0, 1, 2, 3]
        assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials) == 4
    assert len(tracker.client.search_runs([exp.experiment_id], "tags.`sslsteal.kind` = 'study'")) == 2  # reused
    table = list(csv.DictReader((tmp_path / "out" / "best_per_budget.csv").read_text().splitlines()))
    assert all(sum(map(int, r["trials (complete/pruned/failed)"].split("/")[:2])) == 4 for r in table)
