"""How much of a legitimate user's stream the similar-query detector flags (paper Table 12's cost to honest users).

The user is the one `evaluate.legit` simulates: it sends a downstream probe's train images, then its test images,
in batches of 256, on one account; each query is compared with every earlier one of that account. Printed: the
flagged share per window of 10,000 queries and overall, so the growth of false positives with history shows.

Run: SSLSTEAL_DATA=../shared/data python benchmarks/legit_detector_flags.py --victim CHECKPOINT [--threshold 0.9]
"""

from __future__ import annotations

import argparse

import torch

from sslsteal.evaluation.probe import probe_data
from sslsteal.specs.datasets import parse_ref
from sslsteal.specs.defenses import DetectorParams
from sslsteal.victim.checkpoint import load_victim
from sslsteal.victim.defenses.similarity import SimilarityDetector

BATCH, WINDOW = 256, 10_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--victim", required=True, help="victim checkpoint")
    parser.add_argument("--dataset", default="cifar10", help="the user's downstream task")
    parser.add_argument("--space", choices=["head", "rep"], default="head")
    parser.add_argument("--metric", choices=["cosine", "l2"], default="cosine")
    parser.add_argument("--threshold", type=float, default=0.9, help="as in sweeps/cpu/similarity_defense.yaml")
    args = parser.parse_args()
    victim = load_victim(args.victim).eval()
    protocol = victim.spec.evaluate
    task = probe_data(args.dataset, train_images=protocol.train_images, test_images=protocol.test_images, pool=parse_ref("cifar10:train"))
    detector = SimilarityDetector(DetectorParams(space=args.space, metric=args.metric, threshold=args.threshold))
    state = detector.init_state()
    flags = []
    with torch.no_grad():
        for part in (task.train_images, task.test_images):
            for i in range(0, len(part), BATCH):
                rep = victim.embed(part[i : i + BATCH])
                flags.append(detector(state, rep, victim.projection(rep)))
    flagged = torch.cat(flags).float()
    print(f"{args.space} {args.metric} > {args.threshold}: {len(flagged)} queries ({len(task.train_images)} train, then {len(task.test_images)} test)")
    for start in range(0, len(flagged), WINDOW):
        print(f"  queries {start + 1:>6}-{min(start + WINDOW, len(flagged)):>6}: {flagged[start : start + WINDOW].mean():.3f} flagged")
    print(f"  all: {flagged.mean():.3f} flagged; first 2,000: {flagged[:2000].mean():.3f}")


if __name__ == "__main__":
    main()
