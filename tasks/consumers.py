"""Queue consumers after a switch: no message may be handled by the old release's code.

A ``bin/magento queue:consumers:start`` process is long-running and keeps the code it
started with. What a deploy does after the switch (:func:`restart`):

1. **Magento's poison pill**: ``queue:consumers:restart`` (Magento 2.4.x) run once, from
   ``current`` (the NEW release), on the primary host: the version lives in the shared
   database, so every host's consumers see it. A consumer started with
   ``--max-messages`` (the way cron's ``consumers_runner`` starts them) compares it before
   each message it takes: if it changed, it puts the message back and exits, and the next
   ``cron:run`` -- from ``current`` -- starts it again from the new release. Where the
   command does not exist (older 2.4), the report says so; ``setup:upgrade`` still
   changes the pill when a schema deploy ran it.
2. **An optional command per host** (``command``, e.g. ``supervisorctl restart
   'magento-consumer:*'``) for consumers run by a supervisor, run in ``current``.
3. **The check**: every ``queue:consumers:start`` process of the deploy user on the host,
   with the release it runs (from ``/proc/<pid>/cmdline`` and ``/proc/<pid>/cwd``), so
   the summary names any still running old code, by PID.

Idle consumers: the pill is only read when a message arrives, so an idle old consumer
stays alive after the restart. It cannot handle a message with old code (the first one it
takes is put back, then it exits), so the report lists it as *will exit at its next
message* rather than as a failure; its ``--single-thread`` lock delays the new consumer of
that name until then (at most until the next message plus one cron minute). A consumer
started WITHOUT ``--max-messages`` runs Magento's ``subscribe()`` loop, which never reads
the pill: it keeps handling messages with old code forever. Those are reported as such,
and ``stop_old=True`` sends SIGTERM to every consumer still on an old release (PID and
start time checked again first, so a reused PID is never hit). Off by default: killing a
consumer in the middle of a message leaves that message to the queue's own recovery.

Which release a process runs: a script path under ``releases/<id>/`` (or a relative
``bin/magento`` whose physical cwd is there) names it. A path through ``current/`` names
whatever ``current`` pointed to when the process started: older than the switch (the
``current`` symlink's own mtime) means the old release. Processes whose view of the
deploy path is another directory (another mount namespace, a container) are not this
host's shop and are left out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .hosts import Host, on_all, q
from .settings import Settings

START = "queue:consumers:start"
RESTART = "queue:consumers:restart"
NOT_DEFINED = (f'Command "{RESTART}" is not defined',
               'There are no commands defined in the "queue:consumers" namespace')
# The scanner gets the deploy path on stdin and spells "magento" in two halves, so that
# its own command line (and the shells Fabric wraps it in) never matches what it looks for.
# One grep picks the processes whose command line names it (the grep itself has exited
# when the loop reads them): a loop forking `tr` for every process of the deploy user
# cost a fork per process on every deploy.
_SCAN = r"""
IFS= read -r deploy
pat=mag; pat=${pat}ento
ours=$(stat -L -c %d:%i "$deploy" 2>/dev/null)
printf 'U\t%s\t%s\t%s\n' "$(cut -d' ' -f1 /proc/uptime)" "$(getconf CLK_TCK)" "$(date +%s.%N)"
printf 'C\t%s\t%s\t%s\n' "$(find "$deploy/current" -maxdepth 0 -printf '%T@' 2>/dev/null)" \
  "$(readlink "$deploy/current" 2>/dev/null)" "$(readlink -f "$deploy" 2>/dev/null)"
for c in $(grep -l -a -F -e "$pat" /proc/[0-9]*/cmdline 2>/dev/null); do
  d=${c%/cmdline}
  [ -O "$d" ] || continue
  args=$(tr '\0\n' '\037\036' < "$d/cmdline" 2>/dev/null) || continue
  case $args in *"$pat"*) ;; *) continue ;; esac
  IFS= read -r st < "$d/stat" 2>/dev/null || continue
  set -f; set -- ${st##*) }; set +f
  root=$(stat -L -c %d:%i "$d/root$deploy" 2>/dev/null)
  same=0; [ -n "$ours" ] && [ "$root" = "$ours" ] && same=1
  printf 'P\t%s\t%s\t%s\t%s\t%s\t%s\n' "${d#/proc/}" "$2" "${20}" "$same" \
    "$(readlink "$d/cwd" 2>/dev/null)" "$args"
done
"""


class ConsumersError(RuntimeError):
    """Restarting or checking consumers failed; the message names host and cause."""


@dataclass(frozen=True)
class Proc:
    """A process of the deploy user that mentions bin/magento, as the scan saw it."""

    pid: int
    ppid: int
    age: float  # seconds since it started
    start_ticks: int  # kernel start time: the same pid with another value is another process
    here: bool  # sees this host's deploy path (same mount namespace view)
    cwd: str
    argv: tuple[str, ...]


@dataclass(frozen=True)
class Scan:
    """One look at a host's processes and its ``current`` symlink."""

    procs: tuple[Proc, ...]
    live: str | None  # release id ``current`` points to
    switch_age: float | None  # seconds since ``current`` was last replaced
    deploy_realpath: str


def scan(host: Host, settings: Settings) -> Scan:
    """Every process of the deploy user on ``host`` whose command line names magento."""
    out = host.run(_SCAN, step="list magento processes", echo=False,
                   stdin=settings.deploy_path + "\n").stdout
    return parse_scan(out)


def scan_command(settings: Settings) -> str:
    """:func:`scan` as a command of its own (its input piped in), to batch with others."""
    return f"printf '%s\\n' {q(settings.deploy_path)} | (\n{_SCAN}\n)"


def parse_scan(out: str) -> Scan:
    """Pure part of :func:`scan` (the format is written by ``_SCAN``)."""
    uptime = clk = now = 0.0
    live: str | None = None
    switch_age: float | None = None
    real = ""
    procs = []
    for line in out.splitlines():
        kind, _, rest = line.partition("\t")
        if kind == "U":
            up, tck, stamp = rest.split("\t")
            uptime, clk, now = float(up), float(tck), float(stamp)
        elif kind == "C":
            mtime, target, real = rest.split("\t")
            live = os.path.basename(target.rstrip("/")) or None
            switch_age = now - float(mtime) if mtime else None
        elif kind == "P":
            pid, ppid, ticks, here, cwd, args = rest.split("\t", 5)
            argv = tuple(a.replace("\036", "\n") for a in args.split("\037") if a != "")
            procs.append(Proc(int(pid), int(ppid), uptime - int(ticks) / clk, int(ticks),
                              here == "1", cwd.removesuffix(" (deleted)"), argv))
    return Scan(tuple(procs), live, switch_age, real)


@dataclass(frozen=True)
class Consumer:
    """One ``queue:consumers:start`` process and the release whose code it runs."""

    pid: int
    start_ticks: int
    name: str
    release: str | None  # None: cannot tell from its command line and cwd
    via_current: bool  # started through ``current/``: its release is the one live then
    old: bool | None  # runs a release other than the live one (None: cannot tell)
    honours_pill: bool  # started with --max-messages: exits at its next message after the pill
    argv: tuple[str, ...]

    def describe(self) -> str:
        where = (f"release {self.release}" if self.release
                 else "current, started before the switch" if self.old
                 else "current" if self.via_current else "an unknown release")
        return f"pid {self.pid} {self.name} ({where})"


def _roots(settings: Settings, scan_: Scan) -> list[str]:
    return [r for r in dict.fromkeys((settings.deploy_path, scan_.deploy_realpath)) if r]


def _release_of(path: str, settings: Settings, roots: list[str]) -> tuple[str | None, bool]:
    """(release id, through current) of a path under the deploy path, lexically."""
    for root in roots:
        for sub, via_current in (("releases/", False), ("current/", True)):
            prefix = f"{root}/{sub}"
            if path.startswith(prefix):
                rest = path[len(prefix):]
                return (None if via_current else rest.split("/")[0] or None), via_current
    return None, False


def consumers(scan_: Scan, settings: Settings) -> list[Consumer]:
    """The consumer processes of this host's shop in ``scan_``, classified (pure)."""
    roots = _roots(settings, scan_)
    found = []
    for proc in scan_.procs:
        if not proc.here or START not in proc.argv:
            continue
        i = proc.argv.index(START)
        script = next((a for a in reversed(proc.argv[:i]) if a.endswith("bin/magento")), "")
        args = proc.argv[i + 1:]
        name = next((a for a in args if not a.startswith("-")), "?")
        path = os.path.normpath(os.path.join(proc.cwd, script)) if script else proc.cwd
        release, via_current = _release_of(path, settings, roots)
        if release is None and not via_current:
            release, _ = _release_of(proc.cwd + "/", settings, roots)
        if release is None and not via_current and not any(
                proc.cwd == r or proc.cwd.startswith(r + "/") for r in roots):
            continue  # another shop of the same user
        if via_current:
            old = (None if scan_.switch_age is None else proc.age > scan_.switch_age)
            release = scan_.live if old is False else None
        else:
            old = None if release is None or scan_.live is None else release != scan_.live
        found.append(Consumer(proc.pid, proc.start_ticks, name, release, via_current, old,
                              any(a.startswith("--max-messages") for a in args), proc.argv))
    return found


@dataclass
class ConsumersReport:
    """What happened to one host's consumers, for the deploy summary."""

    host: str
    live: str | None
    pill: str = ""  # what the poison pill step did ("" = not on this host)
    command: str = ""  # the configured restart command, if it ran here
    old: list[Consumer] = field(default_factory=list)
    unknown: list[Consumer] = field(default_factory=list)
    new: list[Consumer] = field(default_factory=list)
    stopped: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No consumer left that may handle a message with old code."""
        return not [c for c in self.old if not c.honours_pill and c.pid not in self.stopped]

    def lines(self) -> list[str]:
        out = [f"[{self.host}] {text}" for text in (self.pill, self.command) if text]
        for consumer in self.old:
            if consumer.pid in self.stopped:
                state = "stopped (SIGTERM)"
            elif consumer.honours_pill:
                state = "still running old code, will exit at its next message (poison pill)"
            else:
                state = ("runs old code and IGNORES the poison pill (started without "
                         "--max-messages): stop it, or pass stop_old")
            out.append(f"[{self.host}] consumer {consumer.describe()}: {state}")
        for consumer in self.unknown:
            out.append(f"[{self.host}] consumer {consumer.describe()}: release unknown "
                       f"({' '.join(consumer.argv)})")
        count = len(self.new)
        out.append(f"[{self.host}] consumers on the live release {self.live}: {count}"
                   + ("" if self.old or self.unknown else "; none on an old release"))
        return out


def check(host: Host, settings: Settings, scanned: str | None = None) -> ConsumersReport:
    """List ``host``'s consumers by the release they run; nothing is changed.
    ``scanned``: :func:`scan_command`'s output, when it was already asked."""
    found = scan(host, settings) if scanned is None else parse_scan(scanned)
    report = ConsumersReport(host.name, found.live)
    for consumer in consumers(found, settings):
        bucket = (report.unknown if consumer.old is None
                  else report.old if consumer.old else report.new)
        bucket.append(consumer)
    return report


def poison_pill(host: Host, settings: Settings) -> str:
    """``queue:consumers:restart`` from ``current`` (the new release): one line saying what
    happened. A Magento without the command is said, not an error; any other failure is."""
    result = host.run(pill_command(settings), step=RESTART, warn=True, echo=False)
    return judge_pill(host.name, settings, result.exited, (result.stdout + result.stderr).strip())


def pill_command(settings: Settings) -> str:
    return magento_current(settings, RESTART)


def judge_pill(host: str, settings: Settings, exited: int, text: str) -> str:
    """:func:`poison_pill`'s line from the command's exit code and output."""
    if exited == 0:
        return f"{RESTART}: poison pill changed; consumers with --max-messages exit at their " \
               "next message"
    if any(marker in text for marker in NOT_DEFINED):
        return (f"{RESTART} does not exist in this Magento version: running consumers keep "
                "the old code until they end (setup:upgrade changes the pill when it runs)")
    raise ConsumersError(f"[{host}] bin/magento {RESTART} failed (exit {exited}) "
                         f"in {settings.current}:\n{text}")


def magento_current(settings: Settings, *args: str) -> str:
    """``bin/magento`` run in ``current``: its BP is the live release's physical path."""
    argv = " ".join(q(a) for a in args)
    return f"cd {q(settings.current)} && {settings.php} bin/magento {argv} --no-interaction"


def run_command(host: Host, settings: Settings, command: str) -> str:
    """The operator's own restart command (e.g. ``supervisorctl restart ...``), in current."""
    host.run(f"cd {q(settings.current)} && {command}", step="consumers restart command")
    return f"consumers restart command ran: {command}"


def stop(host: Host, old: list[Consumer]) -> list[int]:
    """SIGTERM each consumer, only if its PID still has the same start time. Returns PIDs
    signalled. Runs as the deploy user: it can only signal its own processes."""
    if not old:
        return []
    checks = " ".join(
        f"if [ \"$(sed 's/.*) //' /proc/{c.pid}/stat 2>/dev/null | cut -d' ' -f20)\" = "
        f"{c.start_ticks} ] && kill -TERM {c.pid} 2>/dev/null; then echo {c.pid}; fi;"
        for c in old)
    out = host.run(checks, step="stop old consumers", echo=False).stdout
    return [int(p) for p in out.split()]


Asked = dict[str, dict[str, tuple[int, str]]]  # host name -> section -> (exit code, output)


def sections(settings: Settings, primary: bool) -> dict[str, str]:
    """What :func:`restart` asks a host, as sections to send with another round trip
    (:mod:`tasks.batch`): the poison pill (primary only), then the scan."""
    return {**({"pill": pill_command(settings)} if primary else {}),
            "scan": scan_command(settings)}


def restart(primary: Host, hosts: list[Host], settings: Settings, *, command: str = "",
            stop_old: bool = False, asked: Asked | None = None) -> dict[str, ConsumersReport]:
    """After the switch: poison pill (once, on ``primary``), ``command`` on every host,
    then each host's consumers listed by release; ``stop_old`` TERMs those on an old
    release. Returns a report per host name (``ConsumersReport.lines()`` for the summary).

    ``asked``: the answers to :func:`sections`, when they came with another round trip
    (only without ``command``, which must run before the scan); what is missing is asked.
    Errors are raised (:class:`ConsumersError`, ``StepFailed``): the caller decides
    whether a failed restart fails the deploy (the switch is done by then).
    """
    answers = {} if command else asked or {}
    pill_answer = answers.get(primary.name, {}).get("pill")
    pill = (judge_pill(primary.name, settings, *pill_answer) if pill_answer
            else poison_pill(primary, settings))

    def one(host: Host) -> ConsumersReport:
        ran = run_command(host, settings, command) if command else ""
        scanned = answers.get(host.name, {}).get("scan")
        report = check(host, settings, scanned[1] if scanned and scanned[0] == 0 else None)
        report.pill = pill if host is primary else ""
        report.command = ran
        if stop_old:
            report.stopped = stop(host, report.old)
        return report

    reports = on_all(hosts, one)
    for result in reports.values():
        if isinstance(result, BaseException):
            raise result
    return reports  # type: ignore[return-value]
