"""Similar-query detector error rates on a real victim (paper Tables 13-15).

A legitimate stream sends N distinct CIFAR-10 test images; an attacker stream sends two SimCLR views of
each of N other images, consecutively. For each threshold the `similarity` detector's false-positive
rate (legitimate queries flagged) and detection rate (attacker's second views flagged) are printed.

Run: SSLSTEAL_DATA=../shared/data python benchmarks/detector_rates.py --victim CHECKPOINT [--images 2000]
"""

from __future__ import annotations

import argparse

import torch

from sslsteal.data import loaders
from sslsteal.data.augment import SimCLRAugment, to_float
from sslsteal.victim.checkpoint import load_victim
from sslsteal.victim.defenses import build_defense, detection_rates

THRESHOLDS = {("head", "cosine"): [0.5, 0.7, 0.8, 0.9, 0.95], ("rep", "cosine"): [0.8, 0.9, 0.95, 0.98, 0.99]}


def _outputs(victim, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    rep = victim.embed(images)
    return rep, victim.head(rep)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--victim", required=True, help="victim checkpoint")
    parser.add_argument("--images", type=int, default=2000, help="images per stream")
    args = parser.parse_args()
    victim = load_victim(args.victim)
    pool = loaders.load("cifar10:test", size=2 * args.images, seed=0).images
    legit = _outputs(victim, pool[: args.images])
    base = to_float(pool[args.images :])
    gen = torch.Generator().manual_seed(0)
    aug = SimCLRAugment()
    views = torch.stack([aug(base, gen), aug(base, gen)], dim=1).flatten(0, 1)  # image i's two views are adjacent
    with torch.no_grad():
        attacker = _outputs(victim, views)
    print(f"{'space':<6}{'metric':<8}{'threshold':>10}{'FPR legit':>11}{'detected':>10}{'FNR':>7}")
    for (space, metric), thresholds in THRESHOLDS.items():
        for t in thresholds:
            defense = build_defense({"name": "similarity", "space": space, "metric": metric, "threshold": t})
            r = detection_rates(defense, legit, attacker)
            print(f"{space:<6}{metric:<8}{t:>10.2f}{r['false_positive_rate']:>11.3f}{r['detection_rate']:>10.3f}{r['false_negative_rate']:>7.3f}")


if __name__ == "__main__":
    main()
