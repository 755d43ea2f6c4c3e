"""What is measured: the linear-evaluation protocol (`ProbeSpec`), what a stolen encoder is scored on
(`EvaluateSpec`) and the ownership tests a spec may name (the code is `sslsteal.evaluation.probe` and `sslsteal.evaluation.ownership`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from sslsteal.core.registry import Registry
from sslsteal.specs.base import StrictModel
from sslsteal.specs.datasets import DATASETS, DataRef, DataRefText, parse_ref

OWNERSHIP_TESTS: Registry[str] = Registry("ownership test")
"""Ownership test -> what it scores; the scorer attaches with `sslsteal.evaluation.ownership.calibrate.ownership_test`."""

OWNERSHIP_TESTS.add("watermark", "Table 4: the victim's rotation predictor's accuracy on the suspect's representations of rotated private views")
OWNERSHIP_TESTS.add("dataset_inference", "Section 5.4: how much lower the suspect's view-pair loss under the victim's head is on private than on public images")
OWNERSHIP_TESTS.add(
    "dataset_inference_gmm", "GMM of the victim's private representations: log-likelihood gap of the suspect's private and public representations"
)
OWNERSHIP_TESTS.add("noise_ball", "Appendix F: how much the suspect's representation of a private image moves under small input noise")
OWNERSHIP_TESTS.add("distance", "Table 18: mean l2 distance between the suspect's and the victim's normalised representations of private images")


class ProbeSpec(StrictModel):
    """The linear-evaluation protocol: downstream datasets and (optionally) subset sizes of their splits."""

    downstream: list[str] = Field(default_factory=lambda: ["cifar10"], min_length=1)
    train_images: int | None = Field(None, gt=0, description="probe-training images per dataset; all when null")
    test_images: int | None = Field(None, gt=0, description="probe-test images per dataset (outside the attacker's query pool); all when null")

    @field_validator("downstream")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        return DATASETS.check_all(names)

    def key(self, dataset: str, pool: DataRef | None = None) -> str:
        """Cache key of one dataset's result under this protocol; names the query pool when it removes test images."""
        base = f"{dataset}|train={self.train_images or 'all'}|test={self.test_images or 'all'}"
        return base + (f"|minus={pool}" if pool is not None and pool.overlap(parse_ref(f"{dataset}:test")) else "")


TransferSource = Literal["stolen", "knockoff", "random"]


def _all_sources() -> list[TransferSource]:
    return ["stolen", "knockoff", "random"]


class TransferSpec(StrictModel):
    """FGSM transferability (appendix A.2): examples crafted on each source classifier for scored test images it
    classifies correctly, scored on the victim's encoder with the victim's own linear head."""

    epsilons: list[Annotated[float, Field(gt=0, le=1)]] = Field(
        default_factory=lambda: [0.01, 0.02, 0.03, 0.05, 0.1], min_length=1, description="FGSM step sizes in [0, 1] pixel units"
    )
    images: int = Field(1000, gt=0, description="downstream test images (outside the query pool) the examples are crafted from")
    sources: list[TransferSource] = Field(
        default_factory=_all_sources,
        min_length=1,
        description="stolen: the copy with its own probe head; knockoff: a classifier trained on the victim's predictions for "
        "the same paid queries (its own account); random: a random encoder with its own head",
    )

    @field_validator("sources")
    @classmethod
    def _distinct(cls, names: list[TransferSource]) -> list[TransferSource]:
        if len(set(names)) != len(names):
            raise ValueError(f"each source once, got {names}")
        return names


class EvaluateSpec(StrictModel):
    """What to measure on the stolen encoder."""

    downstream: list[str] | None = Field(None, description="linear-evaluation datasets; the victim's when null")
    fidelity_data: DataRefText | None = Field(
        None, description="held-out images for fidelity (outside the query pool); the other split of query_data when null"
    )
    fidelity_images: int = Field(2000, gt=0)
    val_images: int = Field(
        0, ge=0, description="downstream train images (outside the query pool) held out to score val_acc.<ds>, the objective a search optimises; 0 = off"
    )
    ownership: list[str] = Field(default_factory=list, description="ownership tests to run on the stolen encoder (docs/ownership.md)")
    ownership_images: int = Field(
        1000, ge=4, description="private (victim train) and public (victim test, outside the query pool) images each ownership test sees"
    )
    references: int = Field(
        3, ge=3, description="independently trained references (1..N of the victim) that calibrate the ownership tests; each trains once, like the victim"
    )
    legit: bool = Field(False, description="also measure legit_acc: a legitimate user's accuracy through the same defense")
    save_encoder: bool = Field(False, description="sweeps: also log the stolen encoder (a `steal --save-encoder` file) as an MLflow artifact")
    transfer: TransferSpec | None = Field(
        None, description="FGSM transferability on the first downstream dataset (transfer.fgsm.<source>.<eps>); off when null"
    )
    monitor_images: int = Field(
        0, ge=0, description="downstream train-split images for a per-epoch k-NN accuracy (val.knn_acc, with half as many scored), for pruning; 0 = off"
    )

    @field_validator("downstream")
    @classmethod
    def _known(cls, names: list[str] | None) -> list[str] | None:
        return None if names is None else DATASETS.check_all(names)

    @field_validator("ownership")
    @classmethod
    def _known_tests(cls, names: list[str]) -> list[str]:
        return OWNERSHIP_TESTS.check_all(names)
