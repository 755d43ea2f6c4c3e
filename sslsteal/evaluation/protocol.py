"""The data protocol at run time: no scored set holds an image the attacker queried (the declared half, which sets
a configuration leaves, is sslsteal.specs.protocol)."""

from __future__ import annotations

import numpy as np

from sslsteal.data.loaders import ImageSet


class ProtocolError(RuntimeError):
    """An image the attacker queried reached a scored set: a bug in the evaluation, never a user error."""


def check_disjoint(role: str, scored: ImageSet, queried: ImageSet | None, *, against: str = "queried by the attacker") -> None:
    """Raise ProtocolError when `scored` holds any image of `queried` (same split, same position); `against` says what
    the other set is in the message."""
    if queried is None or scored.name != queried.name:
        return
    shared = np.intersect1d(scored.positions.numpy(), queried.positions.numpy())
    if len(shared):
        raise ProtocolError(f"{role}: {len(shared)} of its {len(scored)} {scored.name} images were {against} (e.g. index {shared[0]})")
