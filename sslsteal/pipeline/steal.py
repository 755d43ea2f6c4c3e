"""One stealing run without Ray: resolve the victim, attack it within the budget, evaluate, report.

This is what `sslsteal steal RUN.yaml` does, and what every sweep trial does through the shared victim actor.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sslsteal.attacks import StolenModel, steal
from sslsteal.attacks.base import EpochCallback
from sslsteal.attacks.query import BudgetedQuery
from sslsteal.core.device import select_device
from sslsteal.data.loaders import ImageSet
from sslsteal.models import Embed
from sslsteal.specs.attack import AttackSpec
from sslsteal.specs.datasets import DataRef
from sslsteal.specs.external import ExternalVictimSpec
from sslsteal.specs.steal import StealSpec
from sslsteal.specs.victim import RemoteVictimSpec, VictimSpec, read_victim
from sslsteal.victim.checkpoint import Victim, load_victim

if TYPE_CHECKING:
    from sslsteal.evaluation.ownership import OwnershipResult


def victim_source(
    ref: str | VictimSpec | ExternalVictimSpec | RemoteVictimSpec, *, base: Path | None = None, data_root: str | None = None
) -> tuple[VictimSpec | ExternalVictimSpec | None, Path | None]:
    """(spec, checkpoint) for a victim reference: a checkpoint file/dir gives (None, path); an external encoder its
    spec and its packaged checkpoint (built in the cache on first use); a YAML or inline spec of a victim trained
    here its spec and the shipped or cached checkpoint matching its hash, or None when it must be trained; an
    endpoint those of its `model`."""
    from sslsteal.victim.checkpoint import find_cached
    from sslsteal.victim.external import external_checkpoint

    if isinstance(ref, RemoteVictimSpec):
        return victim_source(ref.model, base=base, data_root=data_root)

    config_path: Path | None = None
    spec: VictimSpec | ExternalVictimSpec
    if isinstance(ref, str):
        path = Path(ref)
        if not path.is_absolute() and base is not None and not path.exists():
            path = base / path
        if path.suffix in (".pt", ".pth") or path.is_dir():
            return None, path
        spec, config_path = read_victim(path), path
    else:
        spec = ref.resolved(base or Path.cwd()) if isinstance(ref, ExternalVictimSpec) else ref
    if data_root and not spec.data_root:
        spec = spec.model_copy(update={"data_root": data_root})
    if isinstance(spec, ExternalVictimSpec):
        return spec, external_checkpoint(spec)
    return spec, find_cached(spec, config_path)


def resolve_victim(
    ref: str | VictimSpec | ExternalVictimSpec | RemoteVictimSpec, *, base: Path | None = None, data_root: str | None = None, progress: bool = True
) -> Victim:
    """A victim from a checkpoint file/dir, a victim YAML (trained now unless shipped or cached), an inline spec or
    an external encoder."""
    from sslsteal.victim.train import get_or_train

    spec, checkpoint = victim_source(ref, base=base, data_root=data_root)
    if checkpoint is None:
        assert isinstance(spec, VictimSpec)
        checkpoint, _ = get_or_train(spec, progress=progress)
    return load_victim(checkpoint)


def query_images(spec: AttackSpec, data_root: str | None = None) -> ImageSet:
    """The images the attacker draws from its query pool (its own stream): its query images, or the candidates its
    method chooses them from (`attack.images_drawn`)."""
    from sslsteal.core.seeding import derive_seed
    from sslsteal.data import loaders

    return loaders.load(spec.query_data, root=data_root, size=spec.images_drawn, seed=derive_seed(spec.seed, "attacker.queries")).to_shape(3, 32)


def scored_images(spec: str, pool: DataRef | None, n: int, role: str, root: str | None = None) -> ImageSet:
    """Up to `n` images of `spec` outside the query pool, the same ones for every attacker seed (a fixed `role` stream)."""
    from sslsteal.core.seeding import derive_seed
    from sslsteal.data import loaders

    return loaders.load(spec, root=root).without(pool).at_most(n, derive_seed(0, role)).to_shape(3, 32)


def evaluate_stolen(
    stolen: StolenModel, victim: Victim, spec: StealSpec, device: torch.device, baselines: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Downstream accuracy with its Wilson interval, ratio and gain over the random floor per dataset, plus fidelity,
    all on images outside the query pool (checked against the images actually queried).

    `baselines` may hold `victim_acc.<ds>` and `random_acc.<ds>` already measured for this pool (a sweep's driver passes them).
    """
    from sslsteal.core.stats import wilson_interval
    from sslsteal.evaluation.baselines import baselines as measure_baselines
    from sslsteal.evaluation.probe import extract_features, fidelity, probe, probe_data
    from sslsteal.evaluation.protocol import check_disjoint
    from sslsteal.specs.protocol import other_split

    protocol = victim.spec.evaluate
    root = spec.data_root
    pool = spec.attack.pool
    known = dict(baselines or {})
    metrics: dict[str, float] = {}
    for ds in spec.evaluate.downstream or protocol.downstream:
        task = probe_data(ds, train_images=protocol.train_images, test_images=protocol.test_images, val_images=spec.evaluate.val_images, pool=pool, root=root)
        check_disjoint(f"probe test set ({ds})", task.test, stolen.queried)
        if task.val is not None:
            check_disjoint(f"validation set ({ds})", task.val, stolen.queried)
        result = probe(stolen.encoder, task, device=device)
        if f"victim_acc.{ds}" not in known or f"random_acc.{ds}" not in known:
            known.update(measure_baselines(victim, stolen.encoder.name, [ds], pool=pool, root=root))
        v_acc, r_acc, acc = known[f"victim_acc.{ds}"], known[f"random_acc.{ds}"], result.acc
        lo, hi = wilson_interval(acc, result.test_images)
        metrics |= {f"acc.{ds}": acc, f"acc.{ds}.lo": lo, f"acc.{ds}.hi": hi, f"eval.test_images.{ds}": float(result.test_images)}
        if result.val_acc is not None:
            metrics |= {f"val_acc.{ds}": result.val_acc, f"eval.val_images.{ds}": float(result.val_images)}
        metrics |= {f"victim_acc.{ds}": v_acc, f"random_acc.{ds}": r_acc, f"random_acc.{ds}.std": known.get(f"random_acc.{ds}.std", float("nan"))}
        metrics[f"acc_ratio.{ds}"] = acc / v_acc
        metrics[f"gain_recovered.{ds}"] = (acc - r_acc) / (v_acc - r_acc) if v_acc != r_acc else float("nan")
    held_out = scored_images(spec.evaluate.fidelity_data or other_split(spec.attack.query_data), pool, spec.evaluate.fidelity_images, "fidelity", root)
    check_disjoint("fidelity images", held_out, stolen.queried)
    stolen_y = extract_features(stolen.encoder, held_out.images, device=device)
    metrics["eval.fidelity_images"] = float(len(held_out))
    if stolen_y.shape[1] == victim.encoder.dim:  # other widths have no fidelity: skip the victim's (costly) pass
        metrics.update(fidelity(stolen_y, extract_features(victim.encoder, held_out.images)))
    return metrics


def evidence_images(
    victim: VictimSpec, n: int, root: str | None = None, seed: int = 0, pool: DataRef | None = None, queried: ImageSet | None = None
) -> tuple[ImageSet, ImageSet]:
    """(private, public) images for ownership tests: up to `n` the victim trained on, and up to `n` of the other split
    that neither the victim trained on nor the attacker could have queried (outside its query pool); both checked."""
    from sslsteal.data import loaders
    from sslsteal.evaluation.protocol import check_disjoint
    from sslsteal.specs.protocol import other_split

    trained = loaders.load(victim.data, root=root, size=victim.train_images, seed=victim.seed)
    private = trained.subset(min(n, len(trained)), seed).to_shape(3, 32)
    public = loaders.load(other_split(victim.data), root=root).without(pool)
    public = public.subset(min(n, len(public)), seed).to_shape(3, 32)
    check_disjoint("ownership public images", public, trained, against="in the victim's training set")
    check_disjoint("ownership public images", public, queried)
    return private, public


def ownership_results(
    names: list[str],
    victim: Victim,
    suspect: torch.nn.Module,
    references: list[Victim],
    *,
    images: int,
    root: str | None = None,
    seed: int = 0,
    alpha: float = 0.05,
    queried: ImageSet | None = None,
    pool: DataRef | None = None,
) -> tuple[dict[str, OwnershipResult], int]:
    """Run the named ownership tests on `suspect`, calibrated on `references`; (results by name, public images used)."""
    from sslsteal.evaluation.ownership import Evidence, run_tests

    private, public = evidence_images(victim.recipe("evaluate.ownership"), images, root, seed, pool, queried)
    encoders = [ref.encoder for ref in references]
    evidence = Evidence(victim, suspect, encoders, private.images, public.images, seed=seed, alpha=alpha)
    return run_tests(names, evidence), len(public)


def flat_ownership_metrics(results: dict[str, OwnershipResult], public: int) -> dict[str, float]:
    """Every result's `ownership.<test>.*` metrics and `eval.public_images`, as runs log them."""
    return {key: value for result in results.values() for key, value in result.metrics().items()} | {"eval.public_images": float(public)}


def ownership_metrics(names: list[str], victim: Victim, suspect: torch.nn.Module, references: list[Victim], **kwargs: Any) -> dict[str, float]:
    """Flat `ownership.<test>.*` metrics (p-values, verdicts, statistics, effects) of `ownership_results`."""
    if not names:
        return {}
    return flat_ownership_metrics(*ownership_results(names, victim, suspect, references, **kwargs))


def legit_metrics(query: Embed, victim: Victim, downstream: list[str], root: str | None = None, pool: DataRef | None = None) -> dict[str, float]:
    """`legit_acc.<ds>`: a legitimate user's accuracy from the (defended) API's answers, with the victim's probe protocol
    and the attacker's test images (those outside its query pool)."""
    from sslsteal.evaluation.legit import legit_accuracy
    from sslsteal.evaluation.probe import probe_data

    protocol = victim.spec.evaluate
    tasks = [probe_data(ds, train_images=protocol.train_images, test_images=protocol.test_images, pool=pool, root=root) for ds in downstream]
    return {f"legit_acc.{task.name}": legit_accuracy(query, task) for task in tasks}


def legit_queries(victim: Victim, downstream: list[str]) -> int:
    """How many images a legitimate user sends to measure `legit_acc` on `downstream` (train + test of each probe)."""
    from sslsteal.specs.datasets import DATASETS

    probe = victim.spec.evaluate
    sizes = [DATASETS[ds].sizes for ds in downstream]
    return sum(min(probe.train_images or s["train"], s["train"]) + min(probe.test_images or s["test"], s["test"]) for s in sizes)


def steal_and_evaluate(
    spec: StealSpec,
    victim: Victim,
    query: Embed,
    device: torch.device,
    *,
    references: list[Victim] | None = None,
    baselines: Mapping[str, float] | None = None,
    progress: bool = False,
    on_epoch: EpochCallback | None = None,
    knockoff_query: Embed | None = None,
) -> tuple[StolenModel, dict[str, float]]:
    """Everything after the victim is known: steal through `query` within the budget, evaluate, run ownership tests,
    and with `evaluate.transfer` the FGSM transfer (its knockoff buys answers through `knockoff_query`, a separate
    account; the victim's undefended representations when None)."""
    from sslsteal.pipeline.suspect import suspect_module

    budgeted = BudgetedQuery(query, spec.attack.queries)
    queried = query_images(spec.attack, spec.data_root)
    start = time.perf_counter()
    stolen = steal(spec.attack, budgeted, queried.images, queried.labels, encoder_name=victim.spec.encoder, device=device, progress=progress, on_epoch=on_epoch)
    stolen.queried = queried
    steal_s = time.perf_counter() - start
    start = time.perf_counter()
    metrics = evaluate_stolen(stolen, victim, spec, device, baselines)
    metrics["time.eval_s"] = time.perf_counter() - start
    start = time.perf_counter()
    suspect = suspect_module(stolen)
    ev = spec.evaluate
    metrics.update(
        ownership_metrics(
            ev.ownership,
            victim,
            suspect,
            references or [],
            images=ev.ownership_images,
            root=spec.data_root,
            seed=spec.attack.seed,
            queried=queried,
            pool=spec.attack.pool,
        )
    )
    metrics.update(
        {
            "queries_used": float(budgeted.used),
            "queries.source_images": float(stolen.source_images if stolen.source_images is not None else len(queried)),
            "queries.victim_forward": float(budgeted.used),
            "time.steal_s": steal_s,
            "time.query_s": budgeted.seconds,
            "time.attacker_s": steal_s - budgeted.seconds,
            "time.ownership_s": time.perf_counter() - start,
        }
    )
    if ev.transfer is not None:
        from sslsteal.pipeline.transfer import transfer_metrics

        start = time.perf_counter()
        metrics.update(transfer_metrics(spec, stolen, victim, knockoff_query or victim.embed, device))
        metrics["time.transfer_s"] = time.perf_counter() - start
    return stolen, metrics


def endpoint_query(remote: RemoteVictimSpec, head: bool = False) -> Embed:
    """The attacker's queries to an endpoint, with the key from `remote.api_key_env` (a ConfigError when unset)."""
    import os

    from sslsteal.attacks.endpoint import HttpVictim
    from sslsteal.specs.base import ConfigError

    key = os.environ.get(remote.api_key_env)
    if not key:
        raise ConfigError([f"victim.api_key_env: the environment variable {remote.api_key_env} is not set or empty"])
    return HttpVictim(remote.url, key, head=head, fmt=remote.format)


def run_steal(spec: StealSpec, *, config_path: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Steal one encoder from a local victim (no Ray) and evaluate it; metrics are named as in docs/architecture.md."""
    from sslsteal.specs.base import ConfigError
    from sslsteal.specs.protocol import protocol_problems
    from sslsteal.specs.steal import steal_problems
    from sslsteal.victim.reference import get_references

    source = str(config_path or "<run>")
    base = Path(config_path).resolve().parent if config_path else None
    problems = steal_problems(spec, base or Path.cwd())  # before any victim is trained
    if problems:
        raise ConfigError(problems, source)
    device = select_device()
    victim = resolve_victim(spec.victim, base=base, data_root=spec.data_root, progress=progress).to(device)
    problems = protocol_problems(spec.attack, spec.evaluate, victim.spec)  # a checkpoint's spec is known only now
    if isinstance(victim.spec, ExternalVictimSpec):
        problems += victim.spec.refusals(spec.attack.method, spec.evaluate.ownership)
    if problems:
        raise ConfigError(problems, source)
    indices = list(range(1, spec.evaluate.references + 1)) if spec.evaluate.ownership else []
    references = [ref.to(device) for ref in get_references(victim, indices, data_root=spec.data_root, progress=progress)]
    head = spec.attack.method == "access_head"
    query: Embed = endpoint_query(spec.victim, head) if isinstance(spec.victim, RemoteVictimSpec) else (lambda x: victim.embed(x, head=head))
    stolen, metrics = steal_and_evaluate(spec, victim, query, device, references=references, progress=progress)
    return {"victim": victim.spec.key, "attack": spec.attack.model_dump(), "metrics": metrics, "stolen": stolen}


def verdict_text(metrics: Mapping[str, float], test: str) -> str:
    """One ownership test's outcome from its flat metrics: `stolen (p = ..)`, `not stolen (p = ..)` or `inconclusive`."""
    key = f"ownership.{test}."
    if float(metrics.get(key + "inconclusive", 0.0)) or key + "p_value" not in metrics:
        return "inconclusive"
    verdict = "stolen" if float(metrics.get(key + "stolen", 0.0)) else "not stolen"
    return f"{verdict} (p = {float(metrics[key + 'p_value']):.3g})"


def format_table(result: dict[str, Any]) -> str:
    """A small plain-text table of a run's key figures."""
    m = result["metrics"]
    a = result["attack"]
    lines = [f"victim {result['victim']}  attack {a['method']}/{a['loss']}/{a['strategy']}  queries used {int(m['queries_used'])}"]
    datasets = sorted(k.removeprefix("eval.test_images.") for k in m if k.startswith("eval.test_images."))
    lines.append(f"{'dataset':<14}{'victim':>8}{'random':>8}{'stolen':>8}{'95% interval':>16}{'ratio':>8}{'gain':>8}{'scored on':>11}")
    for ds in datasets:
        interval = f"[{m[f'acc.{ds}.lo']:.2f}, {m[f'acc.{ds}.hi']:.2f}]"
        lines.append(
            f"{ds:<14}{m[f'victim_acc.{ds}']:>8.2f}{m[f'random_acc.{ds}']:>8.2f}{m[f'acc.{ds}']:>8.2f}{interval:>16}"
            f"{m[f'acc_ratio.{ds}']:>8.3f}{m[f'gain_recovered.{ds}']:>8.3f}{int(m[f'eval.test_images.{ds}']):>11}"
        )
    if "fidelity.cosine" in m:
        lines.append(f"fidelity: cosine {m['fidelity.cosine']:.3f}  l2 {m['fidelity.l2']:.3f}")
    for test in sorted({k.split(".")[1] for k in m if k.startswith("ownership.") and k.endswith(".inconclusive")}):
        key = f"ownership.{test}."
        statistic = f"  t {m[key + 'statistic']:.3f}" if key + "statistic" in m else ""
        lines.append(f"ownership {test}: {verdict_text(m, test)}{statistic}  effect {m[key + 'effect']:.3f}")
    lines.append(f"time: steal {m['time.steal_s']:.1f} s  eval {m['time.eval_s']:.1f} s")
    return "\n".join(lines)
