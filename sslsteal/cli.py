"""The `sslsteal` command. Exit codes: 0 success, 2 bad usage or input (one line per problem), 1 a failure while running,
130 interrupted (a sweep continues with `--resume`), 141 the reader of its output went away (`sslsteal validate FILE | head`)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

USAGE_ERROR = 2
RUN_FAILURE = 1
INTERRUPTED = 130
CLOSED_PIPE = 141
"""128 + SIGPIPE: what a shell reports for a command whose reader closed the pipe, as `head` does."""


class UsageError(Exception):
    """Bad input from the user: reported as one line per problem, exit code 2."""


def _victim_train(args: argparse.Namespace) -> int:
    from sslsteal.evaluation.baselines import victim_report
    from sslsteal.specs import base as config
    from sslsteal.specs.victim import VictimSpec
    from sslsteal.victim.checkpoint import load_victim
    from sslsteal.victim.train import get_or_train

    spec = config.load(VictimSpec, args.config)
    if args.data_root:
        spec.data_root = args.data_root
    if args.reference:
        from sslsteal.victim.reference import reference_spec

        spec = reference_spec(spec, args.reference)
    path, trained = get_or_train(spec, config_path=args.config, progress=not args.quiet)  # shipped copies beside the config first
    print(f"checkpoint: {path} ({'trained now' if trained else 'cached'})")
    victim = load_victim(path)
    for key, value in victim_report(victim, spec.data_root).items():
        print(f"{key}: {value:.2f}")
    return 0


def _steal(args: argparse.Namespace) -> int:
    from sslsteal.pipeline.steal import format_table, run_steal
    from sslsteal.specs import base as config
    from sslsteal.specs.steal import StealSpec

    spec = config.load(StealSpec, args.config, args.set)
    result = run_steal(spec, config_path=args.config, progress=not args.quiet)
    print(format_table(result))
    if args.output:
        import json
        from pathlib import Path

        record = {"config": spec.model_dump(mode="json"), "victim": result["victim"], "metrics": result["metrics"]}
        Path(args.output).write_text(json.dumps(record, indent=2))
    if args.save_encoder:
        from sslsteal.pipeline.suspect import save_stolen

        path = save_stolen(result["stolen"], args.save_encoder, victim=result["victim"], attack=spec.attack.model_dump(mode="json"))
        print(f"stolen encoder: {path}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from sslsteal.core.device import select_device
    from sslsteal.evaluation.ownership import MIN_REFERENCES
    from sslsteal.pipeline.steal import flat_ownership_metrics, ownership_results, resolve_victim
    from sslsteal.pipeline.suspect import load_suspect, same_weights
    from sslsteal.specs.evaluate import OWNERSHIP_TESTS
    from sslsteal.victim.reference import get_references

    try:
        OWNERSHIP_TESTS.check_all(args.tests)
    except ValueError as exc:
        raise UsageError(f"--tests: {exc}") from None
    if args.images < 4:
        raise UsageError(f"--images: need at least 4, got {args.images}")
    if not 0 < args.alpha < 1:
        raise UsageError(f"--alpha: must be in (0, 1), got {args.alpha}")
    indices = list(dict.fromkeys(args.references))
    if len(indices) < MIN_REFERENCES or min(indices) < 1:
        raise UsageError(f"--references: need at least {MIN_REFERENCES} distinct reference numbers (1, 2, ...), got {' '.join(map(str, args.references))}")
    tests = list(args.tests) or sorted(OWNERSHIP_TESTS)
    device = select_device()
    try:
        victim = resolve_victim(args.victim, data_root=args.data_root, progress=not args.quiet).to(device)
        suspect, about = load_suspect(args.suspect)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    if victim.predictor is None and "watermark" in tests:
        if args.tests:
            raise UsageError(f"--tests watermark: victim {victim.spec.key} is not watermarked")
        tests.remove("watermark")
    references = [ref.to(device) for ref in get_references(victim, indices, data_root=args.data_root, progress=not args.quiet)]
    same = [ref.spec.key for ref in references if same_weights(suspect, ref.encoder)]
    if same:
        raise UsageError(f"--suspect is reference {same[0]}, which calibrates the tests: leave it out of --references")
    print(f"victim {victim.spec.key}; suspect: {about}; references: {', '.join(ref.spec.key for ref in references)}")
    results, public = ownership_results(
        tests, victim, suspect.to(device), references, images=args.images, root=args.data_root, seed=args.seed, alpha=args.alpha
    )
    print(f"{'test':<24}{'verdict':<14}{'p-value':>10}{'statistic':>11}{'effect':>10}  (alpha {args.alpha:g}; {public} public images)")
    for test, r in results.items():
        p_value = "-" if r.p_value is None else f"{r.p_value:.3g}"
        statistic = "-" if r.statistic is None else f"{r.statistic:.3f}"
        print(f"{test:<24}{r.verdict:<14}{p_value:>10}{statistic:>11}{r.effect:>10.3f}  {r.reason}")
    if args.output:
        import json
        from pathlib import Path

        metrics = flat_ownership_metrics(results, public)
        reasons = {test: r.reason for test, r in results.items() if r.reason}
        references_used = [ref.spec.key for ref in references]
        payload = {"victim": victim.spec.key, "suspect": about, "references": references_used, "metrics": metrics, "inconclusive": reasons}
        Path(args.output).write_text(json.dumps(payload, indent=2))
    return 0


def _serve(args: argparse.Namespace) -> int:
    import os
    import signal
    import time
    from pathlib import Path

    from sslsteal.api.keys import Account, digest, load_keys
    from sslsteal.api.server import start_api, stop_api

    if not 0 < args.port < 65536:
        raise UsageError(f"--port: must be in 1-65535, got {args.port}")
    if args.keys:
        accounts = load_keys(args.keys)
    else:
        key = os.environ.get("SSLSTEAL_API_KEY")
        if not key:
            raise UsageError("--keys: give a KEYS.yaml, or set SSLSTEAL_API_KEY for a single account named 'default'")
        accounts = [Account("default", digest(key), args.budget, None)]
    service = {"budget": args.budget} if args.budget else {}
    served = start_api(
        args.victim,
        accounts,
        host=args.host,
        port=args.port,
        address=args.address,
        state_dir=Path(args.state_dir) if args.state_dir else None,
        service=service,
        replicas=args.replicas,
        data_root=args.data_root,
    )
    print(f"serving {served.victim} at {served.url}/v1/embed for {len(accounts)} account(s); API docs: {served.url}/docs; Ctrl-C stops")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"listening on {args.host}: put TLS in front of it (docs/service.md)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a service manager's stop shuts Serve down like Ctrl-C
    try:
        while True:
            time.sleep(3600)
    finally:
        stop_api()


def _validate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sslsteal.specs.base import ConfigError, load, read_yaml
    from sslsteal.specs.sweep import plan_sweep

    data = read_yaml(args.sweep)
    if "optimize" in data:  # an `sslsteal optimize` file
        from sslsteal.specs.optimize import plan_optimize

        print(plan_optimize(args.sweep, args.set).describe())
        return 0
    if "attack" not in data:  # a victim config
        from sslsteal.specs.victim import VictimSpec, read_victim

        victim = read_victim(Path(args.sweep), args.set)
        if isinstance(victim, VictimSpec):
            print(f"{args.sweep}: victim {victim.key} ({victim.encoder} on {victim.data}, {victim.epochs} epochs)")
        else:
            source = next(f"{key} {getattr(victim, key)}" for key in ("torchscript", "torchvision", "packaged") if getattr(victim, key) is not None)
            print(f"{args.sweep}: external victim {victim.key} ({source}, read at {victim.input_size} px)")
        return 0
    if "name" not in data:  # a run config for `sslsteal steal`
        from sslsteal.specs.steal import StealSpec, steal_problems

        spec = load(StealSpec, args.sweep, args.set)
        problems = steal_problems(spec, Path(args.sweep).resolve().parent)
        if problems:
            raise ConfigError(problems, args.sweep)
        print(f"{args.sweep}: one run, {spec.attack.method}/{spec.attack.loss} with {spec.attack.queries} queries from {spec.attack.query_data}")
        return 0
    plan = plan_sweep(args.sweep, args.set)
    run = plan.spec.run
    res = run.resources_per_trial
    print(f"{plan.source}: {plan.trials} trials, up to {run.max_concurrent_trials} at once, {res.cpu:g} CPU / {res.gpu:g} GPU each")
    rows = plan.preview(args.show)
    if rows and rows[0]:
        keys = list(rows[0])
        widths = [max(len(k), *(len(f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k])) for r in rows)) for k in keys]
        print("  ".join(["#".rjust(3)] + [k.ljust(w) for k, w in zip(keys, widths, strict=True)]))
        for i, row in enumerate(rows, 1):
            cells = [f"{row[k]:.3g}" if isinstance(row[k], float) else str(row[k]) for k in keys]
            print("  ".join([str(i).rjust(3)] + [c.ljust(w) for c, w in zip(cells, widths, strict=True)]))
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from sslsteal.orchestration.sweep import completed, run_sweep
    from sslsteal.specs.sweep import plan_sweep

    plan = plan_sweep(args.sweep, args.set)
    print(f"{plan.source}: {plan.trials} trials")
    outcome = run_sweep(plan, address=args.address, tracking_uri=args.tracking_uri, storage=args.storage, resume=args.resume, progress=not args.quiet)
    results = outcome.grid
    done = completed(results)
    finished = [(r.config, r.metrics) for r in results if r.error is None and "queries_used" in (r.metrics or {})]
    if finished:
        from sslsteal.orchestration.summary import group_by_config, summary_table
        from sslsteal.orchestration.trial import trial_name

        print(summary_table(group_by_config(finished, trial_name), outcome.first_downstream))
        print_open_results(args.tracking_uri or plan.spec.tracking.uri, plan.spec.name)
    print(f"{done} trials finished, {results.num_errors} failed")
    if results.num_errors:
        return RUN_FAILURE
    if done < plan.trials:
        print(f"interrupted: {plan.trials - done - results.num_errors} trials did not finish; continue with --resume", file=sys.stderr)
        return INTERRUPTED
    return 0


def _optimize(args: argparse.Namespace) -> int:
    from sslsteal.specs.optimize import plan_optimize

    plan = plan_optimize(args.sweep, args.set)
    print(plan.describe())
    if args.dry_run:
        return 0
    from sslsteal.orchestration.optimize import run_optimize

    result = run_optimize(plan, address=args.address, tracking_uri=args.tracking_uri, storage=args.storage, output=args.output, progress=not args.quiet)
    print(result.markdown)
    print("table: " + ", ".join(str(p) for p in result.files))
    print_open_results(args.tracking_uri or plan.sweep.spec.tracking.uri, plan.sweep.spec.name)
    if result.interrupted:
        print("interrupted: run the same command again to continue the studies", file=sys.stderr)
        return INTERRUPTED
    empty = [r.study for r in result.rows if r.complete == 0]
    if empty:
        print(f"no trial completed in {', '.join(empty)}", file=sys.stderr)
        return RUN_FAILURE
    return 0


def print_open_results(uri: str | None, experiment: str) -> None:
    """The two commands that open a finished sweep's or study's results (the dashboards, MLflow's runs table)."""
    from sslsteal.orchestration.tracking import default_tracking_uri, open_results

    dashboard, mlflow = open_results(uri or default_tracking_uri(), experiment)
    print(f"open the results (experiment {experiment!r}):\n  dashboards: {dashboard}\n  MLflow:     {mlflow}")


def _add_tune_command(sub: Any, name: str, *, summary: str, file_help: str, storage_help: str, set_help: str) -> argparse.ArgumentParser:
    """A subcommand that runs trials on Ray Tune (sweep, optimize): its file, Ray and MLflow, Tune storage, overrides, quiet."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=summary)
    parser.add_argument("sweep", help=file_help)
    _add_ray_and_mlflow(parser)
    parser.add_argument("--storage", help=storage_help)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=set_help)
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    return parser


def _add_ray_and_mlflow(parser: argparse.ArgumentParser) -> None:
    """Where `sweep` and `optimize` run (Ray) and log (MLflow)."""
    parser.add_argument("--address", help="Ray address to join (auto: the running cluster); a local Ray by default")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: the sweep's tracking.uri, else ./mlflow.db)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sslsteal", description="Steal self-supervised encoders and measure defenses.")
    sub = parser.add_subparsers(dest="command", required=True)

    victim = sub.add_parser("victim", help="victim encoders").add_subparsers(dest="victim_command", required=True)
    train = victim.add_parser("train", help="train a victim (or find its cached checkpoint) and print its evaluation")
    train.add_argument("config", help="victim config YAML, e.g. sweeps/victims/cifar10-cpu.yaml")
    train.add_argument("--data-root", help="folder with the datasets (default: $SSLSTEAL_DATA)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument(
        "--reference", type=int, metavar="N", help="train reference encoder N (1, 2, ...) of this victim instead: its recipe, seed + N, no watermark"
    )
    train.set_defaults(func=_victim_train)

    steal = sub.add_parser("steal", help="steal one encoder from a local victim and print a result table")
    steal.add_argument("config", help="run YAML with victim, attack and evaluate sections")
    steal.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value, e.g. attack.queries=1000 (repeatable)")
    steal.add_argument("--output", metavar="FILE.json", help="also write the config and metrics as JSON")
    steal.add_argument("--save-encoder", metavar="FILE.pt", help="also save the stolen encoder (for sslsteal verify)")
    steal.add_argument("--quiet", action="store_true", help="no progress bars")
    steal.set_defaults(func=_steal)

    verify = sub.add_parser("verify", help="ownership tests: is a suspect encoder stolen from the victim? (calibrated on honest references)")
    verify.add_argument("--victim", required=True, help="victim YAML or checkpoint")
    verify.add_argument("--suspect", required=True, help="a stolen-encoder file (steal --save-encoder) or a victim checkpoint")
    verify.add_argument("--tests", nargs="+", default=[], metavar="TEST", help="tests to run (default: all that apply)")
    verify.add_argument("--images", type=int, default=1000, help="private and public images per test")
    verify.add_argument("--alpha", type=float, default=0.05, help="significance level of the verdict column")
    verify.add_argument("--seed", type=int, default=0)
    verify.add_argument(
        "--references",
        nargs="+",
        type=int,
        default=[1, 2, 3],
        metavar="N",
        help="the victim's reference encoders that calibrate the tests (default: 1 2 3; trained when missing)",
    )
    verify.add_argument("--data-root", help="folder with the datasets (default: $SSLSTEAL_DATA)")
    verify.add_argument("--output", metavar="FILE.json", help="also write the metrics as JSON")
    verify.add_argument("--quiet", action="store_true", help="no progress bars")
    verify.set_defaults(func=_verify)
    sweep = _add_tune_command(
        sub,
        "sweep",
        summary="run a sweep on Ray Tune, one attacker account per trial, results in MLflow",
        file_help="sweep YAML",
        storage_help="where Tune keeps trial state (default ~/ray_results)",
        set_help="override a value (repeatable)",
    )
    sweep.add_argument("--resume", action="store_true", help="continue the newest interrupted run of this sweep (same --storage)")
    sweep.set_defaults(func=_sweep)

    optimize = _add_tune_command(
        sub,
        "optimize",
        summary="search the strongest attack per query budget: one Optuna study per budget on Ray Tune",
        file_help="sweep YAML with an optimize section (docs/optimize.md)",
        storage_help="where Tune keeps trial state (default ~/ray_results); studies live in optimize.storage",
        set_help="override a value, e.g. optimize.trials_per_budget=12",
    )
    optimize.add_argument("--output", metavar="DIR", help="folder for the table files (default: <storage>/<name>-optimize)")
    optimize.add_argument("--dry-run", action="store_true", help="check the file and print the studies, without starting Ray")
    optimize.set_defaults(func=_optimize)

    from sslsteal.dashboards import cli as dashboards

    dashboard = sub.add_parser("dashboard", help="render the dashboards (the paper's tables and plots, ours beside them) as a static site")
    dashboards.add_arguments(dashboard).set_defaults(func=dashboards.run)

    serve = sub.add_parser("serve", help="serve a victim as an HTTP embedding API (Ray Serve): API keys, budgets, defenses")
    serve.add_argument("victim", help="victim YAML, checkpoint, or external-encoder YAML")
    serve.add_argument(
        "--keys",
        metavar="KEYS.yaml",
        help="accounts: name, key digest or env variable, budget, defense (docs/service.md); default: one account keyed by $SSLSTEAL_API_KEY",
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--address", help="Ray address to join (auto: the running cluster); a local Ray by default")
    serve.add_argument("--budget", type=int, help="budget of accounts that do not set one (default 10,000)")
    serve.add_argument("--replicas", type=int, default=1, help="HTTP ingress replicas")
    serve.add_argument("--state-dir", help="where accounts and stored answers persist (default: $SSLSTEAL_CACHE/serve/<victim>/accounts)")
    serve.add_argument("--data-root", help="folder with the datasets, to train a victim YAML not trained yet")
    serve.set_defaults(func=_serve)

    validate = sub.add_parser("validate", help="check a sweep (or optimize) file and print its trial count, without starting Ray")
    validate.add_argument("sweep", help="sweep YAML")
    validate.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a value (repeatable)")
    validate.add_argument("--show", type=int, default=5, help="trials to preview")
    validate.set_defaults(func=_validate)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    from sslsteal.specs.base import ConfigError
    from sslsteal.specs.datasets import DatasetUnavailableError, UnknownDatasetError

    return (ConfigError, UsageError, DatasetUnavailableError, UnknownDatasetError)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        code = func(args)
        sys.stdout.flush()  # inside the try: a closed pipe surfaces here, not in the interpreter's exit
        return code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush does not raise again on the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return CLOSED_PIPE
    except Exception as exc:
        if isinstance(exc, _user_errors()):
            print(f"error: {exc}", file=sys.stderr)
            return USAGE_ERROR
        raise


if __name__ == "__main__":
    sys.exit(main())
