"""What one attacker account does: the attack method, the stealing loss and its hyperparameters, the query
budget and pool, and the training recipe (the code is `sslsteal.attacks.steal`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, model_validator

from sslsteal.specs.base import ConfigError, StrictModel
from sslsteal.specs.datasets import DataRef, DataRefText, parse_ref
from sslsteal.specs.defenses import defense_params
from sslsteal.specs.encoders import EncoderName
from sslsteal.specs.losses import LossName, loss_params
from sslsteal.specs.methods import METHODS, MethodName, MethodParams, method_params


class AttackSpec(StrictModel):
    """How one attacker account steals: method, loss, budget, query data and training recipe."""

    method: MethodName = Field("direct", description="how the copy is trained: " + ", ".join(METHODS))
    method_params: dict[str, Any] = Field(default_factory=dict, description="the method's options (sslsteal.specs.methods, docs/attacks.md)")
    loss: LossName = "infonce"
    loss_params: dict[str, Any] = Field(default_factory=dict)
    queries: int = Field(..., gt=0, description="images the victim answers for this account")
    query_data: DataRefText = Field(
        "cifar10:test[:9000]", description="the query pool: a split or slice (name:split[start:stop]); nothing in it is ever scored"
    )
    strategy: Literal["once", "augmented"] = "once"
    views: int = Field(2, ge=2, description="augmented views sent per image (strategy augmented, recreate_head)")
    augment: Literal["none", "weak", "simclr"] = Field("weak", description="attacker-side augmentation of its inputs")
    epochs: int = Field(30, gt=0, description="passes over the answered images; by default at least `min_steps` optimizer steps, exactly this many when set")
    steps: int | None = Field(
        None, gt=0, description="optimizer steps of the copy's training, whatever the budget (rounded up to whole epochs); epochs is then derived"
    )
    min_steps: int = Field(
        800,
        ge=0,
        description="the default training length's floor: `epochs`, but at least this many optimizer steps (small budgets "
        "are otherwise under-trained, docs/RESULTS.md); not applied when `epochs` or `steps` is set and this is not",
    )
    batch_size: int = Field(64, ge=2)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    encoder: EncoderName | None = Field(None, description="stolen architecture; the victim's when null")
    head_epochs: int = Field(20, gt=0, description="epochs to recreate the head (recreate_head)")
    head_hidden: int = Field(512, gt=0)
    head_dim: int = Field(128, gt=0, description="output size of a recreated head")
    query_batch: int = Field(256, gt=0, description="images per request to the victim")
    seed: int = Field(0, description="the attacker's seed: init, batch order, augmentations and query subset draw from streams derived from it")

    @model_validator(mode="after")
    def _consistent(self) -> AttackSpec:
        try:
            options = method_params(self.method, self.method_params)
        except ValueError as exc:
            raise ConfigError([str(exc)]) from None
        if options.own_objective:
            unused = [k for k in ("loss", "loss_params") if k in self.model_fields_set]
            if unused:
                raise ConfigError(
                    [f"{unused[0]}: method {self.method} trains with its own objective (method_params, docs/attacks.md); remove attack.{unused[0]}"]
                )
            if self.strategy != "once":
                raise ConfigError([f"strategy: method {self.method} decides which views the victim answers (method_params); leave strategy at once"])
        try:
            loss_params(self.loss, self.loss_params)
        except ValueError as exc:
            raise ValueError(f"loss_params: {exc}") from None
        if self.steps is not None and {"epochs", "min_steps"} & self.model_fields_set:
            raise ConfigError(
                [f"steps: set the training length by steps or by {' and '.join(sorted({'epochs', 'min_steps'} & self.model_fields_set))}, not both"]
            )
        if self.method == "recreate_head" and self.strategy != "augmented":
            raise ConfigError(["strategy: method recreate_head needs victim outputs of several views per image: use strategy augmented"])
        least = self.options.min_images
        if self.images_needed < least:
            bought = "no image" if self.images_needed == 0 else f"{self.images_needed} image (method {self.method} needs {least})"
            raise ConfigError([f"queries: {self.queries} queries buy {bought} at {self.answers_per_image} answers each ({self.options.budget_key or 'views'})"])
        available = self.pool.size
        if self.images_needed > available:
            raise ConfigError([f"queries: {self.queries} queries need {self.images_needed} images but {self.query_data} has {available}"])
        return self

    @property
    def views_per_image(self) -> int:
        """Views of each image the query strategy sends (the paper's methods)."""
        return self.views if self.strategy == "augmented" else 1

    @property
    def options(self) -> MethodParams:
        """The method's validated options (`method_params` with its defaults)."""
        return method_params(self.method, self.method_params)

    @property
    def answers_per_image(self) -> int:
        """Answers the victim gives (and the account pays) per query image under this method."""
        return self.options.answers_per_image(self.views_per_image)

    @property
    def pool(self) -> DataRef:
        """The slice of a split the attacker draws its query images from."""
        return parse_ref(self.query_data)

    def epochs_for(self, answered: int) -> int:
        """Epochs over `answered` training items: as many as `steps` optimizer steps take; else `epochs`, raised to
        reach `min_steps` unless `epochs` alone was set (at least one)."""
        per_epoch = max(1, answered // min(self.batch_size, answered))
        if self.steps is not None:
            return max(1, math.ceil(self.steps / per_epoch))
        exact = "epochs" in self.model_fields_set and "min_steps" not in self.model_fields_set
        return self.epochs if exact else max(self.epochs, math.ceil(self.min_steps / per_epoch))

    @property
    def images_needed(self) -> int:
        """Distinct query images the budget buys."""
        return self.queries // self.answers_per_image

    @property
    def images_drawn(self) -> int:
        """Pool images the attack draws to choose its query images from (its method's choice, capped by the pool)."""
        return min(self.pool.size, self.options.images_drawn(self.images_needed))


def signed_answers(attack: Any, defense: Any = None) -> str | None:
    """`attack.loss: ...` when the attack's loss needs non-negative answers (`LossParams.needs_nonnegative`) but its
    method or the defense (a `{name: ..., **options}` mapping) makes them signed; None otherwise, and when a value is
    invalid (its own check reports that). Checked at validate time: the loss would fail on the first signed batch."""
    if not isinstance(attack, Mapping):
        return None
    fields = AttackSpec.model_fields
    method = attack.get("method", fields["method"].default)
    loss = attack.get("loss", fields["loss"].default)
    hparams = attack.get("loss_params", {})
    if not isinstance(method, str) or method not in METHODS or not isinstance(hparams, dict):
        return None
    try:
        params = loss_params(loss, hparams)
    except ValueError:
        return None
    if not params.needs_nonnegative():
        return None
    signed = METHODS[method].signed
    source = f"method {method} ({signed})" if signed else _signing_defense(defense)
    if source is None:
        return None
    fix = f"set attack.loss_params.{params.signed_fix} or use another loss" if params.signed_fix else "use another loss"
    return f"attack.loss: {loss} needs non-negative answers, but {source} makes them signed: {fix}"


def _signing_defense(defense: Any) -> str | None:
    """`defense <name> (<why>)` when the defense makes non-negative answers signed; None otherwise or when invalid."""
    if not isinstance(defense, Mapping):
        return None
    try:
        name, options = defense_params(dict(defense))
    except ConfigError:
        return None
    why = options.signs()
    return None if why is None else f"defense {name} ({why})"
