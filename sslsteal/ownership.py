"""Ownership tests: is a suspect encoder a stolen copy of the victim? Each test gives a one-sided p-value.

Tests (paper section 5.1, 5.4, appendices E.3 and F; docs/ownership.md has the hypotheses):
`watermark`, `dataset_inference`, `dataset_inference_gmm`, `noise_ball` and `distance`. A small p-value
is evidence that the suspect was stolen; every effect size is signed so that positive points to "stolen".
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from sslsteal.augment import SimCLRAugment, to_float
from sslsteal.evaluate import extract_features
from sslsteal.registry import Registry
from sslsteal.watermark import watermark_correct

if TYPE_CHECKING:
    from sslsteal.victim.checkpoint import Victim

Embed = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class OwnershipResult:
    """One test's outcome: statistic, one-sided p-value (small = stolen), signed effect size and details."""

    test: str
    statistic: float
    p_value: float
    effect: float
    details: dict[str, float] = field(default_factory=dict)

    def verdict(self, alpha: float = 0.05) -> bool:
        """Whether the test rejects "not stolen" at level alpha."""
        return self.p_value < alpha

    @property
    def stolen(self) -> bool:
        """The verdict at the conventional 5% level."""
        return self.verdict()

    def metrics(self) -> dict[str, float]:
        """Flat MLflow metrics: `ownership.<test>.{p_value,statistic,effect}` and every detail as `ownership.<test>.<key>`."""
        prefix = f"ownership.{self.test}."
        out = {prefix + "p_value": self.p_value, prefix + "statistic": self.statistic, prefix + "effect": self.effect}
        out.update({prefix + k: float(v) for k, v in self.details.items()})
        return out


@dataclass
class Evidence:
    """What the tests look at: the victim, the suspect, an independently trained reference and two image sets.

    Images are uint8 (or [0,1] float) batches of shape (N, 3, H, W); `private` are victim training images,
    `public` images the victim never trained on. Encoders are functions of float images (modules work).
    """

    victim: Victim
    suspect: Embed
    reference: Embed | None
    private: torch.Tensor
    public: torch.Tensor
    seed: int = 0
    batch_size: int = 256

    def __post_init__(self) -> None:
        for name in ("private", "public"):
            images = getattr(self, name)
            if images.ndim != 4 or len(images) < 4:
                raise ValueError(f"evidence.{name} must be an (N, C, H, W) image batch with N >= 4, got shape {tuple(images.shape)}")


OwnershipTest = Callable[[Evidence], OwnershipResult]
OWNERSHIP_TESTS: Registry[OwnershipTest] = Registry("ownership test")


def run_tests(names: list[str], evidence: Evidence) -> dict[str, OwnershipResult]:
    """Run the named tests (all names are checked before any runs) and return their results by name."""
    unknown = [n for n in names if n not in OWNERSHIP_TESTS]
    if unknown:
        raise ValueError(f"unknown ownership test {unknown[0]!r}; known: {', '.join(sorted(OWNERSHIP_TESTS))}")
    return {name: OWNERSHIP_TESTS[name](evidence) for name in names}


# --------------------------------------------------------------------------- helpers


def _features(encoder: Embed, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Float32 CPU representations, batched, without gradients (eval mode for modules)."""
    return torch.from_numpy(extract_features(encoder, images, batch_size))


def _result(test: str, ttest: object, effect: float, details: dict[str, float]) -> OwnershipResult:
    """Wrap a scipy t-test result; a NaN statistic (zero variance everywhere) means no evidence: p=1, statistic 0."""
    statistic, p_value = float(ttest.statistic), float(ttest.pvalue)  # type: ignore[attr-defined]
    degenerate = math.isnan(statistic) or math.isnan(p_value)
    if degenerate:
        statistic, p_value = 0.0, 1.0
    clean = {k: float(v) for k, v in details.items()} | {"degenerate": float(degenerate)}
    return OwnershipResult(test, statistic, min(max(p_value, 0.0), 1.0), float(effect), clean)


def _quiet(test: Callable[..., object], *args: object, **kwargs: object) -> object:
    """Run a scipy test without its precision-loss warnings: degenerate input is handled by `_result`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return test(*args, **kwargs)


def _cohen_d(a: np.ndarray, b: np.ndarray) -> float:
    """(mean(a) - mean(b)) / pooled standard deviation; 0 when both samples are constant."""
    pooled = math.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2))
    return float((a.mean() - b.mean()) / pooled) if pooled > 0 else 0.0


def _check_dims(test: str, reps: torch.Tensor, dim: int, who: str) -> None:
    """Tests that score in the victim's space (its head, its GMM, its outputs) need its dimensionality."""
    if reps.shape[1] != dim:
        raise ValueError(
            f"{test} test needs representations in the victim's space: the {who} outputs {reps.shape[1]} dimensions, "
            f"the victim {dim} (map the {who} into the victim's space first, e.g. with the attack's adapter)"
        )


# --------------------------------------------------------------------------- tests


@OWNERSHIP_TESTS.register("watermark")
def watermark_test(evidence: Evidence) -> OwnershipResult:
    """Table 4: the victim's rotation predictor is more often right on the suspect's representations than on the reference's."""
    from scipy import stats

    predictor = evidence.victim.predictor
    if predictor is None:
        raise ValueError("victim has no watermark (no augmentation predictor): train it with a `watermark` section")

    def embed(encoder: Embed) -> Embed:
        return lambda views: _features(encoder, views, evidence.batch_size)

    suspect = watermark_correct(embed(evidence.suspect), predictor, evidence.private, evidence.seed).astype(np.float64)
    if evidence.reference is None:
        baseline = 0.5
        ttest = _quiet(stats.ttest_1samp, suspect, popmean=0.5, alternative="greater")
    else:
        reference = watermark_correct(embed(evidence.reference), predictor, evidence.private, evidence.seed).astype(np.float64)
        baseline = float(reference.mean())
        ttest = _quiet(stats.ttest_ind, suspect, reference, equal_var=False, alternative="greater")
    details = {"acc": 100.0 * suspect.mean(), "reference_acc": 100.0 * baseline, "n": float(len(suspect))}
    return _result("watermark", ttest, suspect.mean() - baseline, details)


def _view_losses(victim: Victim, encoder: Embed, images: torch.Tensor, seed: int, batch_size: int) -> np.ndarray:
    """Per image 1 - cos(z1, z2) of two SimCLR views under the victim's head, z = g_v(encoder(view)).

    The generator is re-seeded for every image set, so private and public images get the same augmentations.
    """
    head = victim.head.eval()
    device = next(head.parameters()).device
    augment, gen = SimCLRAugment(), torch.Generator().manual_seed(seed)
    dim = victim.encoder.dim
    losses = []
    for start in range(0, len(images), batch_size):
        x = to_float(images[start : start + batch_size])
        y1, y2 = (_features(encoder, augment(x, gen), batch_size) for _ in range(2))
        _check_dims("dataset_inference", y1, dim, "suspect")
        with torch.no_grad():
            z1, z2 = head(y1.to(device)), head(y2.to(device))
        losses.append((1 - F.cosine_similarity(z1, z2)).float().cpu())
    return torch.cat(losses).numpy().astype(np.float64)


@OWNERSHIP_TESTS.register("dataset_inference")
def dataset_inference_test(evidence: Evidence) -> OwnershipResult:
    """Section 5.4: under the victim's head the suspect's view-pair loss is lower on private than on public images."""
    from scipy import stats

    private = _view_losses(evidence.victim, evidence.suspect, evidence.private, evidence.seed, evidence.batch_size)
    public = _view_losses(evidence.victim, evidence.suspect, evidence.public, evidence.seed, evidence.batch_size)
    ttest = _quiet(stats.ttest_ind, private, public, equal_var=False, alternative="less")
    details = {
        "private_loss": private.mean(),
        "public_loss": public.mean(),
        "cohen_d": _cohen_d(public, private),
        "n_private": float(len(private)),
        "n_public": float(len(public)),
    }
    return _result("dataset_inference", ttest, public.mean() - private.mean(), details)


@OWNERSHIP_TESTS.register("dataset_inference_gmm")
def dataset_inference_gmm_test(evidence: Evidence, n_components: int = 10) -> OwnershipResult:
    """Dziedzic et al. 2022: a GMM of the victim's representations of half the private images is likelier
    on the suspect's representations of the other private half than on public images."""
    from scipy import stats
    from sklearn.mixture import GaussianMixture

    order = torch.randperm(len(evidence.private), generator=torch.Generator().manual_seed(evidence.seed))
    half = len(order) // 2
    fit_images, held_out = evidence.private[order[:half]], evidence.private[order[half:]]
    victim_reps = _features(evidence.victim.encoder, fit_images, evidence.batch_size)
    private_reps = _features(evidence.suspect, held_out, evidence.batch_size)
    public_reps = _features(evidence.suspect, evidence.public, evidence.batch_size)
    _check_dims("dataset_inference_gmm", private_reps, victim_reps.shape[1], "suspect")
    gmm = GaussianMixture(n_components=min(n_components, half), covariance_type="diag", random_state=evidence.seed)
    gmm.fit(victim_reps.numpy().astype(np.float64))
    private = gmm.score_samples(private_reps.numpy().astype(np.float64))
    public = gmm.score_samples(public_reps.numpy().astype(np.float64))
    ttest = _quiet(stats.ttest_ind, private, public, equal_var=False, alternative="greater")
    details = {
        "private_loglik": private.mean(),
        "public_loglik": public.mean(),
        "cohen_d": _cohen_d(private, public),
        "n_fit": float(half),
        "n_private": float(len(private)),
        "n_public": float(len(public)),
    }
    return _result("dataset_inference_gmm", ttest, private.mean() - public.mean(), details)


def noise_ball_sigmas(encoder: Embed, images: torch.Tensor, radius: float, copies: int, seed: int, batch_size: int) -> np.ndarray:
    """Per image sigma_i = std_j ||f(x_i + d_ij) - f(x_i)||_2 over `copies` noisy copies, d_ij ~ U(0, radius) per pixel.

    The generator is re-seeded on every call, so every encoder sees the same noisy copies.
    """
    gen = torch.Generator().manual_seed(seed)
    per_batch = max(1, batch_size // copies)
    sigmas = []
    for start in range(0, len(images), per_batch):
        x = to_float(images[start : start + per_batch])
        noise = torch.rand((len(x), copies, *x.shape[1:]), generator=gen) * radius
        noisy = (x[:, None] + noise).clamp(0, 1).flatten(0, 1)
        clean = _features(encoder, x, batch_size)
        dist = (_features(encoder, noisy, batch_size).view(len(x), copies, -1) - clean[:, None]).norm(dim=2)
        sigmas.append(dist.double().std(dim=1))
    return torch.cat(sigmas).numpy()


@OWNERSHIP_TESTS.register("noise_ball")
def noise_ball_test(evidence: Evidence, radius: float = 0.05, copies: int = 10) -> OwnershipResult:
    """Appendix F: a stolen encoder reacts less to small input noise, so its sigma_i are below the victim's (paired)."""
    from scipy import stats

    if copies < 2:
        raise ValueError(f"noise_ball needs at least 2 noisy copies per image, got {copies}")

    def sigmas(encoder: Embed) -> np.ndarray:
        return noise_ball_sigmas(encoder, evidence.private, radius, copies, evidence.seed, evidence.batch_size)

    victim, suspect = sigmas(evidence.victim.encoder), sigmas(evidence.suspect)
    ttest = _quiet(stats.ttest_rel, suspect, victim, alternative="less")
    details = {"victim_sigma": victim.mean(), "suspect_sigma": suspect.mean(), "n": float(len(victim))}
    if evidence.reference is not None:
        details["reference_sigma"] = sigmas(evidence.reference).mean()
    return _result("noise_ball", ttest, victim.mean() - suspect.mean(), details)


@OWNERSHIP_TESTS.register("distance")
def distance_test(evidence: Evidence) -> OwnershipResult:
    """Table 18: on private images the suspect's representations are closer (l2) to the victim's than the reference's are."""
    from scipy import stats

    if evidence.reference is None:
        raise ValueError("distance test needs a reference encoder (trained independently with the victim's recipe)")
    victim = _features(evidence.victim.encoder, evidence.private, evidence.batch_size)
    suspect = _features(evidence.suspect, evidence.private, evidence.batch_size)
    reference = _features(evidence.reference, evidence.private, evidence.batch_size)
    _check_dims("distance", suspect, victim.shape[1], "suspect")
    _check_dims("distance", reference, victim.shape[1], "reference")
    d_suspect = (suspect - victim).norm(dim=1).double().numpy()
    d_reference = (reference - victim).norm(dim=1).double().numpy()
    ttest = _quiet(stats.ttest_rel, d_suspect, d_reference, alternative="less")
    details = {"suspect_distance": d_suspect.mean(), "reference_distance": d_reference.mean(), "n": float(len(d_suspect))}
    return _result("distance", ttest, d_reference.mean() - d_suspect.mean(), details)
