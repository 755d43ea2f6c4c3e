"""What a caller of the victim's API gets when a request is refused; the API keeps serving everyone else.

Light on purpose (no torch): the attacker's local budget (`attack.BudgetedQuery`) raises the same
`QueryBudgetExceeded` as the shared service, so one `except` covers both.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base of the errors a caller gets; the service keeps serving everyone else."""


class InvalidQuery(ServiceError, ValueError):
    """Malformed request: wrong type, shape, dtype, range, non-finite values, or batch size."""


class UnknownAccount(ServiceError, KeyError):
    """An account that was never opened."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown account"


class QueryBudgetExceeded(ServiceError):
    """The request would take the account past its budget; nothing was answered."""


class ProofOfWorkRequired(ServiceError):
    """The account must solve the attached challenge (see `challenge`) before this request is answered."""
