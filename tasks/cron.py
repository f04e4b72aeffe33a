"""Magento's cron for a release-folder deploy: always ``current``, pausable during a deploy.

**The line.** ``bin/magento cron:install`` writes a block keyed by sha256 of BP, and BP is
the *physical* release directory: installed from ``current`` it still names
``releases/N`` and keeps running that release after every later switch (and a second
release's ``cron:install`` adds a second block). We write our own block instead::

    # >>> fabric-magento-deploy cron /srv/shop >>>
    * * * * * find /srv/shop/cron.pause -newermt now 2>/dev/null | grep -q . || \
        /usr/bin/php /srv/shop/current/bin/magento cron:run 2>&1 \
        | grep -v 'Ran jobs by schedule' >> /srv/shop/shared/var/log/magento.cron.log
    # <<< fabric-magento-deploy cron /srv/shop <<<

(one line in the crontab, wrapped here). :func:`plan` is pure: it keeps every other line
byte for byte, replaces our block in place, and removes Magento ``cron:install`` blocks
whose command runs a ``bin/magento`` under the deploy path (they pin a release), saying
so. Blocks of other shops stay.

**The pause.** During a schema deploy ``cron:run`` must not start (old code against a
database being upgraded, or new code before it is). :func:`pause` writes the flag file
``<DEPLOY_PATH>/cron.pause`` with its modification time set to the moment the pause
EXPIRES; the crontab line starts ``cron:run`` only when the flag is absent or its mtime is
in the past (``find -newermt now``). So:

* no crontab rewrite during a deploy (crontab edits race with people and other tools,
  and a deploy killed mid-edit would leave cron off with no trace);
* not ``cron/enabled`` in ``env.php``: that file is shared by all releases, rewritten by
  ``setup:config:set`` and other tools (our edit races theirs), a PHP array we would have
  to parse and write back, and a killed deploy would leave cron disabled forever;
* a pause can never outlive its TTL: a deploy killed with SIGKILL leaves a flag that stops
  mattering by itself (default TTL: ``DEPLOY_TIMEOUT_UPGRADE`` plus 10 minutes, the
  longest a deploy's schema step may take). It is visible meanwhile: the file says who
  paused and until when, and :func:`pause_state` / ``fab cron-install`` print it;
* :func:`resume` removes it and is safe when there is none (call it in a ``finally``).

Running ``cron:run`` processes are waited for, never killed: a cron job killed half-way
(an indexer, an export) is worse than one finishing against the old schema, and the
maintenance window is already on. :func:`pause` reports, by PID, those still running
after ``wait_seconds``; the caller decides.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass, field

from fabric import task
from invoke import Context

from .consumers import Proc, scan
from .hosts import Host, q, say
from .settings import Settings, SettingsError

PAUSE_FILE = "cron.pause"
PAUSE_MARGIN = 600  # seconds added to DEPLOY_TIMEOUT_UPGRADE for the default pause TTL
POLL = 1.0  # seconds between looks at running cron:run processes
CRON_RUN = "cron:run"
_MAGENTO_START = re.compile(r"#~ MAGENTO START (\S+)")
_MAGENTO_BIN = re.compile(r"(\S+)/bin/magento\b")


class CronError(RuntimeError):
    """Installing, pausing or resuming cron failed; the message names host and cause."""


# --------------------------------------------------------------------------- the crontab


def begin_marker(settings: Settings) -> str:
    return f"# >>> fabric-magento-deploy cron {settings.deploy_path} >>>"


def end_marker(settings: Settings) -> str:
    return f"# <<< fabric-magento-deploy cron {settings.deploy_path} <<<"


def pause_file(settings: Settings) -> str:
    return f"{settings.deploy_path}/{PAUSE_FILE}"


def log_file(settings: Settings) -> str:
    """Magento's ``var/log/magento.cron.log``: in shared/ when var/log is shared (the
    default), else next to the releases (a release's own var/log may not exist)."""
    if "var/log" in settings.shared_dirs:
        return f"{settings.shared_dir}/var/log/magento.cron.log"
    return f"{settings.deploy_path}/magento.cron.log"


def paused_test(settings: Settings) -> str:
    """Shell test, true while a pause is in force (the flag's mtime is its expiry)."""
    return f"find {q(pause_file(settings))} -newermt now 2>/dev/null | grep -q ."


def cron_line(settings: Settings, php: str | None = None) -> str:
    """The crontab line: ``cron:run`` from ``current`` unless paused. No ``%`` (cron
    would turn it into a newline), no release path."""
    for key, value in (("DEPLOY_PATH", settings.deploy_path), ("DEPLOY_PHP", php or settings.php)):
        if "%" in value or "\n" in value:
            raise SettingsError(f"{key}={value!r}: '%' and newlines cannot go in a crontab line")
    return (f"* * * * * {paused_test(settings)} || {php or settings.php} "
            f"{q(settings.current + '/bin/magento')} {CRON_RUN} 2>&1 "
            f"| grep -v 'Ran jobs by schedule' >> {q(log_file(settings))}")


@dataclass(frozen=True)
class CronPlan:
    """The crontab to write, whether it differs from the one read, and why."""

    crontab: str
    changed: bool
    notes: tuple[str, ...] = ()


def _end_of(lines: list[str], start: int, marker: str) -> int | None:
    for j in range(start + 1, len(lines)):
        if lines[j].rstrip("\n") == marker:
            return j
    return None


def _pinned(body: list[str], roots: list[str]) -> str | None:
    """The bin/magento directory under one of ``roots`` that a Magento block runs."""
    for line in body:
        for match in _MAGENTO_BIN.finditer(line):
            path = match.group(1)
            if any(path == root or path.startswith(root + "/") for root in roots):
                return path
    return None


def plan(existing: str, settings: Settings, *, php: str | None = None,
         deploy_realpath: str = "") -> CronPlan:
    """The user's crontab with our block (pure, idempotent).

    ``php``: the PHP command for the line (default ``DEPLOY_PHP``); ``deploy_realpath``:
    the deploy path with symlinks resolved, since Magento's blocks name physical paths.
    """
    ours = [begin_marker(settings) + "\n", cron_line(settings, php) + "\n",
            end_marker(settings) + "\n"]
    roots = [r for r in dict.fromkeys((settings.deploy_path, deploy_realpath)) if r]
    lines = existing.splitlines(keepends=True)
    out: list[str] = []
    notes: list[str] = []
    at: int | None = None
    i = 0
    while i < len(lines):
        text = lines[i].rstrip("\n")
        if text == begin_marker(settings):
            end = _end_of(lines, i, end_marker(settings))
            if end is None:
                raise CronError(f"the crontab has '{text}' without its end line "
                                f"'{end_marker(settings)}': fix it by hand (crontab -e)")
            at = len(out) if at is None else at
            i = end + 1
            continue
        start = _MAGENTO_START.fullmatch(text.strip())
        if start:
            end = _end_of(lines, i, f"#~ MAGENTO END {start.group(1)}")
            pinned = _pinned(lines[i + 1:end], roots) if end is not None else None
            if end is not None and pinned is not None:
                notes.append(f"replaced Magento's cron:install block for {pinned} (it pins "
                             "that directory; ours runs current)")
                at = len(out) if at is None else at
                i = end + 1
                continue
        out.append(lines[i])
        i += 1
    if at is None:
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n"
        at = len(out)
    crontab = "".join(out[:at] + ours + out[at:])
    return CronPlan(crontab, crontab != existing, tuple(notes))


# --------------------------------------------------------------------------- on a host


def read_crontab(host: Host) -> str:
    """The deploy user's crontab ('' when there is none)."""
    if not host.test("command -v crontab >/dev/null"):
        raise CronError(f"[{host.name}] no crontab command: install cron on this host")
    result = host.run("crontab -l", step="crontab -l", warn=True, echo=False)
    if result.ok:
        return result.stdout
    if "no crontab for" in result.stderr:
        return ""
    raise CronError(f"[{host.name}] crontab -l failed (exit {result.exited}): "
                    f"{result.stderr.strip()}")


def php_command(host: Host, settings: Settings) -> str:
    """``DEPLOY_PHP`` with its program made absolute: cron's PATH is only /usr/bin:/bin."""
    words = shlex.split(settings.php)
    if not words or "/" in words[0]:
        return settings.php
    found = host.run(f"command -v {q(words[0])}", step="find php", warn=True,
                     echo=False).stdout.strip()
    if not found.startswith("/"):
        raise CronError(f"[{host.name}] DEPLOY_PHP={settings.php!r}: {words[0]} is not on "
                        "this host's PATH; give its absolute path")
    return " ".join(q(w) for w in [found, *words[1:]])


def install(host: Host, settings: Settings) -> CronPlan:
    """Put our block in the deploy user's crontab on ``host`` (written only if changed)."""
    existing = read_crontab(host)
    real = host.output(f"readlink -f {q(settings.deploy_path)}", step="deploy path")
    planned = plan(existing, settings, php=php_command(host, settings), deploy_realpath=real)
    if planned.changed:
        host.run("crontab -", step="crontab -", stdin=planned.crontab, echo=False)
    return planned


# --------------------------------------------------------------------------- pause


@dataclass(frozen=True)
class CronProcess:
    pid: int
    argv: tuple[str, ...]


@dataclass
class PauseReport:
    """What :func:`pause` did on one host."""

    host: str
    until: str  # when the pause expires by itself (host time, UTC)
    previous: str = ""  # a pause found in force before (a killed deploy's?), its text
    still_running: list[CronProcess] = field(default_factory=list)
    waited: float = 0.0

    def lines(self) -> list[str]:
        out = []
        if self.previous:
            out.append(f"[{self.host}] cron was already paused: {self.previous}")
        out.append(f"[{self.host}] cron paused (no new cron:run) until {self.until} at the latest")
        if self.still_running:
            pids = ", ".join(str(p.pid) for p in self.still_running)
            out.append(f"[{self.host}] cron:run still running after {self.waited:.0f} s "
                       f"(not killed): pid {pids}")
        return out


def running_cron(procs: tuple[Proc, ...], settings: Settings,
                 roots: list[str]) -> list[CronProcess]:
    """``cron:run`` processes of this shop (the PHP process, its group children, and the
    ``sh -c`` cron starts them from, which exists before PHP does)."""
    found = []
    for proc in procs:
        if not proc.here:
            continue
        runs = CRON_RUN in proc.argv or any(f"bin/magento {CRON_RUN}" in a for a in proc.argv)
        mine = any(root in a for a in proc.argv for root in roots) or any(
            proc.cwd == r or proc.cwd.startswith(r + "/") for r in roots)
        if runs and mine:
            found.append(CronProcess(proc.pid, proc.argv))
    return found


def cron_processes(host: Host, settings: Settings) -> list[CronProcess]:
    found = scan(host, settings)
    roots = [r for r in dict.fromkeys((settings.deploy_path, found.deploy_realpath)) if r]
    return running_cron(found.procs, settings, roots)


def pause_state(host: Host, settings: Settings) -> str:
    """'' when cron is not paused, else the flag's text (who paused, until when)."""
    flag = q(pause_file(settings))
    out = host.run(f"if {paused_test(settings)}; then cat {flag}; echo; fi", step="cron pause",
                   echo=False).stdout.strip()
    return out or ""


def pause(host: Host, settings: Settings, wait_seconds: float, *, ttl_seconds: int | None = None,
          by: str = "a deploy") -> PauseReport:
    """Stop new ``cron:run`` starts on ``host``; wait up to ``wait_seconds`` for running
    ones to end. The pause expires after ``ttl_seconds`` (default
    ``DEPLOY_TIMEOUT_UPGRADE`` + 10 min) even if :func:`resume` is never called."""
    ttl = settings.timeout_upgrade + PAUSE_MARGIN if ttl_seconds is None else int(ttl_seconds)
    if ttl <= 0:
        raise SettingsError(f"cron pause TTL {ttl!r}: give a positive number of seconds")
    previous = pause_state(host, settings)
    flag = pause_file(settings)
    tmp = f"{flag}.tmp"
    # Written aside, its mtime set to the expiry, then renamed: never a moment in which
    # the flag exists with a past mtime (the crontab line would start cron:run).
    until = host.output(
        f"until=$(( $(date +%s) + {ttl} )) && stamp=$(date -u -d @$until +%Y-%m-%dT%H:%M:%SZ)"
        f" && printf '%s\\n' \"paused by \"{q(by)}\" at $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        f" until $stamp\" > {q(tmp)} && touch -d @$until {q(tmp)} && mv -f {q(tmp)} {q(flag)}"
        " && echo $stamp", step="cron pause")
    if not host.test(paused_test(settings)):
        raise CronError(f"[{host.name}] {flag} was written but the crontab line's test "
                        f"({paused_test(settings)}) does not see it: this host's find lacks "
                        "-newermt (GNU findutils needed); cron is NOT paused")
    report = PauseReport(host.name, until, previous)
    deadline = time.monotonic() + max(0.0, wait_seconds)
    started = time.monotonic()
    while True:
        report.still_running = cron_processes(host, settings)
        if not report.still_running or time.monotonic() >= deadline:
            break
        time.sleep(min(POLL, max(0.0, deadline - time.monotonic())))
    report.waited = time.monotonic() - started
    return report


def resume(host: Host, settings: Settings) -> str:
    """Remove the pause flag; safe when cron is not paused. Returns one line to print."""
    flag = q(pause_file(settings))
    out = host.run(f"if [ -e {flag} ]; then cat {flag}; rm -f {flag}; echo removed; fi",
                   step="cron resume", echo=False).stdout.strip()
    if not out:
        return f"[{host.name}] cron was not paused"
    return f"[{host.name}] cron resumed ({out.removesuffix('removed').strip()})"


# --------------------------------------------------------------------------- tasks


def _install_on(host: Host, settings: Settings) -> None:
    planned = install(host, settings)
    say(f"[{host.name}] crontab: " + ("our cron line installed" if planned.changed
                                      else "already up to date"))
    for note in planned.notes:
        say(f"[{host.name}] {note}")
    paused = pause_state(host, settings)
    if paused:
        say(f"[{host.name}] NOTE cron is paused: {paused} (`fab cron-resume` ends it)")


@task(name="cron-install")
def cron_install(c: Context) -> None:
    """Put `cron:run` from DEPLOY_PATH/current in the deploy user's crontab, per host.

    Our own block (idempotent); every other line is kept. Magento's own `cron:install`
    blocks for this shop pin one release: they are replaced, and the output says so.
    """
    from .cli import clean_errors, targets  # here: cli imports deploy, which may import us
    from .settings import load

    def body() -> None:
        settings = load(require_repo=False)
        for host in targets(c, settings, echo=False):
            _install_on(host, settings)

    clean_errors(body)()


@task(name="cron-resume")
def cron_resume(c: Context) -> None:
    """End a cron pause left by a deploy that was killed (it would also expire by itself)."""
    from .cli import clean_errors, targets
    from .settings import load

    def body() -> None:
        settings = load(require_repo=False)
        for host in targets(c, settings, echo=False):
            say(resume(host, settings))

    clean_errors(body)()
