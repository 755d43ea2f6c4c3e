"""A run's FGSM transferability (`evaluate.transfer`, appendix A.2): the victim's own classifier, the sources the
spec names, and the rates on the first downstream dataset's scored test images."""

from __future__ import annotations

import torch

from sslsteal.attacks import StolenModel
from sslsteal.attacks.query import BudgetedQuery
from sslsteal.core.seeding import seeded
from sslsteal.evaluation.probe import ProbeData, probe_data
from sslsteal.evaluation.protocol import check_disjoint
from sslsteal.evaluation.transfer import knockoff, probe_classifier, transfer_rates, victim_predictions
from sslsteal.models import Embed, build_encoder
from sslsteal.specs.steal import StealSpec
from sslsteal.victim.checkpoint import Victim


def transfer_task(spec: StealSpec, victim: Victim) -> ProbeData:
    """The first downstream dataset's probe: train images for the heads, up to `transfer.images` scored test images."""
    assert spec.evaluate.transfer is not None
    protocol = victim.spec.evaluate
    dataset = (spec.evaluate.downstream or protocol.downstream)[0]
    return probe_data(dataset, train_images=protocol.train_images, test_images=spec.evaluate.transfer.images, pool=spec.attack.pool, root=spec.data_root)


def transfer_metrics(spec: StealSpec, stolen: StolenModel, victim: Victim, knockoff_query: Embed, device: torch.device) -> dict[str, float]:
    """`transfer.fgsm.<source>.<eps>` (and `.images`) for each source; the knockoff buys the victim's predictions for
    the attacker's own query images through `knockoff_query`, one paid query each (`transfer.knockoff.queries_used`)."""
    transfer = spec.evaluate.transfer
    assert transfer is not None and stolen.queried is not None
    task = transfer_task(spec, victim)
    check_disjoint(f"transfer images ({task.name})", task.test, stolen.queried)
    target = probe_classifier(victim.encoder, task, device)
    sources: dict[str, torch.nn.Module] = {}
    metrics: dict[str, float] = {}
    if "stolen" in transfer.sources:
        sources["stolen"] = probe_classifier(stolen.encoder, task, device)
    if "knockoff" in transfer.sources:
        paid = BudgetedQuery(knockoff_query, spec.attack.queries)
        images = stolen.queried.images
        predictions = victim_predictions(paid, target.head, images)
        sources["knockoff"] = knockoff(spec.attack, predictions, images, victim.spec.encoder, device)
        metrics["transfer.knockoff.queries_used"] = float(paid.used)
    if "random" in transfer.sources:
        with seeded(spec.attack.seed, "transfer.random_init"):
            encoder = build_encoder(spec.attack.encoder or victim.spec.encoder).to(device)
        sources["random"] = probe_classifier(encoder, task, device)
    return metrics | transfer_rates(sources, target, task.test.images, task.test.labels, transfer.epsilons, device)
