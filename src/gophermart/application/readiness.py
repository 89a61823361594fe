"""Readiness: whether this process can do useful work now (SPEC.md, "Health")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Readiness:
    """The verdict and what each check found (``"ok"`` or what failed), for operators."""

    ready: bool
    checks: Mapping[str, str]


class ReadinessProbe(Protocol):
    async def __call__(self) -> Readiness:
        """Check the dependencies; never raises, and answers within a bounded time."""
        ...
