"""Attack methods, one file each, registered under `attack.method` (sslsteal.specs.methods.METHODS): query
accounting, the shared training loop, and `steal`, which runs the method a spec names."""

from sslsteal.attacks import access_head, consistency, contsteal, coverage, direct, rda, recreate_head, stolenencoder
from sslsteal.attacks.base import AttackContext, StolenModel, steal

__all__ = ["AttackContext", "StolenModel", "access_head", "consistency", "contsteal", "coverage", "direct", "rda", "recreate_head", "steal", "stolenencoder"]
