"""A step is a name and one shell command; a plan is the list of steps a phase runs.

Phases build their plans with pure functions (no SSH), so ``--dry`` prints exactly what
a real deploy would run and unit tests check commands without a host.
"""

from __future__ import annotations

from typing import NamedTuple


class Step(NamedTuple):
    """``stdin`` is fed to the command and never printed (credentials travel there)."""

    name: str
    command: str
    stdin: str = ""


def render(title: str, steps: list[Step]) -> str:
    """A readable listing of a plan for ``--dry``."""
    lines = [f"# {title}"]
    for step in steps:
        lines.append(f"  {step.name}:")
        lines.append(f"    $ {step.command}")
    return "\n".join(lines)
