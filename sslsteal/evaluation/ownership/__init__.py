"""Ownership tests: is a suspect encoder a stolen copy of the victim? Verdicts calibrated on honest references.

Each registered test scores one encoder (`scores`); `calibrate.run_test` compares the suspect's score with
those of independently trained references and says `stolen`, `not stolen` or `inconclusive` (docs/ownership.md).
"""

from sslsteal.evaluation.ownership import scores as _scores  # noqa: F401  (registers the tests)
from sslsteal.evaluation.ownership.calibrate import MIN_REFERENCES, OwnershipTest, ownership_test, prediction_t, run_test, run_tests
from sslsteal.evaluation.ownership.evidence import Evidence, OwnershipResult, Score, Verdict
from sslsteal.specs.evaluate import OWNERSHIP_TESTS

__all__ = [
    "MIN_REFERENCES",
    "OWNERSHIP_TESTS",
    "Evidence",
    "OwnershipResult",
    "OwnershipTest",
    "Score",
    "Verdict",
    "ownership_test",
    "prediction_t",
    "run_test",
    "run_tests",
]
