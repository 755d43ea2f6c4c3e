"""`sslsteal dashboard`: build the static dashboards site from the MLflow runs (and Optuna studies) of the
experiments the definitions name, or of the experiments given with --experiment.

With `--markdown FILE` it rewrites the generated blocks of a Markdown file (docs/RESULTS.md: tables, findings,
costs; `sslsteal.dashboards.markdown`) from the store instead; `--check` only compares.

Exit codes: 0 built (or, with --check, up to date), 1 --check found a block that differs from the store, 2 bad
definitions, an unknown --experiment or a bad block marker (one line per problem).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sslsteal.dashboards.spec import Definitions

CHECKOUT_DEFINITIONS = Path(__file__).resolve().parents[2] / "dashboards"
"""The repository's `dashboards/` folder, beside the package in a checkout (an editable install)."""
DEFINITIONS = CHECKOUT_DEFINITIONS if CHECKOUT_DEFINITIONS.is_dir() else Path("dashboards")
"""The default: the checkout's folder, else `./dashboards` (a copy of it where the package was installed from a wheel)."""
OUT = "sslsteal-dashboards"
USAGE_ERROR = 2


DESCRIPTION = "Render the dashboards (the paper's tables and figures) as a static site."


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of `sslsteal dashboard` (shared by this module's own parser and the `sslsteal` command's)."""
    parser.add_argument(
        "--experiment",
        action="append",
        default=[],
        metavar="NAME",
        help="build every dashboard from this experiment (repeatable) instead of those its definition names",
    )
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: $SSLSTEAL_TRACKING_URI, $MLFLOW_TRACKING_URI, else ./mlflow.db)")
    parser.add_argument("--out", default=OUT, help=f"folder for index.html and the pages (default: ./{OUT})")
    parser.add_argument(
        "--definitions", default=str(DEFINITIONS), help="folder of dashboard YAML files (default: the repository's dashboards/, else ./dashboards)"
    )
    parser.add_argument("--optuna-storage", metavar="URL", help="read every Optuna study from this storage instead of the one its study run recorded")
    parser.add_argument("--markdown", metavar="FILE", help="rewrite the generated blocks of this Markdown file (docs/RESULTS.md) instead of building the site")
    parser.add_argument("--check", action="store_true", help="with --markdown: write nothing, exit 1 when a block differs from the store")
    return parser


def build_parser() -> argparse.ArgumentParser:
    return add_arguments(argparse.ArgumentParser(prog="sslsteal dashboard", description=DESCRIPTION))


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` (the arguments after `sslsteal dashboard`), build the site, print where it is."""
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Build the site the parsed options ask for and print where it is; 2 on bad definitions or experiments."""
    from sslsteal.core.urls import masked, shown
    from sslsteal.dashboards.spec import DefinitionError, load_definitions

    try:
        definitions = load_definitions(args.definitions)
    except DefinitionError as exc:
        print(exc, file=sys.stderr)
        return USAGE_ERROR
    from sslsteal.dashboards.site import build_site
    from sslsteal.orchestration import run_records
    from sslsteal.orchestration.tracking import default_tracking_uri

    uri = args.tracking_uri or default_tracking_uri()
    if args.markdown or args.check:
        return _markdown(args, definitions, uri)
    if args.experiment:
        known = run_records.experiment_names(uri)
        unknown = [name for name in args.experiment if name not in known]
        if unknown:
            print(f"--experiment: unknown experiment '{unknown[0]}' in {masked(uri)}; known: {', '.join(sorted(known)) or 'none'}", file=sys.stderr)
            return USAGE_ERROR
        definitions = definitions.for_experiments(args.experiment)
    names = [name for d in definitions.dashboards.values() for section in d.experiments for name in d.sources(section)]
    records = run_records.fetch_records(uri, names)
    studies = run_records.read_studies(records, args.optuna_storage, beside=uri)
    paths = build_site(definitions, records, args.out, studies, source=shown(uri))
    print(f"{len(paths) - 1} dashboards from {len(records)} runs of {len(set(names))} experiments: {paths[0].resolve().as_uri()}")
    return 0


def _markdown(args: argparse.Namespace, definitions: Definitions, uri: str) -> int:
    """Rewrite (or, with --check, compare) the generated blocks of --markdown from the store at `uri`."""
    from sslsteal.core.urls import shown
    from sslsteal.dashboards.markdown import BlockError, experiments, regenerate
    from sslsteal.orchestration import run_records

    if not args.markdown:
        print("--check: compares the blocks of a --markdown FILE; give one", file=sys.stderr)
        return USAGE_ERROR
    path = Path(args.markdown)
    if not path.is_file():
        print(f"--markdown: no such file: {path}", file=sys.stderr)
        return USAGE_ERROR
    text = path.read_text()
    try:
        records = run_records.fetch_records(uri, experiments(definitions, text))
        new = regenerate(text, definitions, records, run_records.read_studies(records, args.optuna_storage, beside=uri))
    except BlockError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return USAGE_ERROR
    if args.check:
        if new != text:
            changed = sum(a != b for a, b in zip(text.splitlines(), new.splitlines(), strict=False)) + abs(len(text.splitlines()) - len(new.splitlines()))
            print(f"{path}: {changed} generated lines differ from {shown(uri)}; rewrite with: sslsteal dashboard --markdown {path} --tracking-uri {shown(uri)}")
            return 1
        print(f"{path}: every generated block matches {shown(uri)}")
        return 0
    path.write_text(new)
    print(f"{path}: generated blocks rewritten from {shown(uri)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
