"""`sslsteal steal RUN.yaml`: one attack on one victim, without Ray (the code is `sslsteal.steal`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Discriminator, Field, Tag

from sslsteal.specs.attack import AttackSpec
from sslsteal.specs.base import StrictModel, by_kind
from sslsteal.specs.evaluate import EvaluateSpec
from sslsteal.specs.victim import VictimSpec


class StealSpec(StrictModel):
    """A victim (config file, inline spec or checkpoint), an attack, an evaluation."""

    victim: Annotated[Annotated[str, Tag("Path")] | Annotated[VictimSpec, Tag("Spec")], Discriminator(by_kind)]
    attack: AttackSpec
    evaluate: EvaluateSpec = Field(default_factory=EvaluateSpec)
    data_root: str | None = None
