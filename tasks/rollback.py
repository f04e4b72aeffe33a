"""Going back to an earlier release, and refusing to when the database moved since.

Pointing ``current`` back is instant, but only safe for code-only releases: once a later
deploy ran ``setup:upgrade``, the old code meets a schema it does not know. The release
records (``history/<id>.json``) say which deploy moved the database, so we can refuse
with the name of that release -- unless ``--force``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import magento, opcache, release
from .deploy import (
    DeployError,
    flush_caches,
    interrupts_as_exceptions,
    left_out,
    locked,
    mark,
    open_all,
    raise_on_failures,
    state_report,
    switch_all,
)
from .hosts import Host, distinct, failures, on_all
from .release import FAILED, LIVE, PREVIOUS, ReleaseRecord
from .report import Summary, Timeline
from .settings import Settings


class RollbackRefused(RuntimeError):
    """The rollback would cross a schema change (or has no valid target)."""


@dataclass(frozen=True)
class RollbackPlan:
    live: str
    target: str
    schema_movers: tuple[str, ...]  # releases newer than the target that moved the database


def rollback_target(live: str | None, records: dict[str, ReleaseRecord],
                    mtimes: dict[str, float] | None = None) -> str | None:
    """The newest release deployed before ``live`` that was live once (never a failed one)."""
    if not live:
        return None
    key = _deploy_order(records, mtimes or {})
    older = [r for r in records
             if key(r) < key(live) and records[r].status in (PREVIOUS, LIVE)]
    return max(older, key=key, default=None)


def _deploy_order(records: dict[str, ReleaseRecord],
                  mtimes: dict[str, float]) -> Callable[[str], tuple[float, str]]:
    return lambda rel: release.started(rel, records, mtimes)


def plan(live: str | None, records: dict[str, ReleaseRecord], present: release.Releases,
         *, to: str | None = None, force: bool = False) -> RollbackPlan:
    """Decide the target and check the schema; pure, so it is the same on every host."""
    if not live:
        raise RollbackRefused("nothing is live yet: there is nothing to roll back")
    target = to or rollback_target(live, records, present.mtimes)
    if not target:
        raise RollbackRefused(f"no earlier release to roll back to from {live} "
                              "(only releases that were live once qualify)")
    if target == live:
        raise RollbackRefused(f"{target} is already live")
    if target not in present.ordered:
        raise RollbackRefused(f"release {target} is not on disk (pruned?) or is not a release;"
                              f" present: {', '.join(present.ordered) or 'none'}")
    status = records[target].status if target in records else "unknown"
    if status in (FAILED, release.BUILDING):
        raise RollbackRefused(f"release {target} is {status}: it never finished a deploy")
    key = _deploy_order(records, present.mtimes)
    movers = tuple(sorted((r for r in records if key(r) > key(target)
                           and records[r].schema_changed), key=key))
    if movers and not force:
        raise RollbackRefused(
            f"refusing to roll back from {live} to {target}: release {movers[-1]} changed the "
            f"database (setup:upgrade{' in ' + ', '.join(movers) if len(movers) > 1 else ''}). "
            f"The code of {target} expects the old schema and would break the shop. "
            "Deploy a fix forward, or restore the database first and use --force."
        )
    return RollbackPlan(live, target, movers)


def rollback(hosts: list[Host], settings: Settings, *, to: str | None = None,
             force: bool = False, partial: bool = False) -> Summary:
    """Switch every host back to the previous live release (or ``to``); all or none."""
    hosts = distinct(hosts, settings)
    timeline = Timeline()
    summary = Summary(release=to or "", action="rollback")
    left_out(hosts, settings, partial, summary)
    with interrupts_as_exceptions(hosts):
        open_all(hosts)
        with locked(hosts, settings, "rollback", to or ""):
            plans = on_all(hosts, lambda h: _host_plan(h, settings, to, force))
            errors = failures(plans)
            if errors:
                raise RollbackRefused("\n".join(f"[{h}] {e}" for h, e in errors.items()))
            targets = {p.target for p in plans.values()}  # type: ignore[union-attr]
            if len(targets) > 1:
                raise DeployError(f"hosts disagree on the rollback target: "
                                  f"{ {h: p.target for h, p in plans.items()} }; use --to")
            target = targets.pop()
            strategies = on_all(hosts, lambda h: opcache.choose(h, settings))
            raise_on_failures(strategies, "OPcache preflight")
            live = {h: p.live for h, p in plans.items()}  # type: ignore[union-attr]
            switched = switch_all(hosts, settings, target, live, timeline)
            summary.release = target
            first = min(switched.values())
            summary.switch_offsets = {h: t - first for h, t in switched.items()}
            movers = next(iter(plans.values())).schema_movers  # type: ignore[union-attr]
            if movers:
                summary.warnings.append(
                    f"forced across a schema change ({', '.join(movers)}): the DATABASE WAS NOT "
                    "rolled back; the old code now runs against the newer schema")
            problems, _ = flush_caches(hosts, settings, strategies, summary, target, timeline)
            on_all(hosts, lambda h: _records_after(h, settings, live[h.name], target, summary))
            if problems:
                raise DeployError(summary.text() + "\nTHE ROLLBACK IS LIVE, BUT:\n- "
                                  + "\n- ".join(problems) + "\n" + state_report(hosts, settings))
    return summary


def _host_plan(host: Host, settings: Settings, to: str | None, force: bool) -> RollbackPlan:
    live = release.live_release(host, settings)
    records = release.read_records(host, settings)
    return plan(live, records, release.list_releases(host, settings, records), to=to,
                force=force)


def _records_after(host: Host, settings: Settings, old: str, target: str,
                   summary: Summary) -> None:
    mark(host, settings, old, PREVIOUS)
    mark(host, settings, target, LIVE)
    if magento.maintenance_is_on(host, settings, target):
        summary.warnings.append(f"{host.name}: release {target} has its maintenance flag on; "
                                "lift it with `fab maintenance-off` when the shop is ready")
