"""`sslsteal steal RUN.yaml`: one attack on one victim, without Ray (the code is `sslsteal.pipeline.steal`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from sslsteal.specs.attack import AttackSpec, signed_answers
from sslsteal.specs.base import ConfigError, StrictModel
from sslsteal.specs.evaluate import EvaluateSpec
from sslsteal.specs.external import ExternalVictimSpec
from sslsteal.specs.protocol import protocol_problems
from sslsteal.specs.sweep import victim_spec
from sslsteal.specs.victim import RemoteVictimSpec, VictimRef


class StealSpec(StrictModel):
    """A victim (config file, inline spec or checkpoint), an attack, an evaluation."""

    victim: VictimRef
    attack: AttackSpec
    evaluate: EvaluateSpec = Field(default_factory=EvaluateSpec)
    data_root: str | None = None

    @model_validator(mode="after")
    def _answers_fit_the_loss(self) -> StealSpec:
        """A loss that needs non-negative answers with a method whose answers are signed fails at its first batch."""
        problem = signed_answers(self.attack.model_dump())
        if problem is not None:
            raise ConfigError([problem])
        return self


def steal_problems(spec: StealSpec, base: Path) -> list[str]:
    """Every problem found before a victim is loaded: the victim file (relative to `base`) and the data protocol."""
    problems = ["evaluate.legit: a single run has no defense to measure; use a sweep with a defense section"] if spec.evaluate.legit else []
    victim, found = victim_spec(spec.victim, base)
    refused = victim.refusals(spec.attack.method, spec.evaluate.ownership) if isinstance(victim, ExternalVictimSpec) else []
    if isinstance(spec.victim, RemoteVictimSpec):
        refused += spec.victim.refusals(spec.evaluate, None)
    return problems + found + protocol_problems(spec.attack, spec.evaluate, victim) + refused
