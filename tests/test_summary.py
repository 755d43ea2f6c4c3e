"""The closing summary's cells (intervals of accuracy and gain recovered, ownership) and verdict text, from flat
metrics as trials log them."""

from __future__ import annotations

from scipy import stats

from sslsteal.orchestration.summary import ConfigSummary, group_by_config, summary_table
from sslsteal.orchestration.trial import trial_name
from sslsteal.pipeline.steal import verdict_text


def decided(p: float) -> dict[str, float]:
    return {"ownership.watermark.p_value": p, "ownership.watermark.stolen": float(p < 0.05), "ownership.watermark.inconclusive": 0.0}


UNDECIDED = {"ownership.watermark.inconclusive": 1.0, "ownership.watermark.stolen": 0.0}


def test_verdict_text_names_the_verdict_and_only_a_decided_p() -> None:
    assert verdict_text(decided(0.01), "watermark") == "stolen (p = 0.01)"
    assert verdict_text(decided(0.3), "watermark") == "not stolen (p = 0.3)"
    assert verdict_text(UNDECIDED, "watermark") == "inconclusive"


def test_summary_cell_is_the_largest_decided_p_and_counts_inconclusive_seeds() -> None:
    def row(runs: list[dict[str, float]]) -> str:
        table = summary_table([ConfigSummary("cfg", {}, [str(i) for i in range(len(runs))], [{"acc.cifar10": 50.0} | r for r in runs])], "cifar10")
        header, line = table.splitlines()[:2]
        return line[header.index("max p watermark") :].strip()

    assert row([decided(0.01), decided(0.2)]) == "0.2"
    assert row([decided(0.01), UNDECIDED, decided(0.03)]) == "0.03 (1/3 inconclusive)"
    assert row([UNDECIDED, UNDECIDED]) == "inconclusive"


def test_configurations_a_label_does_not_tell_apart_get_their_differences_named() -> None:
    def config(steps: int, augment: str, seed: int) -> dict[str, object]:
        return {"attack": {"loss": "softnn", "steps": steps, "augment": augment, "seed": seed}}

    trials = [(config(steps, aug, seed), {"acc.cifar10": 60.0 + seed}) for steps in (480, 1500) for aug in ("weak", "simclr") for seed in (0, 1)]
    trials.append(({"attack": {"loss": "mse", "steps": 480, "augment": "weak", "seed": 0}}, {"acc.cifar10": 50.0}))
    groups = group_by_config(trials, lambda c: str(c["attack"]["loss"]))
    assert [g.label for g in groups] == [
        "softnn augment=weak,steps=480",
        "softnn augment=simclr,steps=480",
        "softnn augment=weak,steps=1500",
        "softnn augment=simclr,steps=1500",
        "mse",
    ]
    assert [g.seeds for g in groups] == [["0", "1"]] * 4 + [["0"]]


def test_seeds_that_tie_show_a_zero_width_interval_and_one_seed_shows_its_value() -> None:
    """Two seeds with the same accuracy (it happens: 889 of 2,000 test images each) are two seeds, not one run."""
    tied = ConfigSummary("tied", {}, ["0", "1"], [{"acc.cifar10": 44.45, "gain_recovered.cifar10": 0.276}] * 2)
    single = ConfigSummary("single", {}, ["0"], [{"acc.cifar10": 44.45, "acc.cifar10.lo": 42.3, "acc.cifar10.hi": 46.6, "gain_recovered.cifar10": 0.276}])
    tied_line, single_line = summary_table([tied, single], "cifar10").splitlines()[1:3]
    assert "44.45 [44.45, 44.45]" in tied_line and "0.276 [0.276, 0.276]" in tied_line
    assert "44.45 [42.30, 46.60]" in single_line and "0.276 " in single_line and "0.276 [" not in single_line


def cells(table: str, label: str) -> dict[str, str]:
    """The cells of `label`'s line, keyed by the header's column names (columns are aligned by padding)."""
    header, *lines = table.splitlines()
    line = next(line for line in lines if line.startswith(label + " "))
    names = header.split()
    starts = [header.index(name) for name in names]
    return {name: line[a:b].strip() for name, a, b in zip(names, starts, [*starts[1:], None], strict=True)}


def test_one_seed_gain_carries_its_accuracy_interval_so_a_copy_above_a_weak_victim_reads_as_a_tie() -> None:
    """The quickstart's MSE copy (docs/RESULTS.md): 46.65% [44.47, 48.84] against a 46.25% victim and a 41.47% floor
    is a gain of 1.084, whose interval through the same Wilson bounds holds 1: a tie with the victim."""
    run = {"acc.cifar10": 46.65, "acc.cifar10.lo": 44.47, "acc.cifar10.hi": 48.84, "victim_acc.cifar10": 46.25, "random_acc.cifar10": 41.47}
    run["gain_recovered.cifar10"] = (46.65 - 41.47) / (46.25 - 41.47)
    table = summary_table([ConfigSummary("mse", {}, ["0"], [run])], "cifar10")
    row = cells(table, "mse")
    low, high = (44.47 - 41.47) / 4.78, (48.84 - 41.47) / 4.78
    assert row["gain_recovered.cifar10"] == f"1.084 [{low:.3f}, {high:.3f}]" == "1.084 [0.628, 1.542]"
    assert row["acc.cifar10"] == "46.65 [44.47, 48.84]"
    assert "an interval that holds 1 is a tie with the victim" in table


def test_several_seeds_give_the_t_interval_of_their_gains() -> None:
    gains = [0.52, 0.61, 0.58]
    runs = [{"acc.cifar10": 50.0 + i, "acc.cifar10.lo": 48.0, "acc.cifar10.hi": 52.0, "gain_recovered.cifar10": g} for i, g in enumerate(gains)]
    row = cells(summary_table([ConfigSummary("softnn", {}, ["0", "1", "2"], runs)], "cifar10"), "softnn")
    lo, hi = stats.t.interval(0.95, 2, loc=sum(gains) / 3, scale=stats.sem(gains))
    assert row["gain_recovered.cifar10"] == f"{sum(gains) / 3:.3f} [{lo:.3f}, {hi:.3f}]"
    assert row["acc.cifar10"].startswith("51.00 [")  # over the seeds, not any one seed's Wilson bounds


def test_a_trial_is_named_by_the_loss_it_trains_with_and_none_when_the_method_has_its_own() -> None:
    def name(attack: dict[str, object], defense: dict[str, object]) -> str:
        return trial_name({"attack": {"queries": 2000, **attack}, "defense": defense})

    assert name({"method": "direct", "loss": "softnn"}, {"name": "topk", "k": 10}) == "direct-softnn-q2000-cifar10:test[:9000]-topk(k=10)"
    assert name({"method": "rda", "query_data": "cifar10:train"}, {"name": "none"}) == "rda-q2000-cifar10:train-none"
