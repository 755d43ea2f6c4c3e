"""A sweep's search spaces as Ray Tune's own search-space API (`tune.grid_search`, `tune.loguniform`, ...)."""

from __future__ import annotations

from typing import Any

from ray import tune

from sslsteal.specs.search_space import Path_, SearchSpace, substitute


def to_tune(space: SearchSpace) -> Any:
    """The equivalent Ray Tune domain."""
    if space.kind == "grid":
        return tune.grid_search(list(space.args))
    if space.kind == "choice":
        return tune.choice(list(space.args))
    return {"uniform": tune.uniform, "loguniform": tune.loguniform, "randint": tune.randint}[space.kind](*space.args)


def to_param_space(tree: dict[str, Any], spaces: dict[Path_, SearchSpace]) -> dict[str, Any]:
    """The mapping handed to `Tuner(param_space=...)`: every space replaced by its Tune domain."""
    return substitute(tree, {path: to_tune(space) for path, space in spaces.items()})
