"""Going back to an earlier release, and refusing to when the database moved since.

Pointing ``current`` back is instant, but only safe for code-only releases: once a later
deploy ran ``setup:upgrade``, the old code meets a schema it does not know. The release
records (``history/<id>.json``) say which deploy moved the database, so we can refuse
with the name of that release -- unless ``--force``.

The release a rollback leaves is marked ``rejected`` (who, when) in its record, like
Deployer's BAD_RELEASE: a later ``fab rollback`` never goes back to it, nor to a release
that failed (never finished, or reverted by the post-switch health check). Without
``--to`` the target is the release the live one replaced (its record's ``replaced``), else
the newest release deployed before it that was live once. ``--to`` may name a rejected
release (the summary says it was rejected), never a failed or unfinished one.
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
    open_all,
    raise_on_failures,
    state_report,
    switch_all,
)
from .hosts import Host, distinct, failures, on_all
from .release import BUILDING, FAILED, LIVE, PREVIOUS, REJECTED, ReleaseRecord
from .report import Summary, Timeline
from .settings import Settings


class RollbackRefused(RuntimeError):
    """The rollback would cross a schema change (or has no valid target)."""


# What a rollback may choose by itself: releases that were live and were not left by a
# rollback. Never REJECTED, FAILED (reverted or unfinished), BUILDING or BUILT (never live).
TARGETS = (LIVE, PREVIOUS)


@dataclass(frozen=True)
class RollbackPlan:
    live: str
    target: str
    schema_movers: tuple[str, ...]  # releases newer than the target that moved the database
    rejected: str = ""  # the target was rejected by an earlier rollback: by whom and when


def rollback_target(live: str | None, records: dict[str, ReleaseRecord],
                    mtimes: dict[str, float] | None = None) -> str | None:
    """Where ``fab rollback`` goes from ``live``. Pure.

    The release ``live`` replaced, when its record says so (``replaced``) and that release
    qualifies; else the newest release deployed before ``live`` that qualifies. Qualifies:
    live once and never left by a rollback (:data:`TARGETS`): so after A -> B, rollback
    (B rejected), deploy C, a rollback goes to A, not to B.
    """
    if not live:
        return None

    def qualifies(rel: str) -> bool:
        return rel != live and rel in records and records[rel].status in TARGETS

    replaced = records[live].replaced if live in records else ""
    if replaced and qualifies(replaced):
        return replaced
    key = _deploy_order(records, mtimes or {})
    older = [r for r in records if key(r) < key(live) and qualifies(r)]
    return max(older, key=key, default=None)


def _skipped(live: str, records: dict[str, ReleaseRecord],
             mtimes: dict[str, float]) -> list[str]:
    """Releases before ``live`` that a rollback will not choose, with why."""
    key = _deploy_order(records, mtimes)
    return [f"{r} {records[r].status}" for r in sorted(records, key=key)
            if key(r) < key(live) and records[r].status in (REJECTED, FAILED)]


def rejection(rec: ReleaseRecord) -> str:
    """``rejected by alice@laptop at 2026-12-08T10:02:11.512+00:00`` (what is known)."""
    return ("rejected" + (f" by {rec.rejected_by}" if rec.rejected_by else "")
            + (f" at {rec.rejected_at}" if rec.rejected_at else ""))


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
        skipped = _skipped(live, records, present.mtimes)
        raise RollbackRefused(
            f"no earlier release to roll back to from {live}: only releases that were live "
            "once and not rejected by a rollback or failed qualify"
            + (f" (skipped: {', '.join(skipped)})" if skipped else "")
            + "; `fab releases` lists them, --to=ID names one")
    if target == live:
        raise RollbackRefused(f"{target} is already live")
    if target not in present.ordered:
        raise RollbackRefused(f"release {target} is not on disk (pruned?) or is not a release;"
                              f" present: {', '.join(present.ordered) or 'none'}")
    rec = records.get(target)
    status = rec.status if rec else "unknown"
    if status == FAILED:
        why = rec.note.splitlines()[0] if rec and rec.note else "its deploy did not finish"
        raise RollbackRefused(f"release {target} failed ({why[:300]}): a failed release is "
                              "never a rollback target")
    if status == BUILDING:
        raise RollbackRefused(f"release {target} is {status}: it never finished a deploy")
    rejected = ""
    if status == REJECTED and rec:
        rejected = (f"release {target} had been {rejection(rec)} (a rollback left it); "
                    "going back to it because --to named it")
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
    return RollbackPlan(live, target, movers, rejected)


def rollback(hosts: list[Host], settings: Settings, *, to: str | None = None,
             force: bool = False, partial: bool = False) -> Summary:
    """Switch every host back to the previous live release (or ``to``); all or none.

    The release each host leaves is recorded as rejected (by whom, when), the target as
    live again.
    """
    hosts = distinct(hosts, settings)
    rejected_by = release.operator()
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
            rejected_at = release.utc_now()
            summary.release = target
            first = min(switched.values())
            summary.switch_offsets = {h: t - first for h, t in switched.items()}
            first_plan = next(iter(plans.values()))
            movers = first_plan.schema_movers  # type: ignore[union-attr]
            if first_plan.rejected:  # type: ignore[union-attr]
                summary.notes.append(first_plan.rejected)  # type: ignore[union-attr]
            if movers:
                summary.warnings.append(
                    f"forced across a schema change ({', '.join(movers)}): the DATABASE WAS NOT "
                    "rolled back; the old code now runs against the newer schema")
            problems, _, _ = flush_caches(hosts, settings, strategies, summary, target, timeline)
            recorded = on_all(hosts, lambda h: _records_after(
                h, settings, live[h.name], target, summary, rejected_at, rejected_by))
            unrecorded = failures(recorded)
            left = sorted({rel for name, rel in live.items() if name not in unrecorded})
            if left:
                summary.notes.append(
                    f"release {', '.join(left)} marked rejected: `fab rollback` will not go "
                    f"back to it (`fab rollback --to={left[0]}` still can)")
            for name, exc in unrecorded.items():
                problems.append(f"{name}: the release records could not be written ({exc}): "
                                f"a later `fab rollback` there may choose {live[name]} again")
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
                   summary: Summary, rejected_at: str, rejected_by: str) -> None:
    """``old`` rejected (who, when); ``target`` live, good again if it had been rejected."""
    release.update_record(host, settings, old, status=REJECTED, rejected_at=rejected_at,
                          rejected_by=rejected_by)
    release.update_record(host, settings, target, status=LIVE, rejected_at="", rejected_by="")
    if magento.maintenance_is_on(host, settings, target):
        summary.warnings.append(f"{host.name}: release {target} has its maintenance flag on; "
                                "lift it with `fab maintenance-off` when the shop is ready")
