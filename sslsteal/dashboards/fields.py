"""Field names a dashboard may use, the labels pages show for them, and reading them off a run.

A field is a metric (`acc.cifar10`, named as in docs/architecture.md#metrics), a param (`params.attack.loss`), a
tag (`tags.sslsteal.victim_device`) or a run attribute (`run.status`). Definitions are checked against this
vocabulary so that a typo fails validation instead of rendering an empty column; every field has a label
(`stolen accuracy (CIFAR-10)`, `loss`) so that pages read like the paper rather than like the tracking store.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from functools import cache
from typing import get_args

from sslsteal.orchestration.records import RunRecord
from sslsteal.specs.datasets import DATASETS
from sslsteal.specs.evaluate import OWNERSHIP_TESTS, TransferSource
from sslsteal.specs.methods import METHODS

DATASET = "<dataset>"
"""Placeholder for a downstream dataset; a table column `acc.<dataset>` becomes one column per dataset logged."""

OWNERSHIP_KEYS = (
    # every test (sslsteal/ownership/evidence.py and calibrate.py)
    *("p_value", "stolen", "inconclusive", "statistic", "effect", "score", "victim_score", "reference_mean", "reference_sd", "references"),
    *("flagged_reference", "victim_p"),
    # per-test details (sslsteal/ownership/scores.py)
    *("acc", "n", "p_chance", "private_loss", "public_loss", "n_private", "n_public", "private_loglik", "public_loglik", "sigma", "distance"),
)

METRIC_LABELS = {
    # trial runs: docs/architecture.md#metrics
    "queries_used": "queries used",
    "queries.source_images": "distinct query images",
    "queries.victim_forward": "victim forward passes (images)",
    "acc.<dataset>": "stolen accuracy (<dataset>)",
    "acc.<dataset>.lo": "stolen accuracy (<dataset>), Wilson low",
    "acc.<dataset>.hi": "stolen accuracy (<dataset>), Wilson high",
    "eval.test_images.<dataset>": "probe test images (<dataset>)",
    "eval.val_images.<dataset>": "validation images (<dataset>)",
    "eval.fidelity_images": "fidelity images",
    "eval.public_images": "public images",
    "val_acc.<dataset>": "validation accuracy (<dataset>)",
    "victim_acc.<dataset>": "victim accuracy (<dataset>)",
    "random_acc.<dataset>": "random encoder accuracy (<dataset>)",
    "random_acc.<dataset>.std": "random encoder accuracy sd (<dataset>)",
    "acc_ratio.<dataset>": "stolen / victim accuracy (<dataset>)",
    "gain_recovered.<dataset>": "gain recovered (<dataset>)",
    "fidelity.cosine": "fidelity (cosine)",
    "fidelity.l2": "fidelity (l2 distance)",
    "watermark.acc": "watermark accuracy",
    "ownership.<test>.<key>": "<test> <key>",
    "legit_acc.<dataset>": "legitimate user's accuracy (<dataset>)",
    "defense.detected_fraction": "detected fraction",
    "cost.pow_hashes": "proof-of-work hashes",
    "train.loss": "training loss",
    "val.knn_acc": "k-NN validation accuracy",
    "epoch": "epoch",
    "time.steal_s": "steal time (s)",
    "time.query_s": "time waiting for the victim (s)",
    "time.attacker_s": "attacker's own time (s)",
    "time.eval_s": "evaluation time (s)",
    "time.ownership_s": "ownership tests time (s)",
    "time.transfer_s": "FGSM transfer time (s)",
    "transfer.fgsm.<source>.<eps>": "FGSM transfer from <source> (eps <eps>)",
    "transfer.fgsm.<source>.images": "FGSM images crafted on <source>",
    "transfer.knockoff.queries_used": "knockoff queries used",
    # sweep parents (sslsteal/sweep.py) and study runs (docs/optimize.md#tracking-mlflow)
    "trials.completed": "trials completed",
    "trials.failed": "trials failed",
    "trials.complete": "trials complete",
    "trials.pruned": "trials pruned",
    "best.<objective>": "best <objective>",
    "importance.<param>": "importance of <param>",
}
"""Every metric a dashboard may name, with the label its columns, axes and legends show unless a definition gives one."""
METRICS = tuple(METRIC_LABELS)
PARAM_SECTIONS = ("attack", "evaluate", "defense", "optuna")
"""Trial params are the flattened resolved config: `attack.*`, `evaluate.*`, `defense.*` (and `optuna.*` in studies)."""
PARENT_PARAMS = ("trials", "victim", "objective", "direction", "storage", "budget", "study")
"""Params of sweep parents, the optimize run and study runs."""
TAGS = (
    *("sslsteal.kind", "sslsteal.sweep", "sslsteal.trial_key", "sslsteal.parent_key", "sslsteal.victim_key"),
    *(
        "sslsteal.account",
        "sslsteal.node_id",
        "sslsteal.pid",
        "sslsteal.trial_cpus",
        "sslsteal.victim_node_id",
        "sslsteal.victim_gpu_ids",
        "sslsteal.victim_device",
        "sslsteal.victim_pid",
    ),
    *("sslsteal.optuna_trial", "sslsteal.optuna_state", "sslsteal.study", "sslsteal.budgets", "sslsteal.trials_per_budget"),
    *("mlflow.parentRunId", "mlflow.runName", "best.trial", "best.loss", "best.<param>"),
)
RUN_ATTRIBUTES = {
    "id": "run id",
    "name": "run",
    "experiment": "experiment",
    "status": "status",
    "start": "started",
    "end": "ended",
    "duration_s": "duration (s)",
    "attempt": "attempt",
}
"""Run attributes and their labels; `run.attempt` is the attempt number of a trial (1 = no retry), the suffix of its
`sslsteal.account` tag."""
PARAM_LABELS = {
    "attack.query_data": "query data",
    "attack.seed": "attacker seed",
    "attack.lr": "learning rate",
    "attack.loss_params.temperature": "temperature",
    "defense.name": "defense",
    "defense.mean": "noise mean",
    "defense.mean_big": "noise mean",
    "defense.sigma": "noise sigma",
}
"""Params whose last key alone would not say what they are; any other param is labelled by its last key."""
OWNERSHIP_KEY_LABELS = {"p_value": "p-value", "victim_p": "victim's p-value", "victim_score": "victim's score", "reference_sd": "reference sd"}
NUMERIC_RUN_ATTRIBUTES = ("duration_s", "attempt")

_PIECES = {
    "<dataset>": "(?:" + "|".join(DATASETS) + ")",
    "<test>": "(?:" + "|".join(OWNERSHIP_TESTS) + ")",
    "<key>": "(?:" + "|".join(OWNERSHIP_KEYS) + ")",
    "<objective>": r"(?:val_acc\.[a-z][a-z0-9_]*|fidelity\.cosine|fidelity\.l2)",
    "<param>": r"[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)*",
    "<source>": "(?:" + "|".join(get_args(TransferSource)) + ")",
    "<eps>": r"[0-9]+(?:\.[0-9]+)?(?:e-?[0-9]+)?",
}


@cache
def _pattern(names: tuple[str, ...], template: bool) -> re.Pattern[str]:
    """One regex matching every name of the vocabulary (`<dataset>` also matched literally when `template`)."""

    def one(name: str) -> str:
        parts = re.split(r"(<[a-z]+>)", name)
        out = []
        for part in parts:
            if part in _PIECES:
                piece = _PIECES[part]
                out.append(f"(?:{piece}|<dataset>)" if template and part == DATASET else piece)
            else:
                out.append(re.escape(part))
        return "".join(out)

    return re.compile("(?:" + "|".join(one(n) for n in names) + r")\Z")


def _suggest(name: str, vocabulary: tuple[str, ...], prefix: str = "") -> str:
    """` (did you mean 'x'?)` for a close known name, filling placeholders from the name's own last part."""
    tail = name.rsplit(".", 1)[-1]
    candidates = [v.replace(DATASET, tail).replace("<test>", "watermark").replace("<key>", "p_value") for v in vocabulary]
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.75)
    return f" (did you mean '{prefix}{close[0]}'?)" if close else ""


def check_field(name: str, *, template: bool = False) -> str:
    """`name` if it is a known field, else ValueError `unknown field 'name'`; `<dataset>` is allowed when `template`."""
    if not isinstance(name, str):
        raise ValueError(f"a field name must be a string, got {name!r}")
    if name.startswith("params."):
        key = name.removeprefix("params.")
        section = key.split(".", 1)[0]
        if (section in PARAM_SECTIONS and "." in key and re.fullmatch(_PIECES["<param>"], key)) or key in PARENT_PARAMS:
            return name
        raise ValueError(f"unknown field '{name}': params are params.<{'|'.join(PARAM_SECTIONS)}>.<key> or params.<{'|'.join(PARENT_PARAMS)}>")
    if name.startswith("tags."):
        if _pattern(TAGS, False).match(name.removeprefix("tags.")):
            return name
        raise ValueError(f"unknown field '{name}'{_suggest(name.removeprefix('tags.'), TAGS, 'tags.')}")
    if name.startswith("run."):
        if name.removeprefix("run.") in RUN_ATTRIBUTES:
            return name
        raise ValueError(f"unknown field '{name}'; run attributes: {', '.join('run.' + a for a in RUN_ATTRIBUTES)}")
    if DATASET in name and not template:
        raise ValueError(f"'{name}': {DATASET} is allowed only in table columns")
    if _pattern(METRICS, template).match(name):
        return name
    raise ValueError(f"unknown field '{name}'{_suggest(name, METRICS)}")


def field_label(name: str, labels: Mapping[str, str] | None = None) -> str:
    """How a page names a field: the definition's own label (`labels`, keyed by the field or its `<dataset>`
    template), else the vocabulary's (`acc.cifar10` -> `stolen accuracy (CIFAR-10)`, `params.attack.loss` -> `loss`)."""
    labels = labels or {}
    if name in labels:
        return labels[name]
    if name.startswith("params."):
        return param_label(name.removeprefix("params."))
    if name.startswith("tags."):
        key = name.removeprefix("tags.").removeprefix("sslsteal.").removeprefix("mlflow.")
        return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", key).replace(".", " ").replace("_", " ").lower()
    if name.startswith("run."):
        return RUN_ATTRIBUTES.get(name.removeprefix("run."), name)
    for pattern, template in _metric_patterns():
        found = pattern.match(name)
        if found:
            parts = found.groupdict()
            if "dataset" in parts:  # a definition's label for the `<dataset>` template
                start, end = found.span("dataset")
                template = labels.get(name[:start] + DATASET + name[end:], template)
            for piece, raw in parts.items():
                template = template.replace(f"<{piece}>", _piece_label(piece, raw))
            return template
    return name


def param_label(key: str) -> str:
    """A param's label: `PARAM_LABELS`, else its last key in words (`attack.batch_size` -> `batch size`)."""
    return PARAM_LABELS.get(key, key.rsplit(".", 1)[-1].replace("_", " "))


def dataset_name(name: str) -> str:
    """A dataset as its declaration writes it (`cifar10` -> `CIFAR-10`, the word before the description's colon)."""
    info = DATASETS.get(name)
    head = info.description.split(":", 1)[0] if info else ""
    return head if head and " " not in head else name


def _piece_label(piece: str, raw: str) -> str:
    """A placeholder's value in a label: a dataset's name, an ownership test or key in words, a field's own label."""
    if piece == "dataset":
        return dataset_name(raw)
    if piece == "key":
        return OWNERSHIP_KEY_LABELS.get(raw, raw.replace("_", " "))
    if piece == "objective":
        return field_label(raw)
    if piece == "param":
        return param_label(raw)
    return raw.replace("_", " ")


@cache
def _metric_patterns() -> list[tuple[re.Pattern[str], str]]:
    """Each metric of the vocabulary as a regex naming its placeholders' values, with its label template."""
    out = []
    for name, template in METRIC_LABELS.items():
        parts = re.split(r"<([a-z]+)>", name)  # literal, placeholder, literal, ...
        regex = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>{_PIECES[f'<{p}>']})" for i, p in enumerate(parts))
        out.append((re.compile(regex + r"\Z"), template))
    return out


def is_numeric(name: str) -> bool:
    """Whether a field's values are numbers to aggregate (metrics, run.duration_s, run.attempt) or labels."""
    if name.startswith(("params.", "tags.")):
        return False
    return not name.startswith("run.") or name.removeprefix("run.") in NUMERIC_RUN_ATTRIBUTES


PROBABILITY_KEYS = ("p_value", "p_chance", "victim_p", "stolen", "inconclusive")
"""Ownership keys that are a probability or a 0/1 verdict: their means and intervals lie in [0, 1]."""


FRACTIONS = ("defense.detected_fraction",)
"""Metrics that are a share of queries: within [0, 1]."""
NONNEGATIVE = ("time.", "queries", "eval.", "cost.")
"""Prefixes of metrics that are durations or counts: never below 0."""


def bounds(name: str) -> tuple[float, float] | None:
    """The range a field's values can take, when it is narrower than the real line (so a t-interval over few seeds
    is cut there): [0, 1] for p-values, verdicts and shares of queries, [0, inf) for durations and counts; None
    otherwise."""
    if name in FRACTIONS or (name.startswith("ownership.") and name.rsplit(".", 1)[-1] in PROBABILITY_KEYS):
        return (0.0, 1.0)
    return (0.0, math.inf) if name.startswith(NONNEGATIVE) else None


def value(record: RunRecord, name: str) -> float | str | None:
    """The field's value on `record`: a float for metrics, a string for params and tags; None when absent."""
    if name.startswith("params."):
        key = name.removeprefix("params.")
        return None if not_applicable(record, key) else record.params.get(key)
    if name.startswith("tags."):
        return record.tags.get(name.removeprefix("tags."))
    if name.startswith("run."):
        return _run_attribute(record, name.removeprefix("run."))
    metric = record.metrics.get(name)
    return None if metric is None else float(metric)


def not_applicable(record: RunRecord, key: str) -> bool:
    """Whether `key` is a logged default the run's attack method never used: `attack.loss`, `attack.loss_params.*` and
    `attack.strategy` of a method that trains with its own objective (StolenEncoder, Cont-Steal, RDA), shown as `—`."""
    if key not in ("attack.loss", "attack.strategy") and not key.startswith("attack.loss_params."):
        return False
    method = record.params.get("attack.method")
    return method is not None and method in METHODS and METHODS[method].own_objective


def _run_attribute(record: RunRecord, attribute: str) -> float | str | None:
    if attribute == "duration_s":
        if record.start_time is None or record.end_time is None:
            return None
        return (record.end_time - record.start_time).total_seconds()
    if attribute == "attempt":
        account = record.tags.get("sslsteal.account", "")
        suffix = account.rsplit(".", 1)[-1]
        return float(suffix) if "." in account and suffix.isdigit() else None
    if attribute in ("start", "end"):
        moment = record.start_time if attribute == "start" else record.end_time
        return None if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")
    return {"id": record.run_id, "name": record.name, "experiment": record.experiment, "status": record.status}[attribute]


def as_number(raw: float | str | None) -> float | None:
    """A param or metric as a finite-or-NaN float, or None when it is absent or not a number ("null", "mse")."""
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        return None


def same_value(logged: float | str | None, wanted: object) -> bool:
    """Whether a run's value equals a value written in YAML: numerically when both are numbers ("9000" == 9000,
    "1.0" == 1), else as text (None matches the param "null")."""
    if logged is None:
        return False
    if wanted is None:
        return logged == "null"
    if isinstance(wanted, bool):
        return str(logged).lower() == str(wanted).lower()
    a, b = as_number(logged), as_number(wanted if isinstance(wanted, (int, float, str)) else None)
    if a is not None and b is not None:
        return a == b or (math.isnan(a) and math.isnan(b))
    return str(logged) == str(wanted)


def expand(name: str, records: list[RunRecord]) -> list[str]:
    """A `<dataset>` template -> the concrete metric names the records logged (sorted); any other name -> itself."""
    if DATASET not in name:
        return [name]
    head, tail = name.split(DATASET, 1)
    found = re.compile(re.escape(head) + _PIECES[DATASET] + re.escape(tail) + r"\Z")
    return sorted({key for r in records for key in r.metrics if found.match(key)})


def default_format(name: str) -> str:
    """How a field's numbers are printed unless a definition says otherwise."""
    last = name.rsplit(".", 1)[-1]
    if last in ("p_value", "p_chance", "victim_p") or name.startswith("importance."):
        return ".3g"
    if name.startswith(("acc_ratio.", "gain_recovered.", "fidelity.", "ownership.", "defense.")):
        return ".3f"
    if name.startswith(("queries_used", "queries.", "trials.", "eval.", "cost.", "run.attempt", "epoch")):
        return ".0f"
    if name.startswith(("time.", "run.duration")):
        return ".1f"
    return ".2f"
