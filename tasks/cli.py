"""The Fabric tasks: what ``fab --list`` shows. Each is a thin layer over the modules.

``fab deploy --hosts=web1,web2`` is ONE deploy: stock ``fab`` calls a task once per host,
serially, so ``deploy`` itself only collects its hosts and a ``post`` task, which Fabric
runs once after all per-host calls, deploys to all of them together. Every other task
keeps Fabric's per-host meaning (``fab -H web1,web2 db-status`` asks each host).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import shlex
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fabric import Connection, Group, Task
from fabric import task as fabric_task
from invoke import Context
from invoke.exceptions import Exit
from invoke.executor import Executor

from . import build, lock, magento, opcache, source, switch
from . import deploy as deploying
from . import settings as settings_module
from .hooks import Hooks
from .hosts import Host, StepFailed, distinct, on_all, q, say
from .redact import redact
from .release import (
    BUILDING,
    BUILT,
    FAILED,
    LIVE,
    PREVIOUS,
    ReleaseRecord,
    list_releases,
    live_release,
    new_release_id,
    read_records,
    write_record,
)
from .report import Summary, Timeline, releases_table
from .rollback import rollback as roll_back
from .rollback import rollback_target
from .settings import HOST_KEY_MODES, Settings, SettingsError, check_ref, load, sources


def clean_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn our errors into one clear message and a non-zero exit, not a traceback."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SettingsError as exc:
            raise Exit(f"configuration error: {exc}", code=2) from exc
        except KeyboardInterrupt as exc:
            raise Exit("interrupted: nothing was switched that was not switched back", 130) from exc
        except (RuntimeError, LookupError, OSError) as exc:
            raise Exit(redact(f"error: {exc}"), code=1) from exc
    return wrapper


def targets(c: Context | Group, settings: Settings, *, echo: bool = True) -> list[Host]:
    """The hosts a task acts on: a Connection's one host (``fab -H`` gives one per call),
    a fabric Group's hosts (called from code), else every host of ``DEPLOY_HOSTS``."""
    if isinstance(c, Group):
        return [Host.from_context(conn, echo=echo).configure(settings) for conn in c]
    if isinstance(c, Connection):
        return [Host.from_context(c, echo=echo).configure(settings)]
    if not settings.hosts:
        raise SettingsError("no host: give --hosts=web1,web2 or set DEPLOY_HOSTS")
    return [Host.named(name, c.config, echo=echo).configure(settings) for name in settings.hosts]


class LibraryTask(Task):
    """Our tasks: called from code, they also take a fabric ``Group`` (Invoke only
    accepts a Context), meaning its hosts."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if args and isinstance(args[0], Group):
            result = self.body(*args, **kwargs)
            self.times_called += 1
            return result
        return super().__call__(*args, **kwargs)


def task(*args: Any, **kwargs: Any) -> Any:
    """Fabric's ``@task`` with :class:`LibraryTask` as the default class."""
    kwargs.setdefault("klass", LibraryTask)
    return fabric_task(*args, **kwargs)


RELEASE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
NO_RECORD = "no record"


def chosen_release(host: Host, settings: Settings, release: str | None,
                   allowed: tuple[str, ...] = ()) -> str:
    """``--release`` (checked) or the newest release not marked failed, in deploy order
    (never by folder name): what the step tasks act on.

    Refuses ids that look like paths, folders that are not releases and, with
    ``allowed``, releases in any other state (a switch to a release still building, or
    one that failed, would put a broken shop live).
    """
    records = read_records(host, settings)
    present = list_releases(host, settings, records).ordered
    if release is not None and not RELEASE_ID.fullmatch(release):
        raise SettingsError(f"--release={release!r}: not a release id (a folder name in "
                            f"{settings.releases_dir})")
    if release is None:
        candidates = [r for r in present if getattr(records.get(r), "status", "") != FAILED]
        if not candidates:
            raise LookupError(f"[{host.name}] no release in {settings.releases_dir}: "
                              "run `fab prepare-release` (or `fab deploy`) first")
        release = candidates[-1]
    elif release not in present:
        raise LookupError(f"[{host.name}] {release} is not a release in {settings.releases_dir}"
                          f" (present: {', '.join(present) or 'none'})")
    status = records[release].status if release in records else NO_RECORD
    if allowed and status not in allowed:
        raise LookupError(f"[{host.name}] release {release} is {status}; this step needs one "
                          f"that is {' or '.join(allowed)}")
    return release


# -- deploy ------------------------------------------------------------------------------------

_collected: dict[str, dict[str, Any]] = {}


class FleetTask(LibraryTask):
    """A task that acts once over all its hosts, however it is called.

    ``fab -H web1,web2 deploy`` calls a task once per host, serially: there each call only
    collects its host and the ``post`` task acts once over all of them. Called from code
    (a user's own task: ``deploy(c)``), it acts at once: ``c`` a Connection is that host,
    a fabric Group its hosts, a plain Context ``DEPLOY_HOSTS``. Never "collect and hope".
    """


def per_host_call_by_fab(task_obj: Task) -> bool:
    """Is ``task_obj`` being run by Fabric's executor itself (the command line), rather
    than called by other code? Only then will its ``post`` task run.

    Compared by body: the executor runs a deep copy of the collection (invoke's
    ``Collection.from_module`` copies a fabfile's ``ns``), and a copy keeps the function.
    """
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is Executor.execute.__code__:
            call = frame.f_locals.get("call")
            return call is not None and call.task.body is task_obj.body
        frame = frame.f_back
    return False


def fleet_call(task_obj: Task, c: Context | Group, action: str,
               run: Callable[[list[Host], Settings, dict[str, Any]], None],
               **options: Any) -> None:
    """The body of a :class:`FleetTask`: collect (command line) or ``run`` now (code)."""
    settings = load(require_repo=action == "deploy")  # bad settings stop here
    if per_host_call_by_fab(task_obj):
        entry = _collected.setdefault(action, {"hosts": [], "options": {}})
        if isinstance(c, Connection):
            entry["hosts"].append(Host.from_context(c, echo=not options.get("quiet")))
        entry["options"] = options
        return
    hosts = targets(c, settings, echo=not options.get("quiet"))
    run(with_verbosity(hosts, options), settings, options)


def fleet_post(c: Context, action: str,
               run: Callable[[list[Host], Settings, dict[str, Any]], None]) -> None:
    """The ``post`` half: every host ``fab`` was given (or DEPLOY_HOSTS), once."""
    if action not in _collected:  # the task itself acted already (called from code)
        return
    settings = load(require_repo=action == "deploy")
    entry = _collected.pop(action)
    options = entry["options"]
    hosts = entry["hosts"] or targets(c, settings, echo=not options.get("quiet"))
    run(with_verbosity(hosts, options), settings, options)


def with_verbosity(hosts: list[Host], options: dict[str, Any]) -> list[Host]:
    """``--verbose``: every command is printed, prefixed by its host, before it runs."""
    for host in hosts:
        host.verbose = bool(options.get("verbose"))
    return hosts


def show(summary: Summary, options: dict[str, Any]) -> None:
    """The summary as text, or as one JSON object with ``--json``."""
    say(json.dumps(summary.as_dict()) if options.get("json") else "\n" + summary.text())


def run_deploy(hosts: list[Host], settings: Settings, options: dict[str, Any]) -> None:
    if options.get("dry"):
        say(deploying.dry_run(settings, [h.name for h in hosts], options.get("ref")))
        return
    if options.get("upgrade_mode"):
        settings = dataclasses.replace(settings, upgrade_mode=settings_module.upgrade_mode(
            options["upgrade_mode"], "--upgrade-mode"))
    show(deploying.deploy(hosts, settings, ref=options.get("ref"),
                          quiet=options.get("json", False),
                          partial=options.get("partial", False),
                          maintenance=options.get("maintenance", False)), options)


@task
@clean_errors
def _deploy_collected(c: Context) -> None:
    fleet_post(c, "deploy", run_deploy)


@task(klass=FleetTask, post=[_deploy_collected], help={
    "ref": "branch, tag or commit to deploy (default: DEPLOY_BRANCH)",
    "dry": "print the plan (every command, in order) and change nothing",
    "quiet": "only the timeline and the summary, not the commands' output",
    "partial": "deploy to only some of DEPLOY_HOSTS on purpose (the others keep their release)",
    "json": "print only the summary, as one JSON object (for CI)",
    "verbose": "print every command before it runs",
    "upgrade-mode": "maintenance or blue-green for this deploy (default DEPLOY_UPGRADE_MODE)",
    "maintenance": "blue-green: keep the maintenance window all the same",
})
@clean_errors
def deploy(c: Context, ref: str | None = None, dry: bool = False, quiet: bool = False,
           partial: bool = False, json: bool = False, verbose: bool = False,
           upgrade_mode: str | None = None, maintenance: bool = False) -> None:
    """Build a new release on every host in parallel, then switch all of them together.

    Steps: lock; fetch the code into releases/<id> (from a bare mirror on each host); link
    shared files; composer install; setup:di:compile; composer dump-autoload -o;
    setup:static-content:deploy with the release id's digits as content version. The primary
    host (DEPLOY_PRIMARY, default the first) asks Magento, from the new release, whether the
    database or config must move. No: `current` is switched on every host with zero
    downtime. Yes: maintenance on (live and new release, every host), setup:upgrade --keep-
    generated once, switch; with --upgrade-mode=blue-green (Magento 2.4.4+) the old release
    keeps serving during setup:upgrade instead (docs/blue-green.md). Then OPcache flush on
    every host, cache:flush once, maintenance off, old releases pruned. A failure before the
    switch leaves every host on its old release. The storefront check (docs/health.md):
    Magento's base URL, asked on each host of its own web server, must pass on the live
    shop before anything is built (else exit 2, naming the setting to fix); after the
    switch the first bad answer switches every host back. Hosts: --hosts=web1,web2 or DEPLOY_HOSTS;
    --hosts naming only part of DEPLOY_HOSTS is refused unless --partial. Called from your
    own task, deploy(c) deploys at once: to c's host, a Group's hosts, or DEPLOY_HOSTS for a
    plain Context.
    """
    if upgrade_mode:
        settings_module.upgrade_mode(upgrade_mode, "--upgrade-mode")  # refused before anything
    fleet_call(deploy, c, "deploy", run_deploy, ref=ref, dry=dry, quiet=quiet or json,
               partial=partial, json=json, verbose=verbose and not json,
               upgrade_mode=upgrade_mode, maintenance=maintenance)


# -- the steps, one by one ----------------------------------------------------------------------

_prepared: dict[str, tuple[str, str]] = {}


@task
def _prepared_done(c: Context) -> None:
    """After every host of one ``prepare-release``: the next call makes a new release."""
    _prepared.clear()


@task(post=[_prepared_done], help={"ref": "branch, tag or commit (default: DEPLOY_BRANCH)"})
@clean_errors
def prepare_release(c: Context, ref: str | None = None) -> None:
    """Create a new release folder with the code of REF and the shared links; print its id.

    With several hosts (-H web1,web2) every host gets the same release id and commit,
    resolved on the first, so the later steps agree on one release.
    """
    settings = load()
    ref = check_ref(ref) if ref else settings.branch
    try:
        for host in targets(c, settings):
            if ref not in _prepared:
                _prepared[ref] = (new_release_id(), source.resolve_commit(host, settings, ref))
            rel, commit = _prepared[ref]
            timeline = Timeline(quiet=True)
            hook = deploying.hooks_on(host, Hooks(settings), settings, rel, timeline)
            with deploying.locked([host], settings, "prepare-release", rel):
                deploying.prepare_on(host, settings, rel, commit, timeline, hook)
                write_record(host, settings, ReleaseRecord(
                    rel, ref=ref, commit=commit, status=BUILDING,
                    static_version=build.static_version(rel)))
            say(f"[{host.name}] prepared release {rel} ({commit[:10]})")
    finally:
        if not per_host_call_by_fab(prepare_release):  # from code: all its hosts were given
            _prepared.clear()


@task(name="build", help={"release": "release id (default: the newest)"})
@clean_errors
def build_release(c: Context, release: str | None = None) -> None:
    """composer install, setup:di:compile, composer dump-autoload -o, static content deploy.

    The release must be one prepare-release made (or rebuilt: built); it is marked built.
    """
    settings = load(require_repo=False)
    for host in targets(c, settings):
        rel = chosen_release(host, settings, release, allowed=(BUILDING, BUILT))
        timeline = Timeline(quiet=True)
        hook = deploying.hooks_on(host, Hooks(settings), settings, rel, timeline)
        with deploying.locked([host], settings, "build", rel):
            deploying.build_on(host, settings, rel, timeline, hook)
            deploying.mark(host, settings, rel, BUILT)
        say(f"[{host.name}] built release {rel}")


@task(help={"release": "release id to ask from (default: the newest)"})
@clean_errors
def db_status(c: Context, release: str | None = None) -> None:
    """Ask Magento (from the new release) whether setup:upgrade or a config import is due."""
    settings = load(require_repo=False)
    for host in targets(c, settings, echo=False):
        rel = chosen_release(host, settings, release)
        verdict = magento.db_status(host, settings, rel)
        say(f"[{host.name}] release {rel}: {verdict.line()}")


def same_release(hosts: list[Host], settings: Settings, release: str | None,
                 allowed: tuple[str, ...]) -> str:
    """The one release a coordinated step acts on: chosen on each host, all must agree."""
    rels = {h.name: chosen_release(h, settings, release, allowed=allowed) for h in hosts}
    if len(set(rels.values())) > 1:
        raise LookupError(f"hosts disagree on the newest release: {rels}; give --release")
    return next(iter(rels.values()))


def run_maybe_upgrade(hosts: list[Host], settings: Settings, options: dict[str, Any]) -> None:
    """The deploy's own database phase (:meth:`Deploy.upgrade_database`) for a built release."""
    hosts = distinct(hosts, settings)
    primary = deploying.primary_of(hosts, settings)
    with deploying.locked(hosts, settings, "maybe-upgrade"):
        rel = same_release(hosts, settings, options.get("release"), allowed=(BUILT,))
        d = deploying.Deploy.of_built(hosts, settings, rel)
        d.preflight()
        verdict = magento.db_status(primary, settings, rel)
        if not verdict.pending:
            say(f"[{primary.name}] {verdict.line()}: nothing to do")
            return
        d.upgrade_database(verdict.config_pending)
    say(f"[{primary.name}] upgraded from {rel}; maintenance is ON on "
        f"{', '.join(h.name for h in hosts)} until you run switch-symlink, flush-opcache and "
        "maintenance-off")


@task
@clean_errors
def _maybe_upgrade_collected(c: Context) -> None:
    fleet_post(c, "maybe-upgrade", run_maybe_upgrade)


@task(klass=FleetTask, post=[_maybe_upgrade_collected],
      help={"release": "release id to upgrade from (default: the newest)"})
@clean_errors
def maybe_upgrade(c: Context, release: str | None = None) -> None:
    """If the database must move: maintenance on every host, setup:upgrade on the primary.

    Maintenance goes on in the live and the new release of every host, then
    setup:upgrade --keep-generated runs once, on the primary (DEPLOY_PRIMARY, else the
    first). Maintenance stays on: run switch-symlink, flush-opcache, then maintenance-off.
    """
    fleet_call(maybe_upgrade, c, "maybe-upgrade", run_maybe_upgrade, release=release)


def run_switch(hosts: list[Host], settings: Settings, options: dict[str, Any]) -> None:
    """The deploy's own switch (:func:`deploy.switch_all`): every host or none."""
    hosts = distinct(hosts, settings)
    with deploying.locked(hosts, settings, "switch-symlink"):
        rel = same_release(hosts, settings, options.get("release"),
                           allowed=(BUILT, LIVE, PREVIOUS, NO_RECORD))
        deploying.raise_on_failures(on_all(
            hosts, lambda h: switch.check_current_is_link(h, settings)), "preflight")
        previous = {h.name: live_release(h, settings) for h in hosts}
        deploying.verify_release(hosts, settings, rel, Timeline(quiet=True))
        deploying.switch_all(hosts, settings, rel, previous, Timeline(quiet=True))
        deploying.raise_on_failures(on_all(hosts, lambda h: deploying.mark_switched(
            h, settings, rel, previous[h.name])), "release records")
    for host in hosts:
        say(f"[{host.name}] current -> releases/{rel} (was {previous[host.name] or 'nothing'})")


@task
@clean_errors
def _switch_collected(c: Context) -> None:
    fleet_post(c, "switch-symlink", run_switch)


@task(klass=FleetTask, post=[_switch_collected],
      help={"release": "release id to make live (default: the newest)"})
@clean_errors
def switch_symlink(c: Context, release: str | None = None) -> None:
    """Atomically point `current` at a built release on every host, or on none.

    The release is verified on every host first, as a deploy does (boots, production mode,
    same generated code and static version, health_check.php through PHP-FPM). Each host
    gets a temporary link renamed over `current`; if one host fails, every host goes back.
    Refuses a release still building or failed, and anything not a release.
    """
    fleet_call(switch_symlink, c, "switch-symlink", run_switch, release=release)


@task
@clean_errors
def flush_opcache(c: Context) -> None:
    """Reset PHP-FPM's OPcache without root (DEPLOY_OPCACHE: fcgi, url, command or none)."""
    settings = load(require_repo=False)
    for host in targets(c, settings, echo=False):
        for report in opcache.flush(host, settings, opcache.choose(host, settings)):
            say(f"[{host.name}] {report.line()}")
            if report.warning:
                say(f"[{host.name}] WARNING: {report.warning}")


def set_maintenance(c: Context, on: bool) -> None:
    """The flag in the live release of each host, as ``maintenance:enable/disable`` would.

    Off also lifts a flag a deploy's database phase left in the previous release (the step
    tasks flag the live and the new release, as the deploy does), so a rollback to it does
    not show maintenance; a flag the operator set there stays.
    """
    settings = load(require_repo=False)
    for host in targets(c, settings):
        live = live_release(host, settings)
        if not live:
            raise LookupError(f"[{host.name}] {settings.current} does not exist: nothing is live")
        if on:
            magento.maintenance_on(host, settings, [live])
        else:
            records = read_records(host, settings)
            before = rollback_target(live, records, list_releases(host, settings, records).mtimes)
            ours = before and magento.maintenance_owner(host, settings, before)
            magento.maintenance_off(host, settings, [live, before] if ours else [live])
        say(f"[{host.name}] maintenance {'ON' if on else 'OFF'} in release {live}")


@task
@clean_errors
def maintenance_on(c: Context) -> None:
    """Put the live release into maintenance (var/.maintenance.flag)."""
    set_maintenance(c, True)


@task
@clean_errors
def maintenance_off(c: Context) -> None:
    """Lift maintenance in the live release (e.g. after a failed setup:upgrade was fixed)."""
    set_maintenance(c, False)


@task(help={"dry": "only say what would be removed"})
@clean_errors
def prune_releases(c: Context, dry: bool = False) -> None:
    """Remove old releases; keeps DEPLOY_KEEP_RELEASES, `current` and the rollback target."""
    settings = load(require_repo=False)
    for host in targets(c, settings):
        host.open()
        with deploying.locked([host], settings, "prune"):
            live = live_release(host, settings)
            records = read_records(host, settings)
            mtimes = list_releases(host, settings, records).mtimes
            protect = {live or "", rollback_target(live, records, mtimes) or ""}
            say(deploying.prune(host, settings, protect=protect, dry=dry)
                or f"[{host.name}] nothing to prune")


def run_magento(hosts: list[Host], settings: Settings, options: dict[str, Any]) -> None:
    hosts = distinct(hosts, settings)
    if options.get("primary"):
        hosts = [deploying.primary_of(hosts, settings)]
    argv = " ".join(q(a) for a in shlex.split(options["command"]))
    command = f"cd {q(settings.current)} && {settings.php} bin/magento {argv} --no-interaction"
    deploying.raise_on_failures(on_all(hosts, lambda h: h.run(command, step="bin/magento")),
                                f"bin/magento {options['command']}")


@task
@clean_errors
def _magento_collected(c: Context) -> None:
    fleet_post(c, "magento", run_magento)


@task(name="magento", klass=FleetTask, post=[_magento_collected], positional=["command"],
      help={"command": "the bin/magento command and its arguments, quoted as one",
            "primary": "only on the primary (DEPLOY_PRIMARY, else the first host)"})
@clean_errors
def magento_command(c: Context, command: str, primary: bool = False) -> None:
    """Run bin/magento in `current` on every host at once: fab magento "cache:clean config".

    Output is prefixed by host; the exit is non-zero if it failed on any host.
    """
    fleet_call(magento_command, c, "magento", run_magento, command=command, primary=primary)


@task(positional=["name"], help={"name": "the stage: its .env.NAME is read over .env"})
@clean_errors
def stage(c: Context, name: str) -> None:
    """Choose the stage for the tasks after it: `fab stage production deploy`.

    Reads .env.NAME (next to your fabfile) over .env; the environment still wins.
    DEPLOY_STAGE=NAME does the same without this task.
    """
    settings_module.selected_stage = name
    sources()  # a stage without its .env.NAME stops here, before any task runs


@task
@clean_errors
def config(c: Context) -> None:
    """Print every DEPLOY_* setting and where it came from; credentials masked.

    Masked: the credentials of any URL in any value, and the values of the variables
    named in DEPLOY_SECRETS (a name set nowhere is warned about).

    Sources: default, .env, .env.STAGE, environment (the later wins), as the next task
    would read them; then whether they are valid.
    """
    found = sources()  # registers every credential, so the values below are masked
    width = max(len(key) for key in found)
    for key, (value, origin) in found.items():
        say(f"{key:<{width}}  {redact(value)!r:<40}  {origin}")
    load(require_repo=False)  # and say what is wrong, if anything
    for problem in settings_module.unmasked_secrets():
        say(f"WARNING: DEPLOY_SECRETS: {problem}")
    say("settings are valid")


@task
@clean_errors
def unlock(c: Context) -> None:
    """Remove a deploy lock left behind (say who held it). Only when nobody is deploying."""
    settings = load(require_repo=False)
    for host in targets(c, settings):
        info = lock.force_unlock(host, settings)
        say(f"[{host.name}] " + (f"removed lock held by {info}" if info else "no lock"))


def run_releases(hosts: list[Host], settings: Settings, options: dict[str, Any]) -> None:
    hosts = distinct(hosts, settings)
    def view(host: Host) -> tuple:
        records = read_records(host, settings)
        return list_releases(host, settings, records), records, live_release(host, settings)

    views = on_all(hosts, view)
    deploying.raise_on_failures(views, "releases")
    lives = {name: live for name, (_, _, live) in views.items()}
    def table(view: tuple) -> str:
        present, records, live = view
        return releases_table(present, records, live,
                              target=rollback_target(live, records, present.mtimes))

    tables = {name: table(view) for name, view in views.items()}
    def shown(view: tuple) -> tuple:  # what the table says, without per-host timings
        present, records, live = view
        return live, present.foreign, rollback_target(live, records, present.mtimes), tuple(
            (r, getattr(records.get(r), "commit", None), getattr(records.get(r), "status", None),
             getattr(records.get(r), "schema_changed", None),
             getattr(records.get(r), "rejected_by", None)) for r in present.ordered)

    if len({shown(view) for view in views.values()}) == 1:
        say(f"releases on {', '.join(tables)}:\n{next(iter(tables.values()))}")
    else:
        for name, table in tables.items():
            say(f"releases on {name}:\n{table}\n")
    if len(set(lives.values())) > 1:
        say(f"!!! HOSTS DISAGREE about what is live: {lives}")


@task
@clean_errors
def _releases_collected(c: Context) -> None:
    fleet_post(c, "releases", run_releases)


@task(klass=FleetTask, post=[_releases_collected])
@clean_errors
def releases(c: Context) -> None:
    """List releases: id, commit, age, status, schema change, health, which is current.

    Status `rejected` (with when and by whom) marks a release a rollback left, `<- rollback`
    where `fab rollback` would go. One table when all hosts agree (also with --hosts),
    otherwise one per host, and a loud line when hosts point `current` at different
    releases.
    """
    fleet_call(releases, c, "releases", run_releases, quiet=True)


def run_rollback(hosts: list[Host], settings: Settings, options: dict[str, Any]) -> None:
    show(roll_back(hosts, settings, to=options.get("to"), force=options.get("force", False),
                   partial=options.get("partial", False)), options)


@task
@clean_errors
def _rollback_collected(c: Context) -> None:
    fleet_post(c, "rollback", run_rollback)


@task(klass=FleetTask, post=[_rollback_collected], help={
    "to": "release id to go back to, even one a rollback rejected (default: the release "
          "the live one replaced; never a rejected or failed one)",
    "force": "roll back even across a database change (the database is NOT rolled back)",
    "partial": "roll back only some of DEPLOY_HOSTS on purpose",
    "json": "print only the summary, as one JSON object (for CI)",
})
@clean_errors
def rollback(c: Context, to: str | None = None, force: bool = False,
             partial: bool = False, json: bool = False) -> None:
    """Switch every host back to the previous live release; flush OPcache and the cache.

    The release it leaves is marked rejected (who, when: `fab releases` shows it) and is
    never chosen again by a rollback, nor is a failed one (unfinished, or reverted by the
    health check): after deploy B, rollback, deploy C, a rollback goes back to A. --to=ID
    may name a rejected release (the summary says it was rejected), never a failed or
    half-built one. Refuses when a release newer than the target ran setup:upgrade (the
    old code would meet a newer schema), naming that release; --force overrides and
    warns. On several hosts it switches all or none. Called from your own task,
    rollback(c) acts at once, like deploy(c).
    """
    fleet_call(rollback, c, "rollback", run_rollback, to=to, force=force, partial=partial,
               json=json, quiet=json)


# -- init ---------------------------------------------------------------------------------------

def host_entry(conn: Connection) -> str:
    """How a host given to ``fab`` goes into ``DEPLOY_HOSTS``: its name, with the user and
    port only when they differ from what its SSH config gives for that name."""
    plain = Connection(conn.original_host, config=conn.config)
    entry = conn.original_host
    if conn.user != plain.user:
        entry = f"{conn.user}@{entry}"
    if conn.port != plain.port:
        entry = f"{entry}:{conn.port}"
    return entry


def init_path(path: str | None) -> str:
    """``--path``, else ``DEPLOY_PATH``; checked like ``DEPLOY_PATH``."""
    value = (path or settings_module.read_raw()["DEPLOY_PATH"]).strip()
    if not value:
        raise SettingsError("give --path=/var/www/shop (the deploy path, or the directory of a "
                            "shop to adopt), or set DEPLOY_PATH")
    return settings_module._deploy_path(value)


def init_output(output: str | None) -> Path:
    """Where ``fab init`` writes: ``--output``, else the ``.env`` the next task would read.
    An existing file is never overwritten: exit 1, before any host is contacted."""
    target = Path(output) if output else settings_module.project_dir() / ".env"
    if os.path.lexists(target):
        raise Exit(f"error: {target} exists and fab init never overwrites it: move it away, or "
                   "write elsewhere with --output FILE (e.g. --output .env.init) and compare",
                   code=1)
    return target


def run_init(c: Context | Group, conns: list[Connection], options: dict[str, Any]) -> None:
    """Discover on every host (``conns``, else ``DEPLOY_HOSTS``), print what was found and
    what could not be decided, write the ``.env``."""
    # Imported here: init imports doctor, which imports this module.
    from .init import EMPTY, MISSING, discover, render_env, summary

    path, target = options["path"], init_output(options.get("output"))
    raw = settings_module.read_raw()
    settings = Settings(  # the few settings SSH needs; the others are what init looks for
        deploy_path=path,
        host_keys=settings_module._choice(raw, "DEPLOY_HOST_KEYS", HOST_KEY_MODES),
        timeout_command=settings_module._positive_int(raw, "DEPLOY_TIMEOUT_COMMAND", minimum=1)
        or 900)
    if conns:
        hosts = [Host.from_context(conn, echo=False) for conn in conns]
        given, hosts_from = [host_entry(conn) for conn in conns], "--hosts"
    else:
        given, hosts_from = list(settings_module.split_list(raw["DEPLOY_HOSTS"])), "DEPLOY_HOSTS"
        if not given:
            raise SettingsError("no host: give --hosts=web1,web2 or set DEPLOY_HOSTS")
        hosts = [Host.named(name, c.config, echo=False) for name in given]
    hosts = distinct(hosts, settings)
    entries = {host.name: entry for host, entry in zip(hosts, given, strict=True)}
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    findings = discover(hosts, path, entries, hosts_from=hosts_from, when=when)
    if findings.unreachable:
        raise RuntimeError("init needs every host; nothing was written. "
                           + "; ".join(f"[{n}] {why}" for n, why in findings.unreachable.items()))
    say(summary(findings))
    if all(h.layout is None or h.layout.kind in (MISSING, EMPTY) for h in findings.hosts):
        raise LookupError(f"no shop at {path} on {', '.join(entries.values())}; nothing was "
                          "written. Give --path= the deploy path (with current/) or the "
                          "directory of the shop to adopt")
    text = render_env(findings)
    with open(target, "x", encoding="utf-8") as out:  # never over a file made meanwhile
        out.write(text)
    todo = sum(line.startswith("# TODO ") for line in text.splitlines())
    say(f"wrote {target}" + (f": {todo} TODO(s) to fill in" if todo else "")
        + "; then run `fab doctor`")


@task
@clean_errors
def _init_collected(c: Context) -> None:
    if "init" in _collected:  # else the task acted already (called from code)
        entry = _collected.pop("init")
        run_init(c, entry["hosts"], entry["options"])


@task(klass=FleetTask, post=[_init_collected], help={
    "path": "the shop's directory on the hosts: a deploy path (releases/, current) or a "
            "plain Magento root to adopt (default: DEPLOY_PATH)",
    "output": "write this file instead of the project's .env (never overwritten either)",
})
@clean_errors
def init(c: Context, path: str | None = None, output: str | None = None) -> None:
    """Look at the hosts (read-only) and write a commented .env for them; never overwrites.

    fab --hosts=web1,web2 init --path=/var/www/shop finds on every host: the layout (a
    release layout, or a plain directory to adopt), the links into shared/, the git
    repository, PHP and Composer, the PHP-FPM socket serving the shop (nginx's
    fastcgi_pass, the running pools) and its user, nginx's server blocks, the base URL and
    where each host listens for it, the crontab's cron:run lines, the Magento version
    (blue/green from 2.4.4). Writes each value with where it came from, TODO lines for
    what it could not decide, and prints what differs between hosts. An existing .env is
    never overwritten (exit 1): --output FILE writes elsewhere. Nothing changes on a host.
    """
    options = {"path": init_path(path), "output": output}
    init_output(output)  # refused before any host is contacted
    if per_host_call_by_fab(init):
        entry = _collected.setdefault("init", {"hosts": [], "options": {}})
        if isinstance(c, Connection):
            entry["hosts"].append(c)
        entry["options"] = options
        return
    run_init(c, list(c) if isinstance(c, Group) else [c] if isinstance(c, Connection) else [],
             options)


__all__ = [
    "deploy", "prepare_release", "build_release", "db_status", "maybe_upgrade", "switch_symlink",
    "flush_opcache", "maintenance_on", "maintenance_off", "prune_releases", "unlock", "releases",
    "stage", "config", "magento_command",
    "rollback", "init",
    "StepFailed",
]
