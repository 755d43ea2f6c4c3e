"""Output defenses of the victim service: registry, per-account state, and detector error rates.

Importing this package registers every defense: `none`, `noise`, `similarity`, `round`, `topk`, `pow`, `b4b`.
"""

from sslsteal.specs.defenses import DEFENSES
from sslsteal.victim.defenses.b4b import B4BDefense
from sslsteal.victim.defenses.base import Defense, NoDefense, account_seed, build_defense
from sslsteal.victim.defenses.detection import Stream, detection_rates
from sslsteal.victim.defenses.noise import NoiseDefense
from sslsteal.victim.defenses.proof_of_work import PowDefense
from sslsteal.victim.defenses.similarity import SimilarityDefense, SimilarityDetector
from sslsteal.victim.defenses.truncation import RoundDefense, TopKDefense

__all__ = [
    "DEFENSES",
    "B4BDefense",
    "Defense",
    "NoDefense",
    "NoiseDefense",
    "PowDefense",
    "RoundDefense",
    "SimilarityDefense",
    "SimilarityDetector",
    "Stream",
    "TopKDefense",
    "account_seed",
    "build_defense",
    "detection_rates",
]
