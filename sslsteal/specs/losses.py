"""The stealing losses a spec may name, each with its hyperparameters as a pydantic model (strict: a string or a
bool is never read as a number). The loss functions live in `sslsteal.losses`, one file per loss."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, ConfigDict, Field

from sslsteal.core.registry import Registry
from sslsteal.specs.base import StrictModel, options_of

KINDS = ("quadratic", "symmetrized", "contrastive", "supervised-contrastive", "distributional")


class LossParams(StrictModel):
    """A loss's hyperparameters; the class also says what family the loss is of and what each call needs."""

    model_config = ConfigDict(strict=True)

    kind: ClassVar[str]
    description: ClassVar[str]
    needs_labels: ClassVar[bool] = False
    """The caller passes `labels=` with each call (supervised losses)."""
    call_args: ClassVar[tuple[str, ...]] = ()
    """Keyword arguments passed per call rather than fixed by the spec."""
    signed_fix: ClassVar[str] = ""
    """The loss_params setting under which a loss that `needs_nonnegative` takes signed inputs ("" when none does)."""

    def needs_nonnegative(self) -> bool:
        """Whether these hyperparameters read every input entry as non-negative (a row as a distribution over its
        dims): such a loss fails on signed answers (head outputs, noised answers), so validation refuses those."""
        return False

    @classmethod
    def per_call(cls) -> tuple[str, ...]:
        return cls.call_args + (("labels",) if cls.needs_labels else ())


def _keyword_params(impl: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    params = inspect.signature(impl).parameters.values()
    return {p.name: p for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def check_implementation(name: str, params: type[LossParams], impl: Callable[..., Any]) -> None:
    """A loss implementation takes exactly its hyperparameters (with the declared defaults) plus its per-call
    arguments as keyword-only parameters."""
    declared = _keyword_params(impl)
    if set(declared) != set(params.model_fields) | set(params.per_call()):
        raise TypeError(
            f"loss {name!r}: keyword-only parameters {sorted(declared)} must equal its hyperparameters "
            f"{sorted(params.model_fields)} plus per-call arguments {sorted(params.per_call())}"
        )
    defaults = params().model_dump()
    differ = [key for key, default in defaults.items() if declared[key].default != default]
    if differ:
        raise TypeError(f"loss {name!r}: defaults of {differ} differ from the declared ones {defaults}")


LOSSES: Registry[type[LossParams]] = Registry("loss", check_implementation)
LossName = Annotated[str, AfterValidator(LOSSES.check)]
"""A spec field naming a declared loss."""


def loss_params(name: str, hparams: dict[str, Any]) -> LossParams:
    """The validated hyperparameters of loss `name`; ValueError `loss 'x': key must be ...` naming the first problem."""
    return options_of(
        LOSSES[LOSSES.check(name)],
        hparams,
        lambda key, accepted: f"loss {name!r} has no hyperparameter {key!r}; accepted: {accepted or '(none)'}",
        lambda where, message, got: f"loss {name!r}: {where} {message} (got {got!r})",
    )


@LOSSES.register("mse")
class MSE(LossParams):
    kind = "quadratic"
    description = "mean squared error over batch and dims"


@LOSSES.register("cosine")
class Cosine(LossParams):
    kind = "quadratic"
    description = "1 - mean cosine similarity of paired rows"


@LOSSES.register("infonce")
class InfoNCE(LossParams):
    kind = "contrastive"
    description = "NT-Xent over the 2N stolen+victim points: partner = positive, the other 2N-2 = negatives"
    temperature: float = Field(0.07, gt=0, allow_inf_nan=False)


@LOSSES.register("infonce_cross")
class InfoNCECross(LossParams):
    kind = "contrastive"
    description = "symmetric cross-encoder InfoNCE (negatives from the other encoder only), cosine logits / temperature"
    temperature: float = Field(0.1, gt=0, allow_inf_nan=False)


@LOSSES.register("softnn")
class SoftNN(LossParams):
    kind = "contrastive"
    description = "soft nearest neighbour loss on squared Euclidean distances of the 2N points, partner = positive"
    temperature: float = Field(0.1, gt=0, allow_inf_nan=False, description="in units of the victim batch's spread when relative")
    relative: bool = True


@LOSSES.register("supcon")
class SupCon(LossParams):
    kind = "supervised-contrastive"
    description = "SupCon: stolen anchors vs victim and stolen candidates, positives share a label"
    needs_labels = True
    temperature: float = Field(0.1, gt=0, allow_inf_nan=False)


@LOSSES.register("wasserstein")
class Wasserstein(LossParams):
    kind = "distributional"
    description = "per-pair W1 between rows read as distributions over their dims: sum |CDF_s - CDF_v|, batch mean"
    signed_fix = "softmax: true"
    softmax: bool = False

    def needs_nonnegative(self) -> bool:
        return not self.softmax  # rows divided by their sum; softmax reads signed rows


@LOSSES.register("sliced_wasserstein")
class SlicedWasserstein(LossParams):
    kind = "distributional"
    description = "squared sliced 2-Wasserstein distance between the two batches (ignores pairing)"
    call_args = ("projections",)
    num_projections: int = Field(128, gt=0)


@LOSSES.register("barlow")
class Barlow(LossParams):
    kind = "symmetrized"
    description = "Barlow Twins: cross-correlation of standardised batches pushed to the identity"
    lambd: float = Field(5e-3, ge=0, allow_inf_nan=False)


@LOSSES.register("simsiam")
class SimSiam(LossParams):
    kind = "symmetrized"
    description = "SimSiam: MLP predictor, symmetrized negative cosine with stop-gradient"
    pred_dim: int = Field(512, gt=0)
