"""Counting a deploy's SSH round trips, per phase, for the benchmarks.

Every command a deploy sends goes through :meth:`Host.run` (one SSH channel: one round
trip, plus the command's own time); connecting goes through :meth:`Host.open`. The
counter wraps both for the duration of a ``with`` block and files each call under a phase
by its step name (:data:`PHASES`), so the figures follow the code without the deploy
knowing it is measured.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from fabric_magento_deploy.hosts import Host

#: Step name (its start) -> phase of a deploy, in the order of the phases.
PHASES: dict[str, str] = {
    "connect": "connect",
    "lock": "lock + preflight", "preflight": "lock + preflight", "check": "lock + preflight",
    "readlink": "lock + preflight", "maintenance state": "lock + preflight",
    "find PHP-FPM sockets": "lock + preflight",
    "fetch code": "resolve ref", "resolve ref": "resolve ref",
    "record": "build", "checkout": "build", "link shared": "build", "composer install": "build",
    "di:compile": "build", "dump-autoload": "build", "static content": "build",
    "verify build": "verify", "verify release": "verify", "setup:db:status": "db status",
    "app:config:status": "db status", "verify + db status": "verify",
    "switch": "switch",
    "flush OPcache": "after switch", "cache:flush": "after switch",
    "queue:consumers:restart": "after switch", "list magento processes": "after switch",
    "after switch": "after switch", "maintenance off": "after switch",
    "records": "records + prune", "list releases": "records + prune", "prune": "records + prune",
    "finish": "records + prune", "unlock": "unlock",
}
ORDER = list(dict.fromkeys(PHASES.values()))


def phase_of(step: str) -> str:
    """The phase of a step name: the longest known prefix, else ``other: <step>``."""
    known = [name for name in PHASES if step.startswith(name)]
    return PHASES[max(known, key=len)] if known else f"other: {step}"


@dataclass
class Calls:
    """Round trips seen: (step, seconds) in call order, all hosts together, and when each
    started (``time.time()``, to match the fake Magento's command log)."""

    steps: list[tuple[str, float]] = field(default_factory=list)
    started: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, step: str, seconds: float) -> None:
        with self.lock:
            self.steps.append((step, seconds))
            self.started.append(time.time() - seconds)

    def per_phase(self) -> Counter[str]:
        return Counter(phase_of(step) for step, _ in self.steps)

    def ordered(self) -> list[tuple[str, int]]:
        counts = self.per_phase()
        known = [(p, counts[p]) for p in ORDER if counts[p]]
        return known + sorted((p, n) for p, n in counts.items() if p not in ORDER)


@contextmanager
def counting() -> Iterator[Calls]:
    """Count every :meth:`Host.run` (and every connection opened) during the block.

    ``Host.run`` called from the main thread calls itself again from a worker thread
    (see ``hosts.in_threads``); only the worker's call, which sends the command, counts.
    """
    calls = Calls()
    run, open_ = Host.run, Host.open
    together = getattr(Host, "run_together", None)  # absent before the switch used a barrier

    def counted_run(self: Host, command: str, **kw: object):  # type: ignore[no-untyped-def]
        if threading.current_thread() is threading.main_thread():
            return run(self, command, **kw)  # type: ignore[arg-type]
        start = time.perf_counter()
        try:
            return run(self, command, **kw)  # type: ignore[arg-type]
        finally:
            calls.add(str(kw.get("step", "run")), time.perf_counter() - start)

    def counted_together(self: Host, command: str, barrier: object, **kw: object):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            return together(self, command, barrier, **kw)  # type: ignore[arg-type]
        finally:
            calls.add(str(kw.get("step", "run")), time.perf_counter() - start)

    def counted_open(self: Host) -> None:
        fresh = not self.is_local and not self.runner.is_connected  # type: ignore[attr-defined]
        open_(self)
        if fresh:
            calls.add("connect", 0.0)

    Host.run, Host.open = counted_run, counted_open  # type: ignore[method-assign]
    if together:
        Host.run_together = counted_together  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        Host.run, Host.open = run, open_  # type: ignore[method-assign]
        if together:
            Host.run_together = together  # type: ignore[method-assign]
