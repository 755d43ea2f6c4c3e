"""Bulk embedding as Ray Data batch inference: an encoder's features over a large image set computed by a fixed pool
of Ray actors (each with the GPUs `run.bulk_inference` gives it), instead of in the trial's own process.

A sweep turns it on when a split its trials embed has `run.bulk_inference.min_images` images or more: each trial
then reserves the pool's bundles beside its own (`trial_resources`), so the actors it starts run inside its
placement group and concurrent trials never wait on each other's pools. Smaller sets stay in-process.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sslsteal.models import Encoder
from sslsteal.specs.sweep import BulkInference, Resources


class EmbedBatches:
    """The actor pool's body: the encoder rebuilt once per actor from its state, then image batches -> features."""

    def __init__(self, name: str, refs: list[Any], cpus: float) -> None:
        import ray

        from sslsteal.core.device import select_device, set_threads
        from sslsteal.models import build_encoder

        set_threads(cpus)
        self.device = select_device()
        state, self.images = ray.get(refs)  # the images stay in shared memory: each batch names its rows
        self.encoder = build_encoder(name)
        self.encoder.load_state_dict(state)
        self.encoder.to(self.device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import ray

        from sslsteal.evaluation.probe import extract_features

        [start], [stop] = batch["start"], batch["stop"]  # one chunk of rows per batch
        images = torch.from_numpy(self.images[start:stop].copy())  # torch wants writable memory
        features = extract_features(self.encoder, images, device=self.device)[None]
        return {"start": batch["start"], "features": features, "node": np.array([ray.get_runtime_context().get_node_id()])}


class BulkRoute:
    """What a trial installs as `evaluate.embed_in_bulk`'s route: `embed` with the sweep's settings, counting the
    images it embedded and the nodes its actors ran on (the trial logs both)."""

    def __init__(self, bulk: BulkInference) -> None:
        self.bulk = bulk
        self.images = 0
        self.nodes: set[str] = set()

    def __call__(self, encoder: Encoder, images: torch.Tensor) -> np.ndarray:
        features = embed(encoder, images, self.bulk, nodes=self.nodes)
        self.images += len(images)
        return features


def embed(encoder: Encoder, images: torch.Tensor, bulk: BulkInference, nodes: set[str] | None = None) -> np.ndarray:
    """`encoder`'s float32 (N, dim) features of `images`, in order, computed by `bulk.actors` actors through Ray Data;
    the ids of the nodes the actors ran on are added to `nodes` when given."""
    import ray
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    refs = [ray.put({k: v.detach().cpu() for k, v in encoder.state_dict().items()}), ray.put(images.cpu().numpy())]
    context = ray.data.DataContext.get_current()
    group = ray.util.get_current_placement_group()
    if group is not None:  # a trial: Ray Data schedules outside placement groups unless told, and the pool's bundles are here
        inside = PlacementGroupSchedulingStrategy(group, placement_group_capture_child_tasks=True)
        context.scheduling_strategy = context.scheduling_strategy_large_args = inside
    cuts = range(0, len(images), bulk.batch_size)
    chunks = ray.data.from_items([{"start": a, "stop": min(a + bulk.batch_size, len(images))} for a in cuts])  # no read tasks to schedule
    features = chunks.map_batches(
        EmbedBatches,
        fn_constructor_kwargs={"name": encoder.name, "refs": refs, "cpus": bulk.cpu},
        compute=ray.data.ActorPoolStrategy(size=bulk.actors),
        num_cpus=bulk.cpu,
        num_gpus=bulk.gpu,
        batch_size=1,
        batch_format="numpy",
    )
    out = np.empty((len(images), encoder.dim), dtype=np.float32)
    done = set()
    for batch in features.iter_batches(batch_size=None, batch_format="numpy"):
        for start, block in zip(batch["start"], batch["features"], strict=True):
            out[start : start + len(block)] = block
            done.add(int(start))
        if nodes is not None:
            nodes.update(str(node) for node in batch["node"])
    if done != set(cuts):
        raise RuntimeError(f"bulk inference returned {len(done)} of {len(cuts)} chunks of {len(images)} images")
    return out


def trial_resources(own: Resources, bulk: BulkInference | None) -> Any:
    """What Tune reserves for one trial: its own CPUs/GPUs, plus one bundle per bulk-inference actor when bulk is on."""
    from ray import tune

    if bulk is None:
        return {"cpu": own.cpu, "gpu": own.gpu}
    return tune.PlacementGroupFactory([{"CPU": own.cpu, "GPU": own.gpu}] + [{"CPU": bulk.cpu, "GPU": bulk.gpu}] * bulk.actors)


def bulk_needed(bulk: BulkInference, splits: list[str]) -> BulkInference | None:
    """`bulk` when any of these splits reaches its threshold (so a trial may embed that many images), else None."""
    from sslsteal.specs.datasets import DATASETS, parse_spec

    sizes = [DATASETS[name].sizes[split] for name, split in map(parse_spec, splits)]
    return bulk if sizes and max(sizes) >= bulk.min_images else None
