"""One deploy over one or many hosts, in phases with a barrier between them.

1. lock + preflight everywhere (nothing changes yet);
2. prepare + build on every host in parallel, then verify every build;
   any failure: nobody switches, the new folders go, the error names each host;
3. ask the primary's new release whether the database must move;
   pending: maintenance on (live + new release, every host), ``setup:upgrade`` once;
4. switch ``current`` on every host back to back; a host that fails is undone everywhere;
5. flush OPcache everywhere, ``cache:flush`` once, maintenance off (only if we set it);
6. records, pruning, unlock, summary.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from . import (
    batch,
    bluegreen,
    build,
    configphp,
    consumers,
    cron,
    health,
    lock,
    magento,
    opcache,
    preflight,
    release,
    ship,
    shopurl,
    source,
    switch,
    verify,
)
from .hooks import Hook, HookContext, HookFailed, Hooks
from .hosts import LOCAL, Host, StepFailed, distinct, failures, on_all, q, say
from .plan import Step, render
from .redact import redact
from .release import FAILED, LIVE, PREVIOUS, ReleaseRecord
from .report import Summary, Timeline
from .settings import Settings, SettingsError, check_ref


class DeployError(RuntimeError):
    """A deploy stopped; the message says what happened to the live site."""


class OutcomeUnknown(DeployError):
    """Database work may or may not have happened (connection lost, timed out, aborted):
    the deploy lock stays until someone has looked."""


def primary_of(hosts: list[Host], settings: Settings) -> Host:
    """``DEPLOY_PRIMARY`` or the first host: the one that does the database work."""
    for host in hosts:
        if settings.primary in (host.name, host.key):
            return host
    if settings.primary:
        raise DeployError(f"DEPLOY_PRIMARY={settings.primary!r} is not among the hosts "
                          f"{[h.name for h in hosts]}")
    return hosts[0]


def run_steps(host: Host, steps: list[Step], timeline: Timeline,
              timeout: int | None = None) -> None:
    for step in steps:
        with timeline.timed(host.name, step.name):
            host.step(step, timeout=timeout)


def has_hook(hooks: Hooks, point: str) -> bool:
    """Does the shop have its own steps at ``point`` (command or functions)?"""
    return bool(hooks.command(point)[1] or hooks.functions(point))


def run_hook(hooks: Hooks, ctx: HookContext, timeline: Timeline) -> None:
    """The shop's own steps at ``ctx.point``, timed; nothing when there are none."""
    if not has_hook(hooks, ctx.point):
        return
    where = ctx.hosts[0].name if len(ctx.hosts) == 1 else "all"
    with timeline.timed(where, f"hook {ctx.point}"):
        hooks.run(ctx)


PerHostHook = Callable[[str, list[Host]], None]


def hooks_on(host: Host, hooks: Hooks, settings: Settings, rel: str,
             timeline: Timeline) -> PerHostHook:
    """The build's hooks run on ``host`` alone, in its copy of ``rel`` (a step task's
    host, or the builder of ``DEPLOY_BUILD=local``)."""
    return lambda point, hosts: run_hook(
        hooks, HookContext(point, [host], rel, settings, host), timeline)


def prepare_on(host: Host, settings: Settings, rel: str, commit: str, timeline: Timeline,
               hook: PerHostHook, first: tuple[Step, ...] = ()) -> None:
    """The code of ``commit`` in ``releases/<rel>``, shared links, ``after_code`` hooks.

    ``first``: steps to send before the checkout, in the same round trip (the release's
    record): the checkout and the links are one round trip in any case."""
    steps = [*first, *source.checkout(settings, rel, commit), source.link_shared(settings, rel)]
    with timeline.timed(host.name, " + ".join(step.name for step in steps)):
        batch.run_chain(host, steps)
    hook("after_code", [host])


def build_on(host: Host, settings: Settings, rel: str, timeline: Timeline,
             hook: PerHostHook) -> None:
    """The build of a prepared release, with the hooks before static content and after."""
    steps = build.build(settings, rel)
    static = next(i for i, step in enumerate(steps) if step.name.startswith("static content"))
    run_steps(host, steps[:static], timeline, settings.timeout_build)
    hook("before_static_content", [host])
    run_steps(host, steps[static:], timeline, settings.timeout_build)
    hook("after_build", [host])


def describe_failures(errors: dict[str, BaseException]) -> str:
    return "\n".join(str(e) if isinstance(e, StepFailed) else f"[{h}] {type(e).__name__}: {e}"
                     for h, e in errors.items())


def raise_on_failures(results: dict, what: str) -> None:
    errors = failures(results)
    if errors:
        raise DeployError(f"{what} failed on {', '.join(errors)}:\n{describe_failures(errors)}")


@contextmanager
def signal_handler(handler: Callable[[int, object], None]) -> Iterator[bool]:
    """Install ``handler`` for SIGINT, SIGTERM and SIGHUP (a closed terminal) during the
    block (main thread only; elsewhere signals are left alone and the block gets False)."""
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    try:
        previous = {sig: signal.signal(sig, handler) for sig in signals}
    except ValueError:
        yield False
        return
    try:
        yield True
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def interrupts_as_exceptions(hosts: list[Host]) -> Iterator[None]:
    """Ctrl-C, SIGTERM (what CI and systemd send) and SIGHUP stop the deploy, and now.

    The handler only raises; the thread waiting for the hosts (:func:`hosts.in_threads`)
    closes their connections, so remote commands end, and the cleanup (on fresh
    connections) kills what still runs in the release.
    """
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    with signal_handler(handler):
        yield


class Aborted(KeyboardInterrupt):
    """A second signal during the deferred section: stop waiting, state unknown."""


@contextmanager
def interrupts_deferred(what: str) -> Iterator[list[int]]:
    """Hold Ctrl-C/SIGTERM/SIGHUP until the block is done: a database upgrade or a switch
    that stops half-way is worse than one that finishes a second later. A second signal
    aborts (:class:`Aborted`); the caller then reports the state it left.

    The handler only records and writes with ``os.write``: ``print`` takes a lock the
    interrupted code may hold. Yields the signals received: once the block has finished,
    the work is done, and the caller says so instead of pretending it was stopped.
    """
    received: list[int] = []

    def handler(signum: int, frame: object) -> None:
        if received:
            raise Aborted(f"second signal {signum} during {what}")
        received.append(signum)
        os.write(2, f"signal {signum} received: {what} first, then stopping "
                    "(send it again to abort now)\n".encode())

    with signal_handler(handler):
        yield received


@contextmanager
def locked(hosts: list[Host], settings: Settings, action: str, rel: str = "",
           then: Callable[[Host], str] | None = None) -> Iterator[dict[str, str]]:
    """Hold ``deploy.lock`` on every host, or on none: a refusal (or Ctrl-C while taking
    them) releases what we took. When the outcome of database work is unknown
    (:class:`OutcomeUnknown`) the lock stays, saying why, so nobody deploys on top of a
    ``setup:upgrade`` that may still be running; ``fab unlock`` clears it.

    ``then(host)``: a script run right after the lock is taken, in the same round trip
    (the preflight); the block gets each host's output by name."""
    info = lock.lock_info(action, rel)
    script = then or (lambda h: "")
    try:
        results = on_all(hosts, lambda h: lock.acquire(h, settings, info, script(h)))
    except BaseException:
        on_all(hosts, lambda h: lock.release(h, settings, info))  # only removes ours
        raise
    errors = failures(results)
    if errors:
        taken = [h for h in hosts if h.name not in errors]
        on_all(taken, lambda h: lock.release(h, settings, info))
        raise DeployError("\n".join(str(e) for e in errors.values()))
    kept = ""
    try:
        yield results  # type: ignore[misc]
    except OutcomeUnknown as exc:
        kept = str(exc).splitlines()[0]
        raise
    finally:
        if kept:
            on_all(hosts, lambda h: lock.keep(h, settings, info, kept))
        else:
            on_all(hosts, lambda h: lock.release(h, settings, info))


def open_all(hosts: list[Host]) -> None:
    """Connect to every host before fanning out (a lazily opened Connection races)."""
    raise_on_failures(on_all(hosts, Host.open), "connecting")


def kill_in(path: str) -> str:
    """Kill what still works on the release at ``path`` (a build we left): processes whose
    working directory is in it, and the process group of any command that names it.

    Why both: a build command outlives its SSH connection (no terminal, no SIGHUP), and
    one still fetching into the mirror has no working directory in the release yet; left
    alone, it created the folder after this cleanup had removed it. Every command runs
    under ``timeout`` (:meth:`hosts.Host.run`), which leads its own process group. Never
    this cleanup's own group, nor a process of another mount namespace (another host of
    a test rig, another container). One ``find`` and one ``grep`` over ``/proc``: forking
    per process took tens of seconds on a busy host."""
    path = q(path)
    return ("find /proc/[0-9]* -maxdepth 1 -name cwd -printf '%h %l\\n' 2>/dev/null |"
            " while read -r proc cwd; do case \"$cwd\" in"
            f" {path}|{path}/*) kill \"${{proc#/proc/}}\" 2>/dev/null;; esac; done;"
            " ns=$(readlink /proc/$$/ns/mnt); for me in $(ps -o pgid= -p $$); do :; done;"
            f" grep -lF -e {path} /proc/[0-9]*/cmdline 2>/dev/null | while read -r file; do"
            " pid=${file#/proc/}; pid=${pid%/cmdline};"
            " [ \"$(readlink /proc/$pid/ns/mnt 2>/dev/null)\" = \"$ns\" ] || continue;"
            " for group in $(ps -o pgid= -p \"$pid\"); do"
            " [ \"$group\" = \"$me\" ] || kill -- \"-$group\" 2>/dev/null; done; done")


def abandon(hosts: list[Host], settings: Settings, record: ReleaseRecord, why: str) -> str:
    """Stop what still runs in the new release, remove its folder, record it as failed.

    Returns what the operator must know: that nothing was switched, and which hosts could
    not be cleaned up (unreachable) and what to run for them.
    """
    path = settings.release_dir(record.id)
    record.status, record.note, record.finished = FAILED, redact(why)[:2000], release.utc_now()

    def one(host: Host) -> None:
        # A killed process may still write for a moment (rm -rf then finds a directory
        # not empty): remove again until the folder is gone, for at most about 3 s.
        remove = release.remove_release_cmd(settings, record.id)
        host.run(f"{kill_in(path)}; for try in 1 2 3 4 5 6 7 8 9 10; do {remove};"
                 f" [ -e {q(path)} ] || break; sleep 0.3; done",
                 step="remove failed release", warn=True, echo=False)
        release.write_record(host, settings, record)

    unreachable = sorted(failures(on_all(hosts, one)))
    if not unreachable:
        return f"nothing was switched; release {record.id} removed on every host"
    return (f"nothing was switched; release {record.id} removed, except on "
            f"{', '.join(unreachable)}, which could not be reached: its deploy.lock and "
            f"releases/{record.id} remain there. When it is back: fab unlock "
            f"--hosts={','.join(unreachable)} (the next deploy's pruning removes the folder)")


@dataclass
class Deploy:
    """The state of one deploy while it runs (see the module docstring for the phases)."""

    hosts: list[Host]
    settings: Settings
    ref: str
    timeline: Timeline
    release: str
    summary: Summary
    hooks: Hooks
    record: ReleaseRecord | None = None
    commit: str = ""
    live: dict[str, str | None] = field(default_factory=dict)
    strategies: dict[str, str] = field(default_factory=dict)
    operator_maintenance: set[str] = field(default_factory=set)
    flagged: list[Host] = field(default_factory=list)
    window_start: float = 0.0
    maintenance: bool = False  # blue-green with the maintenance window all the same
    health_plan: health.Plan | None = None  # what the health check asks, found in preflight
    token: str = field(default_factory=batch.new_token)  # marks the batched answers

    @classmethod
    def of_built(cls, hosts: list[Host], settings: Settings, rel: str) -> Deploy:
        """The deploy that built ``rel`` (step by step), resumed from its record, so the
        step tasks run the same phases as ``deploy`` and record what they did."""
        record = release.read_records(hosts[0], settings).get(rel)
        if record is None:
            raise LookupError(f"[{hosts[0].name}] release {rel} has no record")
        return cls(hosts, settings, record.ref, Timeline(quiet=True), rel,
                   Summary(release=rel, ref=record.ref), Hooks(settings), record=record,
                   commit=record.commit)

    @property
    def primary(self) -> Host:
        return primary_of(self.hosts, self.settings)

    def all(self, fn: Callable[[Host], object], what: str) -> dict:
        results = on_all(self.hosts, fn)
        raise_on_failures(results, what)
        return results

    def hook(self, point: str, hosts: list[Host] | None = None,
             error: BaseException | None = None) -> None:
        """Run the shop's own steps at ``point`` (see :mod:`tasks.hooks`), timed."""
        run_hook(self.hooks, HookContext(point, hosts or self.hosts, self.release,
                                         self.settings, self.primary, error), self.timeline)

    def failed(self, error: BaseException) -> None:
        """Tell the ``on_failure`` hooks; their own failure is printed, never raised."""
        try:
            self.hook("on_failure", error=error)
        except Exception as exc:  # the deploy's own error is the one that matters
            say(f"WARNING: {exc}")

    def releases_of(self, host: Host) -> list[str]:
        """The live and the new release of a host: where maintenance must be set."""
        return [r for r in (self.live[host.name], self.release) if r]

    def write_records(self) -> None:
        assert self.record is not None
        on_all(self.hosts, lambda h: release.write_record(h, self.settings, self.record))

    # -- phase 1 ---------------------------------------------------------------------------
    def preflight(self, asked: dict[str, str] | None = None) -> None:
        """Check every host; learn its live release, OPcache strategy, maintenance state.

        ``asked``: each host's answers to :func:`preflight.command` (sent with the lock,
        see :func:`locked`); without them the questions are sent now, one round trip."""
        s = self.settings

        def one(host: Host) -> tuple[str | None, str, str | None]:
            output = asked[host.name] if asked else preflight.ask(host, s, self.token)
            try:
                facts = preflight.judge(host, s, self.token, output)
            except preflight.PreflightError as exc:
                raise DeployError(str(exc)) from exc
            live = facts.live
            if s.upgrade_mode == "blue-green":
                bluegreen.env_php(s)
                bluegreen.check(host, s)  # an env.php it cannot edit: refused before the build
                if live:  # the code that must keep serving while the database moves
                    bluegreen.check_version(host, s, live)
            return live, opcache.choose(host, s, found=facts.sockets), facts.owner

        if s.build == "local" and not shutil.which("rsync"):
            raise DeployError("DEPLOY_BUILD=local ships with rsync: install it where fab runs")
        results = self.all(one, "preflight")
        for host in self.hosts:
            live, strategy, owner = results[host.name]
            self.live[host.name], self.strategies[host.name] = live, strategy
            if owner == "":
                self.operator_maintenance.add(host.name)
            elif owner:  # left by a deploy that failed: this one lifts it when it is live
                self.flagged.append(host)
                self.summary.notes.append(f"{host.name}: maintenance left on by {owner}; "
                                          "lifted once this release is live")
        if len(set(self.live.values())) > 1:
            self.summary.warnings.append(f"hosts were on different releases before: {self.live}")

    def plan_health(self, release: str, *, probe: bool = True) -> None:
        """Find what the health check asks each host (Magento asked in ``release``) and,
        with ``probe``, ask every live shop now: a check that fails on the live shop would
        revert every release, so that stops the deploy before the build
        (:func:`health.prepare`, exit 2)."""
        s = self.settings
        live = {name for name, rel in self.live.items() if rel and probe}
        held = self.operator_maintenance | {h.name for h in self.flagged}
        with self.timeline.timed("all", "health probe"):
            plan = health.prepare(self.hosts, self.primary, health.HealthParams.from_settings(s),
                                  s.release_dir(release), probe_live=live, maintenance=held)
        for name in [n for n in plan.skipped if n not in self.operator_maintenance]:
            del plan.skipped[name]  # our own leftover flag: lifted by this deploy, so watched
        self.summary.notes += plan.notes
        self.summary.warnings += [f"[{n}] storefront NOT checked: {why}"
                                  for n, why in plan.skipped.items()]
        self.summary.warnings += [f"the LIVE shop answers errors before this deploy: {why}; "
                                  "a failing check after the switch cannot revert to it"
                                  for why in plan.broken.values()]
        self.health_plan = plan

    # -- phase 2 ---------------------------------------------------------------------------
    def build_everywhere(self) -> None:
        """Prepare and build the release on every host at once; all must succeed."""
        s, rel = self.settings, self.release

        def one(host: Host) -> float:
            start = time.monotonic()
            record = release.record_step(s, self.record)  # type: ignore[arg-type]
            prepare_on(host, s, rel, self.commit, self.timeline, self.hook, first=(record,))
            build_on(host, s, rel, self.timeline, self.hook)
            return time.monotonic() - start

        if s.build == "local":
            self.write_records()
            self.summary.build_seconds = self.build_once_and_ship()
        else:
            self.summary.build_seconds = self.all(one, "build")

    def verify_everywhere(self) -> magento.DbVerdict | None:
        """The end of phase 2 in ONE round trip per host: the build's commit and static
        version (:func:`build.verify`), then the release verified (:mod:`tasks.verify`);
        the primary's round trip also asks Magento about the database (phase 3's question,
        read-only) unless ``before_database`` hooks must run first. Returns the primary's
        verdict, or None when it must be asked after those hooks."""
        s, rel = self.settings, self.release
        built = build.verify(s, rel)
        ask_db = not has_hook(self.hooks, "before_database")
        extra = {h.name: {"built": built.command} for h in self.hosts}
        if ask_db:
            extra[self.primary.name].update(magento.status_sections(s, rel))
        with self.timeline.timed("all", "verify"):
            checks, answers = verify.verify_all(self.hosts, s, rel, path=s.verify_path,
                                                fcgi=s.opcache in ("auto", "fcgi"), extra=extra)
        self.check_built(answers, built)
        verify.raise_for(checks, rel)
        return magento.verdict_of(self.primary.name, rel, answers[self.primary.name]) \
            if ask_db else None

    def check_built(self, answers: dict[str, verify.Answers], step: Step) -> None:
        """Every host built the commit resolved and the release's static version (a host
        whose verification did not run at all is left to the verification's error)."""
        errors: dict[str, BaseException] = {}
        expected = build.static_version(self.release)
        for name, found in answers.items():
            exited, out = found.get("built", (-1, "no answer: the check was cut short"))
            if exited:
                errors[name] = StepFailed(name, step.name, step.command, exited, out)
                continue
            commit, version = (out.split() + ["", ""])[:2]
            if commit != self.commit or version != expected:
                raise DeployError(f"[{name}] built commit {commit} / static version "
                                  f"{version}, expected {self.commit} / {expected}")
        raise_on_failures(errors, step.name)

    def build_once_and_ship(self) -> dict[str, float]:
        """``DEPLOY_BUILD=local``: build here (see :mod:`tasks.ship`), then send the release
        to every host at once, check it arrived whole, make its shared links."""
        s, rel, timeline = self.settings, self.release, self.timeline
        builder = Host.named(LOCAL, self.hosts[0].runner.config, echo=self.hosts[0].echo)
        builder.verbose, builder.timeout = self.hosts[0].verbose, s.timeout_command
        local = ship.builder_settings(s)

        hook = hooks_on(builder, self.hooks, local, rel, timeline)
        start = time.monotonic()
        run_steps(builder, [ship.clean(local), *source.checkout(local, rel, self.commit),
                            ship.config_check(local, rel)], timeline)
        hook("after_code", [builder])
        build_on(builder, local, rel, timeline, hook)
        with timeline.timed(builder.name, "digest"):
            built = builder.output(ship.digest(local, rel).command, step="digest")
        self.summary.built_once_seconds = time.monotonic() - start

        def one(host: Host) -> float:
            begin = time.monotonic()
            step = ship.rsync(host, s, local, rel, self.live[host.name])
            with timeline.timed(host.name, "ship"):
                stats = builder.run(step.command, step=f"ship to {host.name}",
                                    timeout=s.timeout_build, echo=False).stdout
            self.summary.sent_bytes[host.name] = ship.sent_bytes(stats)
            with timeline.timed(host.name, "digest"):
                arrived = host.output(ship.digest(s, rel).command, step="digest")
            if arrived != built:
                raise DeployError(f"[{host.name}] release {rel} did not arrive whole: its "
                                  f"digest is {arrived[:16]}, the build's {built[:16]}")
            run_steps(host, [source.link_shared(s, rel)], timeline)
            return time.monotonic() - begin

        return self.all(one, "ship")

    # -- phase 3 ---------------------------------------------------------------------------
    def upgrade_database(self, config_pending: bool, maintenance: bool = True,
                         before: magento.DbVerdict | None = None) -> None:
        """Maintenance on everywhere (live + new release), ``setup:upgrade`` on the primary.

        Without ``maintenance`` (blue/green) the live release keeps serving meanwhile.
        ``before``: what Magento said before; a failed upgrade after which it says exactly
        the same changed nothing, so the live release may go on serving (see
        :meth:`untouched`).
        """
        s, record = self.settings, self.record
        assert record is not None
        if maintenance:
            self.window_start = time.monotonic()
            # The operator's maintenance stays the operator's in the new release too.
            results = on_all(self.hosts, lambda h: magento.maintenance_on(
                h, s, self.releases_of(h),
                by="" if h.name in self.operator_maintenance else f"deploy {self.release}"))
            self.flagged = [h for h in self.hosts if h.name not in self.operator_maintenance]
            if failures(results):
                self.lift_maintenance(flush_failed=set())
                raise_on_failures(results, "maintenance on")
        record.setup_upgrade = True  # set before it runs: a failed upgrade still counts
        record.config_import = config_pending
        record.blue_green = not maintenance
        self.write_records()
        try:
            with self.timeline.timed(self.primary.name, "setup:upgrade"):
                magento.upgrade(self.primary, s, self.release)
        except StepFailed as exc:
            record.status, record.note = FAILED, redact(str(exc))[:2000]
            self.write_records()
            if exc.exit_code is None or exc.timed_out:
                raise OutcomeUnknown(
                    f"the outcome of setup:upgrade on {self.primary.name} is unknown (the "
                    f"connection was lost or it timed out): it may still be running. The deploy "
                    f"lock stays, maintenance stays ON, `current` still points at the old "
                    f"release.\n{exc}\n{state_report(self.hosts, s)}") from exc
            if before is not None and self.untouched(before):
                raise DeployError(f"{exc}\n{self.give_up_untouched(str(exc))}") from exc
            if not maintenance:
                raise DeployError(
                    f"{exc}\nsetup:upgrade failed in blue/green mode: the database may be "
                    "HALF-UPGRADED while the old release keeps serving (no maintenance). Check "
                    "the shop now; fix the cause, then deploy again.") from exc
            raise DeployError(
                f"{exc}\nsetup:upgrade failed: the database may be HALF-UPGRADED, so maintenance "
                f"stays ON on every host and `current` still points at the old release. Fix the "
                f"cause, then deploy again (or `fab maintenance-off` once the database is sane)."
            ) from exc
        self.summary.upgrade_seconds = self.timeline.entries[-1].seconds
        try:
            with self.timeline.timed(self.primary.name, "config.php"):
                changed = configphp.spread(self.hosts, self.primary, s, self.release)
        except (configphp.ConfigPhpError, StepFailed) as exc:
            raise DeployError(
                f"{exc}\nthe database WAS upgraded, but the hosts' new releases do not have the "
                f"same app/etc/config.php, so nobody switched (maintenance stays on where it "
                f"was set). Copy {self.settings.release_dir(self.release)}/app/etc/config.php "
                f"from {self.primary.name} to the others, then `fab switch-symlink`, "
                "`fab flush-opcache`, `fab maintenance-off`") from exc
        if changed:
            self.summary.warnings.append(changed)

    def db_status(self) -> magento.DbVerdict:
        with self.timeline.timed(self.primary.name, "db status"):
            return magento.db_status(self.primary, self.settings, self.release)

    def check_config_php(self) -> None:
        """Before the database moves: modules the code registers that ``config.php`` does
        not list stop the deploy here (see :mod:`tasks.configphp`), nothing changed."""
        with self.timeline.timed(self.primary.name, "config.php"):
            missing = configphp.unlisted(self.primary, self.settings, self.release)
        if missing:
            raise configphp.ConfigPhpError(configphp.refusal(missing, self.primary.name))

    def untouched(self, before: magento.DbVerdict) -> bool:
        """After a failed ``setup:upgrade``: do ``setup:db:status`` and
        ``app:config:status`` say exactly what they said before? Then it failed before
        changing the database (a broken patch class, a missing extension). Any doubt (the
        question fails too) counts as changed."""
        try:
            with self.timeline.timed(self.primary.name, "db status"):
                after = magento.db_status(self.primary, self.settings, self.release)
        except (magento.MagentoError, StepFailed):
            return False
        return after == before

    def give_up_untouched(self, why: str) -> str:
        """The database did not move: lift this deploy's maintenance, remove the new
        release, keep the live one serving. Says so, for the error."""
        assert self.record is not None
        self.record.setup_upgrade = False  # nothing to refuse a rollback over
        stuck = self.lift_maintenance(flush_failed=set())
        left = abandon(self.hosts, self.settings, self.record, why)
        lifted = ("maintenance lifted" if not stuck else
                  f"maintenance could NOT be lifted on {', '.join(stuck)}: run `fab "
                  f"maintenance-off --hosts={','.join(stuck)}`")
        return (f"setup:upgrade failed BEFORE changing the database (setup:db:status and "
                f"app:config:status say what they said before): {lifted}, the live release "
                f"serves as before; {left}. Fix the cause, then deploy again.")

    def lift_maintenance(self, flush_failed: set[str]) -> dict[str, BaseException]:
        """Maintenance off where a deploy set it; where OPcache could not be flushed the
        old release keeps its flag, so workers still running old code show maintenance.
        Returns the hosts where it could not be lifted."""
        return failures(on_all(self.flagged, lambda h: magento.maintenance_off(
            h, self.settings, [self.release] if h.name in flush_failed else self.releases_of(h))))

    def enable_blue_green(self) -> None:
        """The flag in every host's shared env.php, then OPcache flushed where it changed:
        with ``validate_timestamps=0`` PHP keeps the env.php it compiled."""
        s = self.settings
        changed = self.all(lambda h: bluegreen.enable(h, s), "blue-green flag")
        hosts = [h for h in self.hosts if changed[h.name]]
        if not hosts:
            return
        blind = [h.name for h in hosts if self.strategies[h.name] == "none"]
        if blind:
            raise DeployError(
                f"deployment/blue_green/enabled was just set in env.php on {', '.join(blind)}, "
                "but DEPLOY_OPCACHE=none cannot make PHP-FPM read it again: the old release "
                "would refuse the new schema. Flush OPcache there (fab flush-opcache with a "
                "strategy) and deploy again, or use DEPLOY_UPGRADE_MODE=maintenance")
        self.all(lambda h: opcache.flush(h, s, self.strategies[h.name]), "OPcache flush")
        self.summary.notes.append("deployment/blue_green/enabled set in env.php on "
                                  f"{', '.join(h.name for h in hosts)}; OPcache flushed")

    # -- phase 5 ---------------------------------------------------------------------------
    def restart_consumers(self, problems: list[str], hosts: list[Host] | None = None,
                          primary: Host | None = None,
                          asked: consumers.Asked | None = None) -> None:
        """Queue consumers started from another release stop running its code (see
        :mod:`tasks.consumers`): Magento's poison pill (from ``primary``),
        ``DEPLOY_CONSUMERS_COMMAND``, then a look at what each of ``hosts`` (default:
        all) still runs. A failure is a problem of the deploy."""
        s = self.settings
        hosts, primary = hosts or self.hosts, primary or self.primary
        try:
            with self.timeline.timed(primary.name, "consumers"):
                reports = consumers.restart(primary, hosts, s,
                                            command=s.consumers_command,
                                            stop_old=s.consumers_stop_old, asked=asked)
        except Exception as exc:  # the release is live: report, never hide it
            problems.append(f"queue consumers could not be restarted: {exc}")
            return
        for report in reports.values():
            self.summary.notes += report.lines()
            if not report.ok:
                self.summary.warnings.append(
                    f"{report.host}: a queue consumer keeps running old code (it ignores the "
                    "poison pill): set DEPLOY_CONSUMERS_STOP_OLD=1 or DEPLOY_CONSUMERS_COMMAND")

    def check_health(self, problems: list[str]) -> None:
        """Request ``DEPLOY_HEALTH_PATHS`` on every host for ``DEPLOY_HEALTH_WINDOW``.

        A failure reverts every host to its previous release when that is safe (the
        database did not move, or moved in blue/green mode) and raises; otherwise the
        release stays and the failure is a problem of the deploy, with why.
        """
        s, record = self.settings, self.record
        assert record is not None
        if not s.health_paths:
            return
        if self.health_plan is None:  # nothing was live before: found in the new release
            try:
                self.plan_health(self.release, probe=False)
            except health.HealthRefused as exc:
                problems.append(f"the health check could not run: {exc}")
                return
        assert self.health_plan is not None
        with self.timeline.timed("all", "health check"):
            report = health.watch(self.hosts, health.HealthParams.from_settings(s),
                                  self.health_plan)
        record.health = report.as_record()
        self.summary.notes += report.lines()
        if report.ok:
            return
        failed = f"health check failed after the switch: {report.problem()}"
        if record.setup_upgrade and not record.blue_green:
            problems.append(f"{failed}. NOT reverted: this release ran setup:upgrade under "
                            "maintenance, the previous code would meet the new schema. Fix "
                            "forward (or restore the database, then `fab rollback --force`).")
            return
        if not all(self.live.values()):
            problems.append(f"{failed}. NOT reverted: a host had no release before.")
            return
        if self.health_plan.broken:
            problems.append(f"{failed}. NOT reverted: the previous release answered errors "
                            f"too ({'; '.join(self.health_plan.broken.values())}).")
            return
        raise DeployError(f"{failed}\n{self.revert(failed)}")

    def revert(self, why: str) -> str:
        """Put every host back on the release it served before; every host that is back
        gets its OPcache flushed, ``cache:flush`` runs once, and queue consumers are told
        again (a consumer started meanwhile runs the rejected code). Records say per host
        what it serves; a host that could not switch back is named with what to run."""
        s, record = self.settings, self.record
        assert record is not None
        stuck = failures(on_all(self.hosts, lambda h: switch.point_current(
            h, s, self.live[h.name])))  # type: ignore[arg-type]
        back = [h for h in self.hosts if h.name not in stuck]
        problems: list[str] = []
        if back:
            primary = self.primary if self.primary in back else back[0]
            problems, _, _ = flush_caches(back, s, self.strategies, self.summary,
                                          self.live[primary.name] or "", self.timeline,
                                          primary=primary)
            self.restart_consumers(problems, back, primary)
        old = self.live
        hint = ", ".join(f"{n}: fab switch-symlink --release={old[n]} --hosts={n}, then fab "
                         f"flush-opcache --hosts={n}" for n in stuck)
        record.finished = release.utc_now()
        record.note = redact(f"reverted: {why}" + (f"\nstill serving it (could not switch "
                                                   f"back): {hint}" if stuck else ""))[:2000]

        def one(host: Host) -> None:
            here = replace(record, status=LIVE if host.name in stuck else FAILED,
                           replaced=old[host.name] or "")
            release.write_record(host, s, here)
            if host.name in stuck:
                mark(host, s, old[host.name], PREVIOUS)  # type: ignore[arg-type]

        on_all(self.hosts, one)  # an unreachable host keeps its record as it was
        lines = [f"REVERTED: {', '.join(h.name for h in back) or 'no host'} back on the "
                 "release served before" + (" (every host)" if not stuck else "")]
        if stuck:
            lines.append(f"could NOT switch back {', '.join(stuck)}: still serving release "
                         f"{self.release}. When reachable: {hint}")
        return "\n".join(lines + problems + [state_report(self.hosts, s)])

    def finish(self) -> None:
        """After the switch: OPcache, cache, maintenance off, records, pruning.

        Every step runs and is checked even when an earlier one failed (the release is
        live either way); any failure ends the deploy with an error and a state report.
        """
        s, record, summary = self.settings, self.record, self.summary
        assert record is not None
        # Without a health check or a maintenance window to lift between them, the
        # consumers' questions travel with cache:flush (the order stays: cache:flush, the
        # poison pill, the look at each host's consumers).
        ask = None if s.health_paths or self.flagged else (
            lambda h: consumers.sections(s, h is self.primary))
        problems, flush_failed, asked = flush_caches(self.hosts, s, self.strategies, summary,
                                                     self.release, self.timeline, ask=ask)
        for name, exc in self.lift_maintenance(flush_failed).items():
            problems.append(f"maintenance could not be lifted on {name} ({exc}): the shop "
                            f"answers 503 there; run `fab maintenance-off --hosts={name}`")
        if self.window_start and self.flagged:
            summary.maintenance_seconds = time.monotonic() - self.window_start
            record.maintenance_seconds = round(summary.maintenance_seconds, 3)
        self.check_health(problems)  # first: a broken release is reverted before more runs
        self.restart_consumers(problems, asked=asked)  # after the window: never lengthens it
        record.status, record.finished = LIVE, release.utc_now()
        record.note = redact("\n".join(problems))[:2000]  # masked whole, then cut

        def one(host: Host) -> str:
            """Two round trips: our record written + what is there read, then the record
            of the release we replaced + pruning."""
            old = self.live[host.name]
            ours = release.record_step(s, replace(record, steps=self.timeline.by_step(
                host.name), replaced=(old or "") if old != self.release else ""))
            answers = batch.ask(host, {"record": ours.command,
                                       "records": release.records_command(s),
                                       "releases": release.scan_command(s)}, step="finish")
            for name, step in (("record", ours.command), ("records", "records"),
                               ("releases", "list releases")):
                if answers.get(name, (-1, ""))[0]:
                    raise StepFailed(host.name, name, step, answers.get(name, (-1, ""))[0],
                                     answers.get(name, (-1, "no answer"))[1])
            records = release.parse_records(answers["records"][1])
            first: tuple[Step, ...] = ()
            if old and old != self.release:
                rec = records.get(old) or release.adopted_record(host, s, old)
                records[old] = replace(rec, status=PREVIOUS)
                first = (release.record_step(s, records[old]),)
            return prune(host, s, protect={self.release, old or ""}, first=first,
                         known=(records, release.parse_scan(answers["releases"][1])))

        for name, pruned in on_all(self.hosts, one).items():
            if isinstance(pruned, BaseException):
                summary.warnings.append(f"{name}: pruning failed: {pruned}")
            elif pruned:
                summary.notes.append(pruned)
        for point in ("after_switch", "after_deploy"):
            try:
                self.hook(point)
            except HookFailed as exc:
                problems.append(str(exc))
        if problems:
            raise DeployError(summary.text() + "\nTHE RELEASE IS LIVE, BUT:\n- "
                              + "\n- ".join(problems) + "\n" + state_report(self.hosts, s))


def state_report(hosts: list[Host], settings: Settings) -> str:
    """What each host serves now and where maintenance is on (and who set it)."""
    def one(host: Host) -> str:
        live = release.live_release(host, settings)
        owner = magento.maintenance_owner(host, settings, live)
        state = "off" if owner is None else f"ON (set by {owner or 'the operator'})"
        return f"current -> releases/{live}, maintenance {state}"

    states = on_all(hosts, one)
    return "state now:\n" + "\n".join(
        f"  {name}: {'could not be read: ' if isinstance(state, BaseException) else ''}{state}"
        for name, state in states.items())


def flush_caches(hosts: list[Host], settings: Settings, strategies: dict[str, str],
                 summary: Summary, rel: str, timeline: Timeline, *,
                 primary: Host | None = None,
                 ask: Callable[[Host], dict[str, str]] | None = None
                 ) -> tuple[list[str], set[str], consumers.Asked]:
    """After a switch: OPcache on every host, then ``cache:flush`` once on ``primary``
    (default: the deploy's primary; one of ``hosts``).

    Both always run. ``ask(host)``: more sections (:mod:`tasks.batch`) to send in the same
    round trip as ``cache:flush`` (after it), on every host. Returns the problems (each
    saying what to run next), the hosts whose OPcache flush failed, and the answers.
    """
    problems = []
    flush_failed = flush_everywhere(hosts, settings, strategies, summary)
    if flush_failed:
        problems.append(f"OPcache was not flushed on {', '.join(sorted(flush_failed))}: PHP "
                        "may still serve the old code there (a deploy keeps the old release's "
                        "maintenance flag there). Fix the flush, run `fab flush-opcache`, then "
                        "`fab maintenance-off` if the state below shows it on")
    primary = primary or primary_of(hosts, settings)
    flush = build.magento(settings, rel, "cache:flush")
    asked: consumers.Asked = {}
    try:
        with timeline.timed(primary.name, "cache:flush"):
            if ask is None:
                magento.cache_flush(primary, settings, rel)
            else:
                asked = ask_after_switch(hosts, primary, flush, ask)
                exited, out = asked.get(primary.name, {}).get("cache_flush", (-1, ""))
                if exited:
                    raise StepFailed(primary.name, "cache:flush", flush, exited, out)
    except StepFailed as exc:
        problems.append(f"{exc}\ncache:flush failed: run `bin/magento cache:flush` in "
                        f"{settings.current} on {primary.name}")
    return problems, flush_failed, asked


def ask_after_switch(hosts: list[Host], primary: Host, flush: str,
                     ask: Callable[[Host], dict[str, str]]) -> consumers.Asked:
    """``cache:flush`` on ``primary`` and ``ask(host)`` on every host: one round trip per
    host. A host whose round trip failed has no answers (its questions are asked again
    by whoever needs them); the primary's failure is ``cache:flush``'s."""
    def one(host: Host) -> dict[str, tuple[int, str]]:
        first = {"cache_flush": flush} if host is primary else {}
        return batch.ask(host, {**first, **ask(host)}, step="after switch")

    answers = on_all(hosts, one)
    if isinstance(answers[primary.name], StepFailed):
        raise answers[primary.name]  # type: ignore[misc]
    return {name: a for name, a in answers.items() if not isinstance(a, BaseException)}


def flush_everywhere(hosts: list[Host], settings: Settings, strategies: dict[str, str],
                     summary: Summary) -> set[str]:
    """OPcache flush on every host after a switch; reports go into the summary.

    Returns the hosts whose flush failed: there PHP may still serve the old release.
    """
    results = on_all(hosts, lambda h: opcache.flush(h, settings, strategies[h.name]))
    for name, reports in results.items():
        if isinstance(reports, BaseException):
            summary.warnings.append(f"OPcache flush failed on {name}: {reports}")
            continue
        for rep in reports:
            if rep.warning:
                summary.warnings.append(f"{name}: {rep.warning}")
            else:
                summary.notes.append(f"[{rep.host}] {rep.line()}")
    return set(failures(results))


def switch_all(hosts: list[Host], settings: Settings, rel: str,
               previous: dict[str, str | None], timeline: Timeline) -> dict[str, float]:
    """Point ``current`` at ``rel`` on every host at once; if one fails, put every host
    back on its previous release, so hosts never end on different releases.

    Returns, per host, when its switch finished (monotonic seconds).
    """
    step = switch.switch(settings, rel)  # prepared once; sent by every host at one moment
    barrier = threading.Barrier(len(hosts))

    def one(host: Host) -> float:
        with timeline.timed(host.name, "switch"):
            host.run_together(step.command, barrier, step=step.name)
        return time.monotonic()

    def back(host: Host) -> None:
        """Point a host back, unless its ``current`` never moved (its switch failed)."""
        old = previous[host.name]
        if old and release.live_release(host, settings) != old:
            switch.point_current(host, settings, old)

    results = on_all(hosts, one)
    errors = failures(results)
    if not errors:
        return results  # type: ignore[return-value]
    still = failures(on_all(hosts, back))
    state = ("every host is back on its previous release" if not still else
             f"COULD NOT switch back {', '.join(still)}: hosts are on different releases, "
             "check `fab releases`")
    raise DeployError(f"switch failed on {', '.join(errors)}:\n{describe_failures(errors)}\n"
                      f"{state}")


def left_out(hosts: list[Host], settings: Settings, partial: bool, summary: Summary) -> None:
    """Refuse to act on part of ``DEPLOY_HOSTS`` unless ``partial`` (then warn).

    The hosts left out keep the old release; if the database moves they serve old code
    against the new schema, without maintenance.
    """
    missing = [e for e in settings.hosts if not any(h.matches(e) for h in hosts)]
    if missing and not partial:
        raise SettingsError(
            f"DEPLOY_HOSTS also lists {', '.join(missing)}: this would leave them on their old "
            "release (and serving old code against a new schema if the database moves). Give "
            "every host, or --partial to do this on purpose")
    if missing:
        summary.warnings.append(f"partial: {', '.join(missing)} left on their old release")


def database_guard(hosts: list[Host], settings: Settings) -> list[Host]:
    """The shop's lock host when it is not among ``hosts`` (a partial deploy).

    Every deploy of one shop takes the lock on ``DEPLOY_PRIMARY`` (else the first of
    ``DEPLOY_HOSTS``) too, so two deploys to disjoint sets of hosts cannot both run
    ``setup:upgrade`` on the one database.
    """
    name = settings.primary or (settings.hosts[0] if settings.hosts else "")
    if not name or any(h.matches(name) or h.name == name for h in hosts):
        return []
    return [Host.named(name, hosts[0].runner.config, echo=False).configure(settings)]


def deploy(hosts: list[Host], settings: Settings, *, ref: str | None = None,
           quiet: bool = False, partial: bool = False,
           hooks: dict[str, list[Hook]] | None = None, maintenance: bool = False) -> Summary:
    """Deploy ``ref`` (default ``DEPLOY_BRANCH``) to all ``hosts`` as one release.

    ``partial``: allow ``hosts`` to be only part of ``DEPLOY_HOSTS`` (see :func:`left_out`).
    ``hooks``: functions to run at named points, ``{"after_switch": [purge]}`` (see
    :mod:`tasks.hooks`), besides ``DEPLOY_HOOK_*`` and ``@hook`` ones.
    ``maintenance``: with ``upgrade_mode="blue-green"``, keep the maintenance window anyway.
    """
    ref = check_ref(ref) if ref else settings.branch
    hosts = distinct(hosts, settings)
    rel = release.new_release_id()
    d = Deploy(hosts, settings, ref, Timeline(quiet=quiet), rel, Summary(release=rel, ref=ref),
               Hooks(settings, hooks or {}), maintenance=maintenance)
    primary_of(hosts, settings)
    left_out(hosts, settings, partial, d.summary)
    try:
        run_deploy(d)
    except BaseException as exc:
        d.failed(exc)
        raise
    return d.summary


def run_deploy(d: Deploy) -> None:
    """The phases of :func:`deploy` under the lock (see the module docstring)."""
    hosts, settings, ref, rel = d.hosts, d.settings, d.ref, d.release
    guard = database_guard(hosts, settings)
    with interrupts_as_exceptions(hosts + guard):
        open_all(hosts + guard)
        asking = {h.name for h in hosts}
        with locked(hosts + guard, settings, "deploy", rel, then=lambda h: preflight.command(
                settings, d.token) if h.name in asking else "") as asked:
            d.preflight(asked)
            if settings.health_paths and d.live[d.primary.name]:
                d.plan_health(d.live[d.primary.name])  # type: ignore[arg-type]
            with d.timeline.timed(d.primary.name, "resolve ref"):
                d.commit = d.summary.commit = source.resolve_commit(d.primary, settings, ref)
            d.record = ReleaseRecord(rel, ref=ref, commit=d.commit, hosts=[h.name for h in hosts],
                                     static_version=build.static_version(rel))
            try:
                d.build_everywhere()
                asked = d.verify_everywhere()
                d.hook("before_database")
                verdict = asked or d.db_status()
                if verdict.pending and settings.config_php == "check":
                    d.check_config_php()
            except BaseException as exc:
                left = abandon(hosts, settings, d.record, str(exc))
                if isinstance(exc, (magento.MagentoError, KeyboardInterrupt)):
                    raise
                raise DeployError(f"{exc}\n{left}") from exc
            d.record.db_status = verdict.line()
            if not d.timeline.quiet:
                say(f"{'':9}{d.primary.name:<12} {verdict.line()}")
            try:
                with interrupts_deferred("finishing the database work and the switch") as got:
                    go_live(d, verdict)
                if got:
                    d.summary.warnings.append(
                        f"signal {got[0]} came during the database work or the switch: the "
                        "deploy was finished first (stopping half-way would break the shop)")
            except Aborted as exc:
                raise aborted(d) from exc


def aborted(d: Deploy, kept: str = "") -> OutcomeUnknown:
    """The error for a second signal during the database work or the switch."""
    return OutcomeUnknown(
        f"ABORTED by a second signal during the database work or the switch: setup:upgrade "
        f"may still be running on {d.primary.name}; the deploy lock stays.\n"
        + (f"{kept}\n" if kept else "") + state_report(d.hosts, d.settings))


def go_live(d: Deploy, verdict: magento.DbVerdict) -> None:
    """Phases 3 to 5; runs to the end even if Ctrl-C comes (see interrupts_deferred)."""
    pending = verdict.pending
    blue_green = pending and d.settings.upgrade_mode == "blue-green"
    window = pending and (not blue_green or d.maintenance)
    d.summary.path = "maintenance" if window else "blue-green" if pending else "zero-downtime"
    with cron_paused(d, pending):
        if blue_green:
            d.enable_blue_green()
        if pending:
            d.upgrade_database(verdict.config_pending, maintenance=window, before=verdict)
        switch_and_finish(d, window)


@contextmanager
def cron_paused(d: Deploy, pending: bool) -> Iterator[None]:
    """Around the database work: no new ``cron:run`` on any host (running ones may end,
    up to ``DEPLOY_CRON_WAIT``), from any crontab line of this shop (see :mod:`tasks.cron`).

    * A line a deploy cannot pause (or a pause that fails) refuses the deploy here, before
      maintenance: nothing was switched, the new release is removed, no flag is left.
    * Resumed when the block ends, unless the outcome of the database work is unknown
      (:class:`OutcomeUnknown`, :class:`Aborted`): ``setup:upgrade`` may still be running,
      so cron stays paused and the error says until when and how to resume.
    * A resume that fails is an error of the deploy (exit 1; the release stays live), which
      names the host and the command to run. A pause also expires by itself.
    """
    if not pending:
        yield
        return
    s = d.settings
    assert d.record is not None
    looked = on_all(d.hosts, lambda h: cron.survey(h, s))
    refused = [str(r) if isinstance(r, BaseException) else r.refusal()
               for r in looked.values() if isinstance(r, BaseException) or r.blocked]
    paused: dict = {}
    why = ("cron:run that this deploy cannot pause would keep starting during setup:upgrade",
           "Fix the lines (`fab doctor` then rates cron ok) and deploy again.")
    if not refused:
        paused = on_all(d.hosts, lambda h: cron.pause(h, s, s.cron_wait,
                                                      by=f"deploy {d.release}"))
        errors = failures(paused)
        if errors:
            on_all(d.hosts, lambda h: cron.resume(h, s))
            refused = [f"cron pause failed on {', '.join(errors)}:\n{describe_failures(errors)}"]
            why = ("cron could not be paused", "Fix the cause and deploy again.")
    if refused:
        left = abandon(d.hosts, s, d.record, "cron could not be paused")
        raise DeployError(f"REFUSED before maintenance: {why[0]}.\n" + "\n".join(refused)
                          + f"\n{left}. {why[1]}")
    for report in paused.values():
        lines = report.lines()
        d.summary.notes += lines[:-1] if report.still_running else lines
        if report.still_running:
            d.summary.warnings.append(lines[-1])
    until = {name: report.until for name, report in paused.items()}

    def expiry(names: list[str]) -> str:
        stamps = {until[n] for n in names}
        return (next(iter(stamps)) if len(stamps) == 1
                else ", ".join(f"{n} {until[n]}" for n in names)) + " (UTC)"

    def resume_all() -> list[str]:
        return [f"cron could not be resumed on {name} ({exc}): it stays paused there until "
                f"{expiry([name])}, when the pause expires by itself; end it now with "
                f"`fab cron-resume --hosts={name}`"
                for name, exc in failures(on_all(d.hosts, lambda h: cron.resume(h, s))).items()]

    try:
        yield
    except (OutcomeUnknown, Aborted) as exc:
        names = [h.name for h in d.hosts]
        kept = (f"cron stays PAUSED on {', '.join(names)} (not resumed: setup:upgrade may "
                f"still be running). Once it is over: `fab cron-resume "
                f"--hosts={','.join(names)}`; else the pause expires by itself at "
                f"{expiry(names)}.")
        if isinstance(exc, OutcomeUnknown):
            raise OutcomeUnknown(f"{exc}\n{kept}") from exc
        raise aborted(d, kept) from exc
    except BaseException as exc:
        problems = resume_all()
        if problems and isinstance(exc, Exception):
            raise DeployError(f"{exc}\nALSO:\n- " + "\n- ".join(problems)) from exc
        raise
    problems = resume_all()
    if problems:
        raise DeployError(d.summary.text() + "\nTHE RELEASE IS LIVE, BUT:\n- "
                          + "\n- ".join(problems) + "\n" + state_report(d.hosts, s))


def switch_and_finish(d: Deploy, pending: bool) -> None:
    """Phases 4 and 5: the switch on every host (or none), then everything after it.

    ``pending``: the database was upgraded under maintenance (which then stays on if the
    switch fails: the old code must not serve the new schema).
    """
    hosts, settings, rel = d.hosts, d.settings, d.release
    assert d.record is not None
    # Maintenance the operator had on stays on: the new release gets the flag too.
    on_all([h for h in hosts if h.name in d.operator_maintenance],
           lambda h: magento.maintenance_on(h, settings, d.releases_of(h)))
    try:
        d.hook("before_switch")
        switched = switch_all(hosts, settings, rel, d.live, d.timeline)
    except (DeployError, HookFailed) as exc:
        if pending:
            raise DeployError(f"{exc}\nthe database WAS upgraded: maintenance stays on "
                              "until the release is switched") from exc
        left = abandon(hosts, settings, d.record, str(exc))
        raise DeployError(f"{exc}\n{left}") from exc
    first = min(switched.values())
    d.summary.switch_offsets = {h: t - first for h, t in switched.items()}
    d.finish()


def verify_release(hosts: list[Host], settings: Settings, rel: str, timeline: Timeline) -> None:
    """Every host's copy of ``rel`` checked (:mod:`tasks.verify`) before any host switches."""
    with timeline.timed("all", "verify"):
        checks = verify.verify(hosts, settings, rel, path=settings.verify_path,
                               fcgi=settings.opcache in ("auto", "fcgi"))
    verify.raise_for(checks, rel)


def mark_switched(host: Host, settings: Settings, rel: str, old: str | None) -> None:
    """Record a switch made outside a whole deploy: ``rel`` live, ``old`` the previous."""
    if old and old != rel:
        mark(host, settings, old, PREVIOUS)
    mark(host, settings, rel, LIVE)


def mark(host: Host, settings: Settings, rel: str, status: str) -> None:
    """Change the status in a release's record (adopting a release another tool left)."""
    records = release.read_records(host, settings)
    rec = records.get(rel) or release.adopted_record(host, settings, rel)
    rec.status = status
    release.write_record(host, settings, rec)


def prune(host: Host, settings: Settings, *, protect: set[str], dry: bool = False,
          known: tuple[dict[str, ReleaseRecord], list[release.Folder]] | None = None,
          first: tuple[Step, ...] = ()) -> str:
    """Remove old release folders on ``host`` (see :func:`release.plan_prune`); say what
    went, the space freed, and which folders were left alone because they are not
    releases ("" when there is nothing to say).

    ``known``: the host's records and ``releases/`` folders, when already read; ``first``:
    steps to send in the same round trip as the removal (they must succeed first)."""
    records, folders = known or (release.read_records(host, settings),
                                 release.scan(host, settings))
    present = release.order(folders, records)
    plan = release.plan_prune(present.ordered, records, keep=settings.keep_releases,
                              protected={p for p in protect if p})
    lines, commands = [], {f"first{i}": step.command for i, step in enumerate(first)}
    if plan.remove:
        paths = " ".join(q(settings.release_dir(r)) for r in plan.remove)
        commands["freed"] = f"du -sk {paths} 2>/dev/null | awk '{{s+=$1}} END {{print s+0}}'"
        if not dry:
            commands["prune"] = "; ".join(release.remove_release_cmd(settings, r)
                                          for r in plan.remove)
    answers = batch.ask(host, commands, step="prune") if commands else {}
    for i, step in enumerate(first):
        exited, out = answers.get(f"first{i}", (-1, "no answer"))
        if exited:
            raise StepFailed(host.name, step.name, step.command, exited, out)
    if plan.remove:
        if not dry and answers.get("prune", (-1, ""))[0]:
            raise StepFailed(host.name, "prune", commands["prune"], answers.get(
                "prune", (-1, ""))[0], answers.get("prune", (-1, "no answer"))[1])
        freed = answers.get("freed", (0, "0"))[1].strip().splitlines()[-1:] or ["0"]
        kib = int(freed[0]) if freed[0].isdigit() else 0
        lines.append(f"[{host.name}] {'would remove' if dry else 'removed'} "
                     f"{', '.join(plan.remove)} ({kib / 1024:.1f} MiB freed)")
    if present.foreign:
        lines.append(f"[{host.name}] left alone in {settings.releases_dir}, not releases (no "
                     f"app/etc, no record): {', '.join(present.foreign)}")
    return "\n".join(lines)


def build_plan(settings: Settings, hosts: list[str], rel: str) -> list[str]:
    """The build phase of :func:`dry_run`: on each host, or here and shipped."""
    if settings.build == "each":
        return [render(f"on {', '.join(hosts)} in parallel: prepare + build",
                       source.checkout(settings, rel, "<commit>")
                       + [source.link_shared(settings, rel)]
                       + build.build(settings, rel) + [build.verify(settings, rel)])]
    local = ship.builder_settings(settings)
    return [
        render("here (DEPLOY_BUILD=local): prepare + build",
               [ship.clean(local), *source.checkout(local, rel, "<commit>"),
                ship.config_check(local, rel), *build.build(local, rel),
                ship.digest(local, rel)]),
        render(f"to {', '.join(hosts)} in parallel: ship, check, link shared",
               [Step("ship", f"rsync -rlpc --link-dest={settings.release_dir('<live>')} "
                             f"{local.release_dir(rel)}/ <host>:{settings.release_dir(rel)}/"),
                ship.digest(settings, rel), source.link_shared(settings, rel),
                build.verify(settings, rel)]),
    ]


def health_plan(settings: Settings, primary: str) -> list[str]:
    """The storefront check's part of :func:`dry_run`: found and asked before the build,
    watched after the switch ([] with ``DEPLOY_HEALTH_PATHS=none``)."""
    if not settings.health_paths:
        return []
    params = health.HealthParams.from_settings(settings)
    where = (f"DEPLOY_HEALTH_BASE_URL {settings.health_base_url or ''} "
             f"{' '.join(f'{k}={v}' for k, v in settings.health_base_urls.items())}".strip()
             if settings.health_base_url else "Magento's base URL")
    paths = " ".join(params.paths)
    return [
        render(f"before the build: the storefront check, {where} on each host's own web "
               f"server, asked of the LIVE shop ({paths}; failing: exit 2, nothing built)",
               [Step("shop URL", shopurl.config_command(settings.php, settings.release_dir(
                   "<live>"))), Step("where each host listens", shopurl.LISTENERS)]),
        f"# then: the storefront check on every host ({paths}): the first bad answer "
        f"reverts every host; else watched for {params.window_seconds:g} s",
    ]


def dry_run(settings: Settings, hosts: list[str], ref: str | None = None) -> str:
    """The plan of a deploy as text, without contacting any host."""
    rel, ref = "<release-id>", check_ref(ref) if ref else settings.branch
    primary = settings.primary or hosts[0]
    check = health_plan(settings, primary)
    sections = [
        *check[:1],
        render(f"on {primary}: resolve {ref}", [source.update_mirror(settings),
                                                source.resolve_ref(settings, ref)]),
        *build_plan(settings, hosts, rel),
        render(f"on {primary}: database status",
               [Step(c, build.magento(settings, rel, c))
                for c in ("setup:db:status", "app:config:status")]),
        render(f"only if pending: maintenance on every host, then on {primary}",
               [Step("setup:upgrade", build.magento(settings, rel, "setup:upgrade",
                                                    "--keep-generated"))]),
        render(f"on {', '.join(hosts)}: switch", [switch.switch(settings, rel)]),
        render(f"then: OPcache flush ({settings.opcache}) everywhere, cache:flush on {primary}, "
               "maintenance off, prune", [Step("cache:flush", build.magento(settings, rel,
                                                                             "cache:flush"))]),
        *check[1:],
    ]
    return "\n".join(sections)
