"""Per-pair 1-Wasserstein distance between representations read as distributions over their dimensions, as
the paper's code computes it: each row becomes a probability vector over its D dimension indices and W1
between two of them on the line 0..D-1 is the L1 distance between their CDFs. Paired: stolen row i is
compared with victim row i only."""

from __future__ import annotations

from torch import Tensor

from sslsteal.specs.losses import LOSSES

from .checks import check_pair

EPS = 1e-14  # added to each row's sum (as in the paper's code) so an all-zero row maps to zero mass, not NaN


def to_distribution(x: Tensor, softmax: bool) -> Tensor:
    """Rows as probability vectors: softmax, or division by the row sum (entries must be non-negative)."""
    if softmax:
        return x.softmax(dim=1)
    return x / (x.sum(dim=1, keepdim=True) + EPS)


@LOSSES.implements("wasserstein")
def wasserstein(stolen: Tensor, victim: Tensor, *, softmax: bool = False) -> Tensor:
    """mean_i sum_d |cumsum(p(s_i))_d - cumsum(p(v_i))_d| with p = x / sum(x) (default) or softmax(x).

    Without softmax the representations must be non-negative (ReLU-pooled encoder outputs are): negative
    entries raise ValueError, pass softmax=True for signed outputs (heads, noised answers)."""
    check_pair(stolen, victim)
    victim = victim.detach()
    if not softmax and (stolen.min() < 0 or victim.min() < 0):  # waits for the device
        raise ValueError("wasserstein: negative entries are not a distribution over dims; use softmax=True for signed outputs")
    cdf_s = to_distribution(stolen, softmax).cumsum(dim=1)
    cdf_v = to_distribution(victim, softmax).cumsum(dim=1)
    return (cdf_s - cdf_v).abs().sum(dim=1).mean()
