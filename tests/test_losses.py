"""Tests for sslsteal.losses: each loss against an independent float64 reference written with plain
loops, its invariants, gradient flow, make_loss validation, the registry and a tiny optimisation."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from torch import nn

from sslsteal.losses import is_module, make_loss
from sslsteal.losses.barlow import EPS as BARLOW_EPS
from sslsteal.losses.barlow import barlow
from sslsteal.losses.cosine import cosine
from sslsteal.losses.infonce import infonce
from sslsteal.losses.infonce_cross import infonce_cross
from sslsteal.losses.mse import mse
from sslsteal.losses.simsiam import SimSiamLoss
from sslsteal.losses.sliced_wasserstein import sliced_wasserstein
from sslsteal.losses.softnn import softnn
from sslsteal.losses.supcon import supcon
from sslsteal.losses.wasserstein import wasserstein
from sslsteal.specs.losses import KINDS, LOSSES


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: extra intra-op threads only add contention on a shared CPU."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


NAMES = {"mse", "cosine", "infonce", "infonce_cross", "softnn", "wasserstein", "sliced_wasserstein", "supcon", "barlow", "simsiam"}
NON_NEGATIVE = {"wasserstein"}  # its default form reads each row as a distribution: ReLU-like outputs only


def pair(n: int = 4, d: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64)


def rows(t: torch.Tensor) -> list[list[float]]:
    return t.detach().tolist()


def unit(x: list[float]) -> list[float]:
    norm = math.sqrt(sum(a * a for a in x))
    return [a / norm for a in x]


def dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def log_softmax_at(logits: list[float], index: int) -> float:
    m = max(logits)
    return logits[index] - (m + math.log(sum(math.exp(z - m) for z in logits)))


# ---------------------------------------------------------------- references (float64, loops)


def ref_mse(s, v):
    return sum((a - b) ** 2 for rs, rv in zip(s, v, strict=True) for a, b in zip(rs, rv, strict=True)) / (len(s) * len(s[0]))


def ref_cosine(s, v):
    return 1 - sum(dot(unit(a), unit(b)) for a, b in zip(s, v, strict=True)) / len(s)


def ref_infonce(s, v, temperature=0.07):
    """NT-Xent: 2N unit vectors, anchor i, positive its partner, candidates every point but i itself."""
    x = [unit(r) for r in s + v]
    n2, total = len(x), 0.0
    for i in range(n2):
        partner = (i + n2 // 2) % n2
        others = [k for k in range(n2) if k != i]
        total += -log_softmax_at([dot(x[i], x[k]) / temperature for k in others], others.index(partner))
    return total / n2


def ref_infonce_cross(s, v, temperature=0.1):
    t = temperature
    s, v, n = [unit(r) for r in s], [unit(r) for r in v], len(s)
    fwd = -sum(log_softmax_at([dot(s[i], v[j]) / t for j in range(n)], i) for i in range(n)) / n
    bwd = -sum(log_softmax_at([dot(v[i], s[j]) / t for j in range(n)], i) for i in range(n)) / n
    return (fwd + bwd) / 2


def sq_dist(a, b):
    return sum((x - y) ** 2 for x, y in zip(a, b, strict=True))


def ref_spread(v):
    """Mean over all N^2 ordered pairs (i, j) of ||v_i - v_j||^2."""
    return sum(sq_dist(a, b) for a in v for b in v) / len(v) ** 2


def ref_softnn(s, v, temperature=0.1, relative=True):
    """Frosst et al.: -log( sum_{same image} exp(-d/t) / sum_{k != i} exp(-d/t) ), same image = the partner."""
    t = temperature * ref_spread(v) if relative else temperature
    x = s + v
    n2, total = len(x), 0.0
    for i in range(n2):
        partner = (i + n2 // 2) % n2
        w = {k: math.exp(-sq_dist(x[i], x[k]) / t) for k in range(n2) if k != i}
        total += -math.log(w[partner] / sum(w.values()))
    return total / n2


def ref_wasserstein(s, v, softmax=False):
    """Each row a distribution over its dims (divided by its sum, or softmax), W1 = sum_d |CDF_s - CDF_v|."""

    def dist(r):
        w = [math.exp(a) for a in r] if softmax else list(r)
        return [a / sum(w) for a in w]

    total = 0.0
    for rs, rv in zip(s, v, strict=True):
        ps, pv = dist(rs), dist(rv)
        total += sum(abs(sum(ps[: d + 1]) - sum(pv[: d + 1])) for d in range(len(ps)))
    return total / len(s)


def ref_sliced_wasserstein(s, v, projections):
    dirs = [unit(p) for p in projections]
    total = 0.0
    for u in dirs:
        ps, pv = sorted(dot(r, u) for r in s), sorted(dot(r, u) for r in v)
        total += sum((a - b) ** 2 for a, b in zip(ps, pv, strict=True)) / len(s)
    return total / len(dirs)


def ref_supcon(s, v, labels, temperature=0.1):
    t = temperature
    n = len(s)
    s, v = [unit(r) for r in s], [unit(r) for r in v]
    cands = [(v[j], labels[j], None) for j in range(n)] + [(s[j], labels[j], j) for j in range(n)]
    total = 0.0
    for i in range(n):
        others = [(c, lab) for c, lab, own in cands if own != i]
        denom = sum(math.exp(dot(s[i], c) / t) for c, _ in others)
        pos = [c for c, lab in others if lab == labels[i]]
        total += -sum(math.log(math.exp(dot(s[i], c) / t) / denom) for c in pos) / len(pos)
    return total / n


def ref_standardise(x):
    n, d = len(x), len(x[0])
    out = [[0.0] * d for _ in range(n)]
    for k in range(d):
        col = [r[k] for r in x]
        mean = sum(col) / n
        std = math.sqrt(sum((c - mean) ** 2 for c in col) / n + BARLOW_EPS)
        for i in range(n):
            out[i][k] = (col[i] - mean) / std
    return out


def ref_barlow(s, v, lambd=5e-3):
    zs, zv, n, d = ref_standardise(s), ref_standardise(v), len(s), len(s[0])
    total = 0.0
    for a in range(d):
        for b in range(d):
            c = sum(zs[i][a] * zv[i][b] for i in range(n)) / n
            total += (1 - c) ** 2 if a == b else lambd * c**2
    return total


def ref_simsiam(module: SimSiamLoss, s, v):
    lin1, bn, _, lin2 = module.predictor
    w1, gamma, beta = lin1.weight.detach().numpy(), bn.weight.detach().numpy(), bn.bias.detach().numpy()
    w2, b2 = lin2.weight.detach().numpy(), lin2.bias.detach().numpy()

    def predict(x):
        h = np.asarray(x) @ w1.T
        h = (h - h.mean(0)) / np.sqrt(h.var(0) + bn.eps) * gamma + beta
        return np.maximum(h, 0) @ w2.T + b2

    def neg_cos(p, z):
        return -sum(dot(unit(list(a)), unit(list(b))) for a, b in zip(p, z, strict=True)) / len(z)

    return 0.5 * neg_cos(predict(s), v) + 0.5 * neg_cos(predict(v), s)


# ---------------------------------------------------------------- (1) reference values


@pytest.mark.parametrize(
    ("fn", "ref", "hp"),
    [
        (mse, ref_mse, {}),
        (cosine, ref_cosine, {}),
        (infonce, ref_infonce, {}),
        (infonce, ref_infonce, {"temperature": 0.7}),
        (infonce_cross, ref_infonce_cross, {}),
        (infonce_cross, ref_infonce_cross, {"temperature": 0.7}),
        (softnn, ref_softnn, {}),
        (softnn, ref_softnn, {"temperature": 0.6}),
        (softnn, ref_softnn, {"temperature": 3.0, "relative": False}),
        (wasserstein, ref_wasserstein, {"softmax": True}),
        (barlow, ref_barlow, {}),
        (barlow, ref_barlow, {"lambd": 0.3}),
    ],
)
def test_matches_reference(fn, ref, hp):
    s, v = pair()
    torch.testing.assert_close(fn(s, v, **hp).item(), ref(rows(s), rows(v), **hp), rtol=1e-9, atol=1e-12)


def test_wasserstein_matches_reference():
    s, v = pair(n=5, d=6)
    s, v = s.abs(), v.abs()
    torch.testing.assert_close(wasserstein(s, v).item(), ref_wasserstein(rows(s), rows(v)), rtol=1e-9, atol=1e-12)


def test_wasserstein_hand_computed():
    """Row 0: all mass moves from dim 0 to dim 2, W1 = 2. Row 1: p = (.5, .5, 0), q = (0, .5, .5), CDFs
    (.5, 1, 1) and (0, .5, 1), W1 = .5 + .5 + 0 = 1. Row 1's doubled entries do not matter. Mean 1.5."""
    s = torch.tensor([[1.0, 0.0, 0.0], [2.0, 2.0, 0.0]], dtype=torch.float64)
    v = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 1.0]], dtype=torch.float64)
    assert wasserstein(s, v).item() == pytest.approx(1.5, abs=1e-12)
    assert wasserstein(s[:1], v[:1]).item() == pytest.approx(2.0, abs=1e-12)


def test_sliced_wasserstein_matches_reference():
    s, v = pair(n=5)
    proj = torch.randn(7, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = ref_sliced_wasserstein(rows(s), rows(v), rows(proj))
    torch.testing.assert_close(sliced_wasserstein(s, v, projections=proj).item(), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("labels", [None, [0, 1, 0, 1], [2, 2, 2, 5]])
def test_supcon_matches_reference(labels):
    s, v = pair()
    tensor_labels = None if labels is None else torch.tensor(labels)
    expected = ref_supcon(rows(s), rows(v), labels if labels is not None else list(range(4)))
    torch.testing.assert_close(supcon(s, v, labels=tensor_labels).item(), expected, rtol=1e-9, atol=1e-12)


def test_simsiam_matches_reference():
    torch.manual_seed(0)
    module = SimSiamLoss(3, pred_dim=5).double()
    s, v = pair()
    expected = ref_simsiam(module, rows(s), rows(v))
    torch.testing.assert_close(module(s, v).item(), expected, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- (2) invariants


@pytest.mark.parametrize("fn", [mse, cosine, sliced_wasserstein, wasserstein, functools.partial(wasserstein, softmax=True)])
def test_zero_at_identical_inputs(fn):
    s, _ = pair(n=8, d=5)
    s = s.abs()
    assert fn(s, s.clone()).item() == pytest.approx(0, abs=1e-12)


def test_barlow_zero_for_identical_whitened_inputs():
    s, _ = pair(n=32, d=4)
    centred = s - s.mean(0)
    u, _, _ = torch.linalg.svd(centred, full_matrices=False)
    whitened = u * math.sqrt(len(s))  # columns centred, uncorrelated, biased variance 1
    assert barlow(whitened, whitened.clone()).item() == pytest.approx(0, abs=1e-8)
    assert barlow(s, s.clone()).item() > 1e-3  # correlated dims keep the redundancy term positive


@pytest.mark.parametrize("fn", [infonce, infonce_cross, softnn, functools.partial(softnn, relative=False), supcon, wasserstein])
def test_paired_losses_prefer_matching_rows(fn):
    s, v = pair(n=16, d=8)
    s, v = s.abs(), v.abs()
    assert fn(s, s.clone()) < fn(s, s[torch.randperm(16, generator=torch.Generator().manual_seed(0))])
    assert fn(s, s.clone()) < fn(s, v)


@pytest.mark.parametrize(
    "fn",
    [
        mse,
        cosine,
        infonce,
        infonce_cross,
        functools.partial(softnn, relative=False),
        barlow,
        wasserstein,
        functools.partial(wasserstein, softmax=True),
        functools.partial(sliced_wasserstein, projections=torch.eye(3)),
    ],
)
def test_symmetric(fn):
    a, b = pair(n=6)
    a, b = a.abs(), b.abs()
    torch.testing.assert_close(fn(a, b), fn(b, a))


def test_infonce_is_softnn_on_the_unit_sphere_at_twice_the_temperature():
    """||a - b||^2 = 2 - 2 cos(a, b) for unit rows: the old softnn(normalize=True, T) was NT-Xent at T / 2,
    i.e. today's infonce, which is why it has no registry entry of its own."""
    s, v = pair(n=6, d=4)
    unit_s, unit_v = torch.nn.functional.normalize(s, dim=1), torch.nn.functional.normalize(v, dim=1)
    torch.testing.assert_close(softnn(unit_s, unit_v, temperature=0.2, relative=False), infonce(s, v, temperature=0.1))


def test_infonce_uses_negatives_from_both_encoders():
    """Two stolen batches with the same stolen-victim cosines but different stolen-stolen cosines: extra
    coordinates the victim does not use, of equal length, orthogonal across rows or shared by all rows.
    The cross-encoder form sees only the stolen-victim block; NT-Xent also pushes the stolen rows apart."""
    n = 5
    c, v = pair(n=n, d=3)
    pad = torch.zeros(n, n, dtype=torch.float64)
    victim = torch.cat([v, pad], dim=1)
    apart = torch.cat([c, torch.eye(n, dtype=torch.float64)], dim=1)
    together = torch.cat([c, pad.index_fill(1, torch.tensor([0]), 1.0)], dim=1)
    torch.testing.assert_close(infonce_cross(apart, victim), infonce_cross(together, victim))
    assert infonce(together, victim) > infonce(apart, victim) + 0.1


def test_softnn_relative_scale():
    s, v = pair(n=8, d=5)
    # relative: a common rescaling or shift of both encoders' outputs changes nothing ...
    torch.testing.assert_close(softnn(7 * s + 3, 7 * v + 3), softnn(s, v))
    # ... raw: the same temperature means a different sharpness at a different scale
    assert softnn(7 * s, 7 * v, relative=False) != pytest.approx(softnn(s, v, relative=False).item())
    # Euclidean, not cosine: a stolen copy at the wrong scale is penalised (cosine-based losses ignore it)
    assert softnn(2 * v, v) > softnn(v, v) + 0.1


def test_softnn_stable():
    s, v = pair(n=6, d=4)
    for loss in (softnn(1e4 * s, 1e4 * v, relative=False), softnn(1e-4 * s, 1e-4 * v, relative=False, temperature=1e-6)):
        assert torch.isfinite(loss)
    # one image: each point's only candidate is its partner, the loss is exactly 0 and its gradient finite
    one = s[:1].clone().requires_grad_()
    value = softnn(one, v[:1])
    value.backward()
    assert value.item() == 0 and torch.isfinite(one.grad).all()
    # a victim batch without spread (identical rows) still gives finite values
    assert torch.isfinite(softnn(s, v[:1].expand(6, -1)))


def test_wasserstein_properties():
    s, v = pair(n=6, d=5)
    s, v = s.abs(), v.abs()
    assert (wasserstein(s, v) >= 0) and (wasserstein(s, v, softmax=True) >= 0)
    scale = torch.rand(6, 1, dtype=torch.float64) * 10 + 0.1
    torch.testing.assert_close(wasserstein(s * scale, v), wasserstein(s, v))  # each row's scale is divided out
    perm = torch.tensor([1, 2, 3, 4, 5, 0])
    assert wasserstein(s[perm], v) != pytest.approx(wasserstein(s, v).item())  # paired, unlike sliced_wasserstein
    zero = torch.zeros(2, 5, dtype=torch.float64)
    assert torch.isfinite(wasserstein(zero, v[:2]))  # an all-zero row is zero mass, not NaN
    with pytest.raises(ValueError, match="softmax=True"):
        wasserstein(s - 1, v)
    with pytest.raises(ValueError, match="softmax=True"):
        wasserstein(s, v - 1)
    assert torch.isfinite(wasserstein(s - 1, v - 1, softmax=True))


def test_sliced_wasserstein_ignores_row_order():
    a, b = pair(n=6)
    proj = torch.randn(16, 3, dtype=torch.float64)
    perm = torch.randperm(6)
    torch.testing.assert_close(sliced_wasserstein(a[perm], b, projections=proj), sliced_wasserstein(a, b, projections=proj))
    torch.testing.assert_close(sliced_wasserstein(a, b[perm], projections=proj), sliced_wasserstein(a, b, projections=proj))


def test_sliced_wasserstein_draws_from_global_rng():
    a, b = pair(n=6)
    torch.manual_seed(3)
    first = sliced_wasserstein(a, b, num_projections=4)
    torch.manual_seed(3)
    assert sliced_wasserstein(a, b, num_projections=4) == first


def test_cosine_scale_invariant():
    a, b = pair(n=6)
    scale = torch.rand(6, 1, dtype=torch.float64) * 10 + 0.1
    torch.testing.assert_close(cosine(a * scale, b / 3), cosine(a, b))


def test_supcon_without_labels_is_one_class_per_image():
    s, v = pair(n=6)
    torch.testing.assert_close(supcon(s, v), supcon(s, v, labels=torch.arange(6)))


# ---------------------------------------------------------------- (3) gradients


def call(name: str, loss, stolen: torch.Tensor, victim: torch.Tensor) -> torch.Tensor:
    if LOSSES[name].needs_labels:
        return loss(stolen, victim, labels=torch.tensor([0, 1, 0, 1, 2, 2, 3, 3]))
    return loss(stolen, victim)


@pytest.mark.parametrize("name", sorted(NAMES))
def test_gradient_flows_into_stolen_only(name):
    torch.manual_seed(0)
    loss = make_loss(name, 5)
    stolen, victim = torch.randn(8, 5), torch.randn(8, 5)
    if name in NON_NEGATIVE:
        stolen, victim = stolen.abs(), victim.abs()
    stolen.requires_grad_()
    victim.requires_grad_()  # even a victim that tracks gradients gets none
    call(name, loss, stolen, victim).backward()
    assert victim.grad is None
    assert torch.isfinite(stolen.grad).all() and stolen.grad.abs().sum() > 0
    if isinstance(loss, nn.Module):
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in loss.parameters())


def test_simsiam_second_term_only_trains_predictor():
    torch.manual_seed(0)
    module = SimSiamLoss(5, pred_dim=7)
    stolen, victim = torch.randn(8, 5, requires_grad=True), torch.randn(8, 5)
    first_term_only = -0.5 * torch.cosine_similarity(module.predictor(stolen), victim, dim=1).mean()
    (expected,) = torch.autograd.grad(first_term_only, stolen)
    (got,) = torch.autograd.grad(module(stolen, victim), stolen)
    torch.testing.assert_close(got, expected)


# ---------------------------------------------------------------- (4) make_loss validation


def test_make_loss_unknown_name():
    with pytest.raises(ValueError, match=r"unknown loss 'nope'; known: barlow, cosine, infonce, infonce_cross, mse") as err:
        make_loss("nope", 8)
    assert "\n" not in str(err.value)


def test_make_loss_unknown_hparam_names_it_and_the_accepted_ones():
    with pytest.raises(ValueError, match=r"no hyperparameter 'temp'; accepted: temperature, relative"):
        make_loss("softnn", 8, temp=0.1)
    with pytest.raises(ValueError, match=r"no hyperparameter 'labels'; accepted: temperature"):
        make_loss("supcon", 8, labels=torch.zeros(4))
    with pytest.raises(ValueError, match=r"'scale'; accepted: \(none\)"):
        make_loss("mse", 8, scale=2.0)


@pytest.mark.parametrize(
    ("name", "key", "value"),
    [
        ("infonce", "temperature", 0),
        ("infonce", "temperature", -0.1),
        ("supcon", "temperature", float("nan")),
        ("softnn", "temperature", "0.1"),
        ("softnn", "relative", 1),
        ("infonce_cross", "temperature", 0),
        ("wasserstein", "softmax", "yes"),
        ("sliced_wasserstein", "num_projections", 0),
        ("sliced_wasserstein", "num_projections", 2.0),
        ("barlow", "lambd", -1e-3),
        ("simsiam", "pred_dim", True),
    ],
)
def test_make_loss_rejects_bad_values(name, key, value):
    with pytest.raises(ValueError, match=rf"loss '{name}': {key} must be"):
        make_loss(name, 8, **{key: value})


def test_make_loss_rejects_bad_dim():
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        make_loss("mse", 0)


def test_make_loss_binds_hyperparameters():
    s, v = pair()
    torch.testing.assert_close(make_loss("infonce", 3, temperature=0.5)(s, v), infonce(s, v, temperature=0.5))
    module = make_loss("simsiam", 3, pred_dim=4)
    assert isinstance(module, SimSiamLoss) and module.predictor[0].out_features == 4


def test_shape_errors():
    s, v = pair()
    with pytest.raises(ValueError, match="same shape"):
        mse(s, v[:3])
    with pytest.raises(ValueError, match="labels must have shape"):
        supcon(s, v, labels=torch.zeros(3))
    with pytest.raises(ValueError, match="projections must be"):
        sliced_wasserstein(s, v, projections=torch.eye(4))


# ---------------------------------------------------------------- (5) registry


def test_registry_holds_exactly_the_ten_losses():
    assert set(LOSSES) == NAMES
    for name, entry in LOSSES.items():
        assert LOSSES.implementation(name) is not None and entry.kind in KINDS
        assert entry.description and "\n" not in entry.description
        assert entry.needs_labels == (name == "supcon")
        assert is_module(name) == (name == "simsiam")
    assert {n: LOSSES[n]().model_dump() for n in ("infonce", "infonce_cross", "softnn", "wasserstein", "sliced_wasserstein")} == {
        "infonce": {"temperature": 0.07},
        "infonce_cross": {"temperature": 0.1},
        "softnn": {"temperature": 0.1, "relative": True},
        "wasserstein": {"softmax": False},
        "sliced_wasserstein": {"num_projections": 128},
    }


def test_implementations_must_fit_their_declaration(monkeypatch):
    def sloppy(stolen, victim, *, alpha: float = 1.0):  # pragma: no cover - never called
        return stolen

    def cooler(stolen, victim, *, temperature: float = 0.5):  # pragma: no cover - never called
        return stolen

    monkeypatch.setattr(LOSSES, "_impls", {k: v for k, v in LOSSES._impls.items() if k not in ("mse", "infonce")})
    with pytest.raises(TypeError, match="keyword-only parameters"):
        LOSSES.implements("mse")(sloppy)
    with pytest.raises(TypeError, match="defaults of"):
        LOSSES.implements("infonce")(cooler)
    with pytest.raises(KeyError, match="not declared"):
        LOSSES.implements("sloppy")(sloppy)
    with pytest.raises(ValueError, match="implemented twice"):
        LOSSES.implements("softnn")(sloppy)
    assert "sloppy" not in LOSSES


# ---------------------------------------------------------------- (6) optimisation


@pytest.mark.parametrize("name", sorted(NAMES))
def test_training_a_linear_map_reduces_the_loss(name):
    torch.manual_seed(0)
    x, target_map = torch.randn(64, 16), torch.randn(16, 8)
    victim = x @ target_map
    if name in NON_NEGATIVE:
        victim = victim.relu()
    labels = torch.randint(0, 4, (64,))
    model, loss = nn.Linear(16, 8), make_loss(name, 8)
    if name in NON_NEGATIVE:
        model = nn.Sequential(model, nn.Softplus())
    params = list(model.parameters()) + (list(loss.parameters()) if isinstance(loss, nn.Module) else [])
    opt = torch.optim.Adam(params, lr=1e-2)

    def value() -> torch.Tensor:
        extra = {"labels": labels} if LOSSES[name].needs_labels else {}
        return loss(model(x), victim, **extra)

    def evaluate() -> float:
        torch.manual_seed(1)  # same projections for sliced_wasserstein before and after
        with torch.no_grad():
            return value().item()

    before = evaluate()
    for _ in range(100):
        opt.zero_grad()
        value().backward()
        opt.step()
    assert evaluate() < before - 0.1
