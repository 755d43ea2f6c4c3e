"""FGSM transferability (paper appendix A.2, Figure 3): adversarial examples crafted on a source classifier and
scored on the victim's encoder with the victim's own linear head.

Sources: the stolen encoder with a linear head fitted on its features (the representation thief), a **knockoff**
classifier (Orekondy et al., 2019) trained end to end on the victim's downstream predictions for the same number
of paid queries, and a **random** encoder with its own head (the floor); the victim itself can be a source too
(a white-box upper bound, used by the tests). Examples are crafted only for scored test images the source
classifies correctly, never for a queried image; success is the fraction the victim then misclassifies.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sslsteal.attacks.training import train
from sslsteal.core.seeding import generator, seeded
from sslsteal.data.augment import AUGMENTATIONS, to_float
from sslsteal.evaluation.probe import ProbeData, extract_features
from sslsteal.models import Embed, Encoder, build_encoder
from sslsteal.specs.attack import AttackSpec


class Classifier(nn.Module):
    """An encoder with a linear head: float images in [0, 1] -> class logits (differentiable in the input)."""

    def __init__(self, encoder: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def linear_head(features: np.ndarray, labels: np.ndarray, seed: int = 0) -> nn.Linear:
    """The evaluation's probe (standardised features, multinomial logistic regression) folded into one linear layer;
    every class must appear in `labels` (a class the probe never saw has no logit)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    classes = int(labels.max()) + 1
    if len(np.unique(labels)) != classes or classes < 3:
        raise ValueError(f"the probe's train images must cover all of at least 3 classes 0..{classes - 1}, got {sorted(np.unique(labels).tolist())}")
    scaler = StandardScaler().fit(features)
    clf = LogisticRegression(max_iter=1000, C=1.0, random_state=seed).fit(scaler.transform(features), labels)
    head = nn.Linear(features.shape[1], classes)
    with torch.no_grad():
        weight = clf.coef_ / scaler.scale_  # the standardisation folded in: w.(x - m)/s + b = (w/s).x + (b - (w/s).m)
        head.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        head.bias.copy_(torch.as_tensor(clf.intercept_ - weight @ scaler.mean_, dtype=torch.float32))
    return head


def probe_classifier(encoder: nn.Module, task: ProbeData, device: torch.device) -> Classifier:
    """`encoder` with a linear head fitted on its features of the task's train images (frozen, in eval mode)."""
    head = linear_head(extract_features(encoder, task.train_images, device=device), task.train_labels)
    model = Classifier(encoder, head).to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, device: torch.device, batch_size: int = 512) -> torch.Tensor:
    """Top-1 class of every image (uint8 or float), on the CPU."""
    out = [model(to_float(images[s : s + batch_size]).to(device)).argmax(dim=1).cpu() for s in range(0, len(images), batch_size)]
    return torch.cat(out)


def fgsm(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float) -> torch.Tensor:
    """One signed-gradient step of size `eps` (in [0, 1] pixel units) that raises `model`'s loss, clipped to [0, 1]."""
    x = images.clone().requires_grad_(True)
    loss = F.cross_entropy(model(x), labels)
    (grad,) = torch.autograd.grad(loss, x)
    return (images + eps * grad.sign()).clamp(0.0, 1.0).detach()


def transfer_rates(
    sources: dict[str, nn.Module],
    victim: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    epsilons: list[float],
    device: torch.device,
    batch_size: int = 256,
) -> dict[str, float]:
    """`transfer.fgsm.<source>.<eps>`: the fraction of a source's adversarial examples the victim misclassifies, over
    the images the source classifies correctly (`transfer.fgsm.<source>.images` of them)."""
    metrics: dict[str, float] = {}
    for name, source in sources.items():
        correct = predict(source, images, device) == labels
        kept, kept_labels = images[correct], labels[correct]
        metrics[f"transfer.fgsm.{name}.images"] = float(len(kept))
        for eps in epsilons:
            fooled = 0
            for s in range(0, len(kept), batch_size):
                x = to_float(kept[s : s + batch_size]).to(device)
                y = kept_labels[s : s + batch_size].to(device)
                fooled += int((predict(victim, fgsm(source, x, y, eps), device) != y.cpu()).sum())
            metrics[f"transfer.fgsm.{name}.{eps:g}"] = fooled / len(kept) if len(kept) else float("nan")
    return metrics


def knockoff(spec: AttackSpec, predictions: torch.Tensor, images: torch.Tensor, encoder_name: str, device: torch.device, progress: bool = False) -> Classifier:
    """Knockoff nets: a classifier of the attacker's architecture (its own init stream) trained end to end with
    soft-label cross-entropy on the victim's class probabilities `predictions` for `images`, with the attack's recipe."""
    with seeded(spec.seed, "knockoff.init"):
        encoder: Encoder = build_encoder(spec.encoder or encoder_name)
        head = nn.Linear(encoder.dim, predictions.shape[1])
    model = Classifier(encoder, head).to(device)
    targets = predictions.to(device)
    aug = AUGMENTATIONS[spec.augment]
    aug_gen = generator(spec.seed, "knockoff.augment", device)

    def step(idx: torch.Tensor) -> torch.Tensor:
        x = to_float(images[idx]).to(device)
        if aug is not None:
            x = aug(x, aug_gen)
        return F.cross_entropy(model(x), targets[idx.to(device)])

    train(
        params=list(model.parameters()),
        modules=[model],
        step=step,
        items=len(images),
        epochs=spec.epochs_for(len(images)),
        spec=spec,
        role="knockoff.order",
        desc="knockoff",
        progress=progress,
    )
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@torch.no_grad()
def victim_predictions(query: Embed, head: nn.Linear, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The victim's downstream class probabilities for `images`, bought through `query` (each image a paid query)
    and passed through the victim's own linear head, as a classification API would answer."""
    head = head.cpu()
    out = [F.softmax(head(query(images[s : s + batch_size]).float().cpu()), dim=1) for s in range(0, len(images), batch_size)]
    return torch.cat(out)
