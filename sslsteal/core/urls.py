"""Store URLs (MLflow tracking URIs, Optuna storages) read with SQLAlchemy's `make_url`: the SQLite file a URL names,
the same URL with that file made absolute (so it means one file from any working directory), and forms safe to print."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import URL


def _parse(url: str) -> URL | None:
    from sqlalchemy.engine import make_url  # imported here: SQLAlchemy costs 0.3 s, and validating a sweep needs no URL
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url)
    except ArgumentError:  # e.g. `file:./mlruns` or `databricks`: not SQLAlchemy-shaped
        return None


def sqlite_file(url: str) -> Path | None:
    """The database file of a `sqlite:///` URL (None for other stores and for in-memory SQLite)."""
    parsed = _parse(url)
    if parsed is None or parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def absolute(url: str) -> str:
    """`url` with a relative SQLite file made absolute (Ray workers change directory); other URLs unchanged."""
    path = sqlite_file(url)
    parsed = _parse(url)
    if path is None or parsed is None or path.is_absolute():
        return url
    return parsed.set(database=str(path.absolute())).render_as_string(hide_password=False)


def masked(url: str) -> str:
    """`url` safe to print or log: any password replaced by `***`."""
    parsed = _parse(url)
    return url if parsed is None or parsed.password is None else parsed.render_as_string(hide_password=True)


def shown(url: str) -> str:
    """`url` as a page or a log shows it: masked, and a SQLite file under the working directory as a relative path
    (a store's absolute location says nothing to a reader and names the machine it was built on)."""
    path = sqlite_file(url)
    if path is None:
        return masked(url)
    inside = path.absolute().is_relative_to(Path.cwd())
    return f"sqlite:///{Path(os.path.relpath(path.absolute())).as_posix() if inside else path.name}"
