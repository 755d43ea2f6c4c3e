"""The `sslsteal` command. Exit codes: 0 success, 2 bad usage or input (one line per problem), 1 a failure while running."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

USAGE_ERROR = 2
RUN_FAILURE = 1


class UsageError(Exception):
    """Bad input from the user: reported as one line per problem, exit code 2."""


def _victim_train(args: argparse.Namespace) -> int:
    from sslsteal import config
    from sslsteal.baselines import victim_report
    from sslsteal.victim.checkpoint import load_victim
    from sslsteal.victim.spec import VictimSpec
    from sslsteal.victim.train import get_or_train

    spec = config.load(VictimSpec, args.config)
    if args.data_root:
        spec.data_root = args.data_root
    path, trained = get_or_train(spec, config_path=args.config, progress=not args.quiet)
    print(f"checkpoint: {path} ({'trained now' if trained else 'cached'})")
    victim = load_victim(path)
    for key, value in victim_report(victim, spec.data_root).items():
        print(f"{key}: {value:.2f}")
    return 0


def _steal(args: argparse.Namespace) -> int:
    from sslsteal import config
    from sslsteal.run import RunSpec, format_table, run_steal

    spec = config.load(RunSpec, args.config, args.set)
    result = run_steal(spec, config_path=args.config, progress=not args.quiet)
    print(format_table(result))
    if args.output:
        import json
        from pathlib import Path

        record = {"config": spec.model_dump(mode="json"), "victim": result["victim"], "metrics": result["metrics"]}
        Path(args.output).write_text(json.dumps(record, indent=2))
    return 0


def _validate(args: argparse.Namespace) -> int:
    from sslsteal.sweep_spec import plan_sweep

    plan = plan_sweep(args.sweep, args.set)
    run = plan.spec.run
    res = run.resources_per_trial
    print(f"{plan.source}: {plan.trials} trials, up to {run.max_concurrent_trials} at once, {res.cpu:g} CPU / {res.gpu:g} GPU each")
    rows = plan.preview(args.show)
    if rows and rows[0]:
        keys = list(rows[0])
        widths = [max(len(k), *(len(f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k])) for r in rows)) for k in keys]
        print("  ".join(["#".rjust(3)] + [k.ljust(w) for k, w in zip(keys, widths)]))
        for i, row in enumerate(rows, 1):
            cells = [f"{row[k]:.3g}" if isinstance(row[k], float) else str(row[k]) for k in keys]
            print("  ".join([str(i).rjust(3)] + [c.ljust(w) for c, w in zip(cells, widths)]))
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from sslsteal.sweep import run_sweep
    from sslsteal.sweep_spec import plan_sweep

    plan = plan_sweep(args.sweep, args.set)
    print(f"{plan.source}: {plan.trials} trials")
    results = run_sweep(plan, address=args.address, tracking_uri=args.tracking_uri, storage=args.storage, progress=not args.quiet)
    print(f"{len(results) - results.num_errors} trials finished, {results.num_errors} failed")
    return RUN_FAILURE if results.num_errors else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sslsteal", description="Steal self-supervised encoders and measure defenses.")
    sub = parser.add_subparsers(dest="command", required=True)

    victim = sub.add_parser("victim", help="victim encoders").add_subparsers(dest="victim_command", required=True)
    train = victim.add_parser("train", help="train a victim (or find its cached checkpoint) and print its evaluation")
    train.add_argument("config", help="victim config YAML, e.g. sweeps/victims/cifar10-cpu.yaml")
    train.add_argument("--data-root", help="folder with the datasets (default: $SSLSTEAL_DATA)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=_victim_train)

    steal = sub.add_parser("steal", help="steal one encoder from a local victim and print a result table")
    steal.add_argument("config", help="run YAML with victim, attack and evaluate sections")
    steal.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value, e.g. attack.queries=1000 (repeatable)")
    steal.add_argument("--output", metavar="FILE.json", help="also write the config and metrics as JSON")
    steal.add_argument("--quiet", action="store_true", help="no progress bars")
    steal.set_defaults(func=_steal)
    sweep = sub.add_parser("sweep", help="run a sweep on Ray Tune, one attacker account per trial, results in MLflow")
    sweep.add_argument("sweep", help="sweep YAML")
    sweep.add_argument("--address", help="Ray address to join (auto: the running cluster); a local Ray by default")
    sweep.add_argument("--tracking-uri", help="MLflow tracking URI (default: the sweep's tracking.uri, else ./mlflow.db)")
    sweep.add_argument("--storage", help="where Tune keeps trial state (default ~/ray_results)")
    sweep.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a value (repeatable)")
    sweep.add_argument("--quiet", action="store_true", help="no progress output")
    sweep.set_defaults(func=_sweep)

    validate = sub.add_parser("validate", help="check a sweep file and print its trial count, without starting Ray")
    validate.add_argument("sweep", help="sweep YAML")
    validate.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a value (repeatable)")
    validate.add_argument("--show", type=int, default=5, help="trials to preview")
    validate.set_defaults(func=_validate)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    from sslsteal.config import ConfigError
    from sslsteal.data import DatasetUnavailableError, UnknownDatasetError

    return (ConfigError, UsageError, DatasetUnavailableError, UnknownDatasetError)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if isinstance(exc, _user_errors()):
            print(f"error: {exc}", file=sys.stderr)
            return USAGE_ERROR
        raise


if __name__ == "__main__":
    sys.exit(main())
