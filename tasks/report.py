"""What the operator sees: a live timeline of steps and one summary at the end."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

from .health import record_summary
from .hosts import say
from .release import FAILED, REJECTED, ReleaseRecord, Releases, epoch


@dataclass
class Entry:
    host: str
    step: str
    start: float
    seconds: float
    ok: bool


@dataclass
class Timeline:
    """Steps with their host and duration, printed as they finish."""

    started: float = field(default_factory=time.monotonic)
    entries: list[Entry] = field(default_factory=list)
    quiet: bool = False

    def now(self) -> float:
        return time.monotonic() - self.started

    @contextmanager
    def timed(self, host: str, step: str) -> Iterator[None]:
        start = self.now()
        ok = False
        try:
            yield
            ok = True
        finally:
            entry = Entry(host, step, start, self.now() - start, ok)
            self.entries.append(entry)
            if not self.quiet:
                mark = "" if ok else "  FAILED"
                say(f"{start:7.2f}s  {host:<12} {step:<22} {entry.seconds:6.2f}s{mark}")

    def total(self, host: str, steps: set[str] | None = None) -> float:
        return sum(e.seconds for e in self.entries
                   if e.host == host and (steps is None or e.step in steps))

    def by_step(self, host: str) -> dict[str, float]:
        return {e.step: round(e.seconds, 3) for e in self.entries if e.host == host}


@dataclass
class Summary:
    """The end of a deploy (or rollback), one block of text."""

    release: str
    action: str = "deploy"
    commit: str = ""
    ref: str = ""
    path: str = ""  # "zero-downtime" or "maintenance"
    maintenance_seconds: float | None = None
    upgrade_seconds: float | None = None
    build_seconds: dict[str, float] = field(default_factory=dict)  # or ship time (built once)
    built_once_seconds: float | None = None  # DEPLOY_BUILD=local: the one build's time
    sent_bytes: dict[str, int] = field(default_factory=dict)  # what rsync sent each host
    switch_offsets: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def switch_spread(self) -> float:
        offsets = list(self.switch_offsets.values())
        return max(offsets) - min(offsets) if offsets else 0.0

    def as_dict(self) -> dict:
        """The summary as data, for ``--json`` (CI reads it instead of parsing text)."""
        return {**asdict(self), "switch_spread": self.switch_spread}

    def text(self) -> str:
        hosts = sorted(self.switch_offsets or self.build_seconds)
        head = f"{self.action}: release {self.release}"
        if self.commit:
            head += f" ({self.ref} @ {self.commit[:10]})"
        lines = [head + f" is live on {', '.join(hosts)}"]
        if self.path == "maintenance" and self.maintenance_seconds is None:
            lines.append(f"path: setup:upgrade {self.upgrade_seconds or 0:.2f} s under the "
                         "maintenance the operator had set; it stays on")
        elif self.path == "maintenance":
            lines.append(f"path: maintenance window {self.maintenance_seconds:.2f} s "
                         f"(setup:upgrade {self.upgrade_seconds or 0:.2f} s)")
        elif self.path == "blue-green":
            lines.append(f"path: blue-green, setup:upgrade {self.upgrade_seconds or 0:.2f} s "
                         "while the old release served, maintenance window 0 s")
        elif self.path:
            lines.append("path: zero-downtime (no database or config change), "
                         "maintenance window 0 s")
        shipped = self.built_once_seconds is not None
        if shipped:
            lines.append(f"built once where fab runs in {self.built_once_seconds:.2f} s, "
                         "then shipped")
        lines.append(f"{'host':<14}{'ship' if shipped else 'build':>9}{'switched at':>14}"
                     + (f"{'sent':>12}" if shipped else ""))
        first = min(self.switch_offsets.values(), default=0.0)
        for host in hosts:
            build = self.build_seconds.get(host)
            switched = self.switch_offsets.get(host)
            build_text = "" if build is None else f"{build:.2f} s"
            switch_text = "" if switched is None else f"+{(switched - first) * 1000:.0f} ms"
            sent = f"{self.sent_bytes[host] / 1e6:.2f} MB" if host in self.sent_bytes else ""
            lines.append(f"{host:<14}{build_text:>9}{switch_text:>14}"
                         + (f"{sent:>12}" if shipped else ""))
        if len(self.switch_offsets) > 1:
            lines.append(f"switch spread across hosts: {self.switch_spread * 1000:.0f} ms")
        lines += self.notes
        lines += [f"WARNING: {w}" for w in self.warnings]
        return "\n".join(lines)


def _age(started: str) -> str:
    return _age_of(epoch(started))


def _age_of(when: float | None) -> str:
    if when is None:
        return "?"
    seconds = time.time() - when
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def _status(rec: ReleaseRecord | None, rel: str, live: str | None, target: str | None) -> str:
    """``live``, ``previous <- rollback`` (where ``fab rollback`` would go), ``rejected 2h ago
    by alice@laptop`` (a rollback left it), ``failed``, ``no record``..."""
    if rel == live:
        return "live"
    if rec is None:
        return "no record"
    status = rec.status
    if status == REJECTED:
        at, by = rec.rejected_at, rec.rejected_by
        status += (f" {_age(at)} ago" if at else "") + (f" by {by}" if by else "")
    return status + (" <- rollback" if rel == target else "")


def releases_table(present: Releases, records: dict, live: str | None,
                   target: str | None = None) -> str:
    """A text table of the releases on a host, newest deploy first (records of pruned ones
    left out), then the folders in ``releases/`` that are not releases.

    ``target``: where ``fab rollback`` would go, marked ``<- rollback``. Rejected releases
    (a rollback left them) show when and by whom; they and failed ones are never chosen.
    """
    rows = [("", "release", "commit", "age", "status", "schema", "health")]
    for rel in reversed(present.ordered):
        rec = records.get(rel)
        rows.append((
            "*" if rel == live else "", rel, rec.commit[:10] if rec and rec.commit else "?",
            _age(rec.started) if rec else _age_of(present.mtimes.get(rel)),
            _status(rec, rel, live, target),
            ("CHANGED" if rec.schema_changed else "-") if rec else "?",
            record_summary(rec.health) if rec else "",
        ))
    if len(rows) == 1:
        table = "  (no releases)"
    else:
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        table = "\n".join("  ".join(col.ljust(w) for col, w in zip(row, widths, strict=True))
                          .rstrip() for row in rows)
    skipped = [r for r in present.ordered if r != live and r in records
               and records[r].status in (REJECTED, FAILED)]
    if skipped:
        table += ("\nrejected and failed releases are never a rollback target; "
                  "`fab rollback --to=ID` may still name a rejected one")
    if present.foreign:
        table += ("\nnot releases (no app/etc, no record; never pruned): "
                  + ", ".join(present.foreign))
    return table
