"""Screenshots of every dashboard view, built from the results store, in headless Chromium (docs/dashboards.md).

    python docs/screenshots/capture.py [--tracking-uri sqlite:///results/cpu/mlflow.db]

Writes docs/screenshots/<view>.png for the index and every definition in dashboards/, and fails on a page with a
console error, an exception or a failed load.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the headless Chromium driver the dashboard tests use

from headless_chromium import Browser

from sslsteal.dashboards import cli


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default=f"sqlite:///{REPO / 'results' / 'cpu' / 'mlflow.db'}")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as site:
        if cli.main(["--tracking-uri", args.tracking_uri, "--out", site]) != 0:
            return 1
        pages = sorted(Path(site).glob("*.html"))
        with Browser() as browser:
            for page in pages:
                result = browser.open(page.as_uri(), ["document.title"], screenshot=HERE / f"{page.stem}.png")
                if result.errors:
                    print(f"{page.name}: {result.errors}", file=sys.stderr)
                    return 1
                print(f"{page.stem}.png: {result.values[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
