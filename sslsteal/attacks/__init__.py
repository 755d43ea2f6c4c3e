"""Attack methods, one file each, registered under `attack.method` (sslsteal.specs.attack.METHODS): query
accounting, the shared training loop, and `steal`, which runs the method a spec names."""

from sslsteal.attacks import access_head, direct, recreate_head
from sslsteal.attacks.base import AttackContext, StolenModel, steal

__all__ = ["AttackContext", "StolenModel", "access_head", "direct", "recreate_head", "steal"]
