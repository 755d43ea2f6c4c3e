"""The attack methods a spec may name (`attack.method`), each with its options (`attack.method_params`) as a strict
pydantic model and the number of answers one query image costs under it. The methods live in `sslsteal.attacks`,
one file each; docs/attacks.md says where each default comes from."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, ConfigDict, Field

from sslsteal.core.registry import Registry
from sslsteal.specs.base import StrictModel, options_of


class MethodParams(StrictModel):
    """A method's options; the class also says what the method is and how it spends the budget."""

    model_config = ConfigDict(strict=True)

    description: ClassVar[str]
    own_objective: ClassVar[bool] = False
    """The method trains with its own objective: `attack.loss` and `attack.loss_params` do not apply."""
    signed: ClassVar[str] = ""
    """Why the method's loss compares signed vectors (head outputs), quoted when a loss needs non-negative answers."""
    budget_key: ClassVar[str] = ""
    """The option that sets how many answers an image costs (`method_params.<key>`); "" when the strategy does."""
    min_images: ClassVar[int] = 1
    """Query images the method needs at least (a contrastive loss over images needs two)."""

    def answers_per_image(self, strategy_views: int) -> int:
        """Answers the victim gives per query image (`strategy_views`: the spec's views per image under its strategy)."""
        return strategy_views

    def images_drawn(self, needed: int) -> int:
        """Pool images the method looks at to choose its `needed` query images (only those chosen are queried)."""
        return needed


METHODS: Registry[type[MethodParams]] = Registry("attack method")
MethodName = Annotated[str, AfterValidator(METHODS.check)]
"""A spec field naming a declared attack method."""


def method_params(name: str, options: dict[str, Any]) -> MethodParams:
    """The validated options of method `name`; ValueError `method_params.<key>: ...` naming the first problem."""
    return options_of(
        METHODS[METHODS.check(name)],
        options,
        lambda key, accepted: f"method_params.{key}: method {name} has no option {key!r}; it accepts: {accepted or 'none'}",
        lambda where, message, got: f"method_params.{where}: {message} (got {got!r})",
    )


@METHODS.register("direct")
class Direct(MethodParams):
    description = "Algorithm 1: the stolen encoder's representation is matched to the victim's"


@METHODS.register("recreate_head")
class RecreateHead(MethodParams):
    description = "Algorithm 2: a head trained on the victim's outputs of two views per image, then frozen, compares the two"
    signed = "both sides pass through the recreated head"


@METHODS.register("access_head")
class AccessHead(MethodParams):
    description = "the victim answers its projection-head output; the attacker trains an encoder plus a head to match it"
    signed = "the victim answers its projection head's output"


@METHODS.register("stolenencoder")
class StolenEncoder(MethodParams):
    description = (
        "StolenEncoder (Liu et al., CCS 2022): one answer per image; the copy's features of the image and of k local "
        "views (flip, colour jitter, grayscale; no crop) are pulled to that answer, all L2-normalised"
    )
    own_objective = True

    views: int = Field(9, ge=1, description="k: local views per image and step (their code: 9); answered once, never re-queried")
    weight: float = Field(9.0, ge=0, allow_inf_nan=False, description="lambda: weight of the views' term, divided by k (their code: 9)")
    distance: Literal["l2", "l1", "cosine"] = Field("l2", description="distance between normalised features (their code: l2)")

    def answers_per_image(self, strategy_views: int) -> int:
        return 1


@METHODS.register("contsteal")
class ContSteal(MethodParams):
    description = (
        "Cont-Steal (Sha et al., CVPR 2023): the victim answers augmented views of each image; NT-Xent over the 2N "
        "victim and copy embeddings with (victim_i, copy_i) as positives and every other entry as a negative"
    )
    own_objective = True
    budget_key = "method_params.views"

    views: int = Field(10, ge=1, description="SimCLR views of each image the victim answers, each paid (their code: a fresh one every epoch)")
    temperature: float = Field(0.5, gt=0, allow_inf_nan=False, description="NT-Xent temperature (their code: 0.5)")

    def answers_per_image(self, strategy_views: int) -> int:
        return self.views


@METHODS.register("rda")
class RDA(MethodParams):
    description = (
        "RDA (Wu et al., ECCV 2024): a prototype per image, the mean of the victim's normalised answers to P views; "
        "several stronger local views are pulled to it by InfoNCE against the other prototypes and copies plus an "
        "alignment term -log((cos + 1) / ||s - p||^2)"
    )
    own_objective = True
    budget_key = "method_params.prototype_views"
    min_images = 2

    prototype_views: int = Field(10, ge=1, description="P: answered views averaged into one prototype (their code: 10 for CIFAR-size victims)")
    train_views: int = Field(5, ge=1, description="local views per image and step pulled to its prototype, never queried (their code: 5)")
    temperature: float = Field(0.07, gt=0, allow_inf_nan=False, description="temperature of the contrastive term (their code: 0.07)")
    contrast_weight: float = Field(1.0, ge=0, allow_inf_nan=False, description="weight of L_contrast (their code: 1)")
    align_weight: float = Field(1.0, ge=0, allow_inf_nan=False, description="weight of L_align (their code: 1)")

    def answers_per_image(self, strategy_views: int) -> int:
        return self.prototype_views


@METHODS.register("coverage")
class Coverage(MethodParams):
    description = (
        "ours: direct extraction on the query images that cover the attacker's own feature space best: greedy "
        "k-center over `candidates` pool images per query image, embedded by the copy's initial weights (no query)"
    )

    candidates: int = Field(8, ge=1, description="pool images looked at per query image (capped by the pool); only the chosen ones are queried")

    def images_drawn(self, needed: int) -> int:
        return needed * self.candidates


@METHODS.register("consistency")
class Consistency(MethodParams):
    description = (
        "ours: direct extraction plus a mean-teacher consistency term on `unlabeled` pool images per query image that "
        "are never queried: the copy's output on one view is pulled to an EMA copy's output on another"
    )

    unlabeled: int = Field(16, ge=1, description="never-queried pool images drawn per query image (capped by the pool); they cost no query")
    weight: float = Field(1.0, ge=0, allow_inf_nan=False, description="weight of the consistency term beside the stealing loss")
    decay: float = Field(0.99, ge=0, lt=1, allow_inf_nan=False, description="EMA decay of the teacher copy per optimizer step")
    augment: Literal["weak", "simclr"] = Field("simclr", description="views of the unqueried images (simclr: the victim's own kind of invariance)")

    def images_drawn(self, needed: int) -> int:
        return needed * (1 + self.unlabeled)
