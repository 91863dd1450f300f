"""Domain errors: raised anywhere below the API layer, mapped to gRPC status in one place
(`api/error_mapping.py`). Reasons are the shared constants of `taskgrove.domain.reasons`."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Code(enum.Enum):
    """The canonical gRPC codes the domain uses."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    ABORTED = "ABORTED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAVAILABLE = "UNAVAILABLE"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    INTERNAL = "INTERNAL"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One invalid field of a request, e.g. `tasks[2].dependencies[0].id`."""

    field: str
    description: str
    reason: str


@dataclass(slots=True)
class ServiceError(Exception):
    """A request that cannot be served, with a stable UPPER_SNAKE reason."""

    code: Code
    reason: str
    message: str
    violations: list[FieldViolation] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    violations_total: int = 0
    """How many violations were found, when more than `violations` lists."""

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


def invalid(violations: list[FieldViolation], total: int = 0) -> ServiceError:
    """INVALID_ARGUMENT carrying the violations (of `total` found, if more were); the
    reason is that of the first."""
    first = violations[0]
    message = "; ".join(f"{v.field}: {v.description}" for v in violations)
    return ServiceError(
        Code.INVALID_ARGUMENT, first.reason, message, list(violations), violations_total=total
    )


def invalid_field(field_path: str, reason: str, description: str) -> ServiceError:
    return invalid([FieldViolation(field_path, description, reason)])


def not_found(reason: str, what: str, ident: str, field_name: str = "id") -> ServiceError:
    return ServiceError(
        Code.NOT_FOUND,
        reason,
        f"{what} {ident!r} not found",
        [FieldViolation(field_name, f"{what} {ident!r} not found", reason)],
        {"id": ident},
    )
