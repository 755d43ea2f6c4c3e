"""The five ownership tests, each as one score per encoder (paper sections 5.1, 5.4, appendices E.3 and F).

`calibrate.run_test` compares the suspect's score with the references' (docs/ownership.md has the hypotheses).
Scores that depend on a representation's scale (distance, noise ball) use l2-normalised representations, so an
encoder is not "closer" or "calmer" merely because its outputs are smaller.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from sslsteal.data.augment import SimCLRAugment, to_float
from sslsteal.evaluation.ownership.calibrate import ownership_test
from sslsteal.evaluation.ownership.evidence import Evidence, Score, features
from sslsteal.evaluation.watermark import watermark_correct
from sslsteal.models import Embed


def _check_dims(test: str, reps: torch.Tensor, dim: int) -> None:
    """Tests that score in the victim's space (its head, its GMM, its outputs) need its dimensionality."""
    if reps.shape[1] != dim:
        raise ValueError(
            f"{test} test needs representations in the victim's space: an encoder outputs {reps.shape[1]} dimensions, "
            f"the victim {dim} (map a stolen encoder into the victim's space first, e.g. with the attack's adapter)"
        )


@ownership_test("watermark", stolen_if="greater", victim_control=True)
def watermark_score(evidence: Evidence, encoder: Embed) -> Score:
    """Table 4: how often the victim's rotation predictor is right on this encoder's representations of rotated
    private views (exact binomial p against chance, 1/2, as well)."""
    from scipy import stats

    predictor = evidence.victim.predictor
    if predictor is None:
        raise ValueError("victim has no watermark (no augmentation predictor): train it with a `watermark` section")
    correct = watermark_correct(lambda views: features(encoder, views, evidence.batch_size), predictor, evidence.private, evidence.seed)
    k, n = int(correct.sum()), len(correct)
    chance = float(stats.binomtest(k, n, 0.5, alternative="greater").pvalue)
    return Score(k / n, {"acc": 100.0 * k / n, "n": float(n), "p_chance": chance}, chance_p=chance)


def _view_losses(evidence: Evidence, encoder: Embed, images: torch.Tensor) -> np.ndarray:
    """Per image 1 - cos(z1, z2) of two SimCLR views under the victim's head, z = g_v(encoder(view)).

    The generator is re-seeded for every image set, so every encoder sees the same augmentations.
    """
    head = evidence.victim.head
    if head is None:
        raise ValueError(f"dataset inference reads the victim's projection head; {evidence.victim.spec.key} has none")
    head.eval()
    device = next(head.parameters()).device
    augment, gen = SimCLRAugment(), torch.Generator().manual_seed(evidence.seed)
    losses = []
    for start in range(0, len(images), evidence.batch_size):
        x = to_float(images[start : start + evidence.batch_size])
        y1, y2 = (features(encoder, augment(x, gen), evidence.batch_size) for _ in range(2))
        _check_dims("dataset_inference", y1, evidence.victim.encoder.dim)
        with torch.no_grad():
            z1, z2 = head(y1.to(device)), head(y2.to(device))
        losses.append((1 - F.cosine_similarity(z1, z2)).float().cpu())
    return torch.cat(losses).numpy().astype(np.float64)


@ownership_test("dataset_inference", stolen_if="greater", victim_control=True)
def dataset_inference_score(evidence: Evidence, encoder: Embed) -> Score:
    """Section 5.4: under the victim's head, how much lower this encoder's view-pair loss is on private images
    than on public ones (mean public loss - mean private loss)."""
    private = _view_losses(evidence, encoder, evidence.private)
    public = _view_losses(evidence, encoder, evidence.public)
    gap = float(public.mean() - private.mean())
    return Score(gap, {"private_loss": private.mean(), "public_loss": public.mean(), "n_private": float(len(private)), "n_public": float(len(public))})


def _gmm_split(evidence: Evidence, n_components: int) -> tuple[object, torch.Tensor]:
    """A diagonal GMM fitted to the victim's representations of half the private images, and the other half's rows."""
    from sklearn.mixture import GaussianMixture

    order = torch.randperm(len(evidence.private), generator=torch.Generator().manual_seed(evidence.seed))
    half = len(order) // 2
    victim_reps = evidence.reps(evidence.victim.encoder, "private")[order[:half]]
    gmm = GaussianMixture(n_components=min(n_components, half), covariance_type="diag", random_state=evidence.seed)
    gmm.fit(victim_reps.numpy().astype(np.float64))
    return gmm, order[half:]


@ownership_test("dataset_inference_gmm", stolen_if="greater", victim_control=True)
def dataset_inference_gmm_score(evidence: Evidence, encoder: Embed, n_components: int = 10) -> Score:
    """Dziedzic et al. 2022: how much likelier a GMM of the victim's private representations finds this encoder's
    representations of held-out private images than of public ones (mean log-likelihood gap)."""
    gmm, held_out = evidence.once(f"gmm{n_components}", lambda: _gmm_split(evidence, n_components))
    private_reps, public_reps = evidence.reps(encoder, "private")[held_out], evidence.reps(encoder, "public")
    _check_dims("dataset_inference_gmm", private_reps, evidence.victim.encoder.dim)
    private = gmm.score_samples(private_reps.numpy().astype(np.float64))
    public = gmm.score_samples(public_reps.numpy().astype(np.float64))
    return Score(
        float(private.mean() - public.mean()),
        {"private_loglik": private.mean(), "public_loglik": public.mean(), "n_private": float(len(private)), "n_public": float(len(public))},
    )


def noise_ball_sigmas(encoder: Embed, images: torch.Tensor, radius: float, copies: int, seed: int, batch_size: int) -> np.ndarray:
    """Per image sigma_i = std_j ||n(f(x_i + d_ij)) - n(f(x_i))||_2 over `copies` noisy copies, d_ij ~ U(0, radius)
    per pixel, n = l2 normalisation. The generator is re-seeded on every call, so every encoder sees the same copies."""
    gen = torch.Generator().manual_seed(seed)
    per_batch = max(1, batch_size // copies)
    sigmas = []
    for start in range(0, len(images), per_batch):
        x = to_float(images[start : start + per_batch])
        noise = torch.rand((len(x), copies, *x.shape[1:]), generator=gen) * radius
        noisy = (x[:, None] + noise).clamp(0, 1).flatten(0, 1)
        clean = F.normalize(features(encoder, x, batch_size), dim=1)
        moved = F.normalize(features(encoder, noisy, batch_size), dim=1).view(len(x), copies, -1)
        sigmas.append((moved - clean[:, None]).norm(dim=2).double().std(dim=1))
    return torch.cat(sigmas).numpy()


@ownership_test("noise_ball", stolen_if="less", victim_control=False)
def noise_ball_score(evidence: Evidence, encoder: Embed, radius: float = 0.05, copies: int = 10) -> Score:
    """Appendix F: how much this encoder's (normalised) representation of a private image moves under small noise,
    as the mean over images of sigma_i; a copy fitted to the victim's outputs is expected to react less."""
    if copies < 2:
        raise ValueError(f"noise_ball needs at least 2 noisy copies per image, got {copies}")
    sigmas = noise_ball_sigmas(encoder, evidence.private, radius, copies, evidence.seed, evidence.batch_size)
    return Score(float(sigmas.mean()), {"sigma": float(sigmas.mean()), "n": float(len(sigmas))})


@ownership_test("distance", stolen_if="less", victim_control=False)
def distance_score(evidence: Evidence, encoder: Embed) -> Score:
    """Table 18: the mean l2 distance between this encoder's and the victim's normalised representations of the
    private images (0 for the victim itself, 2 at most)."""
    victim = evidence.reps(evidence.victim.encoder, "private")
    reps = evidence.reps(encoder, "private")
    _check_dims("distance", reps, victim.shape[1])
    distance = (F.normalize(reps, dim=1) - F.normalize(victim, dim=1)).norm(dim=1).double()
    return Score(float(distance.mean()), {"distance": float(distance.mean()), "n": float(len(distance))})
