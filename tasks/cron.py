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
EXPIRES; a crontab line starts ``cron:run`` only when the flag is absent or its mtime is
in the past (``find -newermt now``). So:

* not ``cron/enabled`` in ``env.php``: that file is shared by all releases, rewritten by
  ``setup:config:set`` and other tools (our edit races theirs), a PHP array we would have
  to parse and write back, and a killed deploy would leave cron disabled forever;
* a pause can never outlive its TTL: a deploy killed with SIGKILL leaves a flag that stops
  mattering by itself (default TTL: ``DEPLOY_TIMEOUT_UPGRADE`` plus 10 minutes, the
  longest a deploy's schema step may take). It is visible meanwhile: the file says who
  paused and until when, and :func:`pause_state` / ``fab cron-install`` print it;
* :func:`resume` removes it and is safe when there is none.

**Every line of this shop.** Our line tests the flag; other lines of the deploy user's
crontab that run THIS shop's ``cron:run`` would not (a plain ``php
<DEPLOY_PATH>/current/bin/magento cron:run``, Magento's ``#~ MAGENTO START`` block, a path
through a symlink that resolves under the deploy path). :func:`survey` finds them
(:func:`classify` is its pure part) and :func:`pause` GUARDS each one before it writes the
flag: the line's command gets the flag test in front (:func:`guard`), and keeps it::

    * * * * * find /srv/shop/cron.pause -newermt now 2>/dev/null | grep -q . && exit 0; php ...

A guard is harmless without a pause (the line runs exactly as before), so it is never taken
off again: the crontab is edited once, not at every pause and resume, and a deploy killed
at any moment leaves either the old line or the guarded one, never a line switched off (a
line commented out while paused would stay off for good if the deploy died). Lines of
other shops are not touched. A line that runs ``cron:run`` but that a deploy cannot pause
(which shop's ``bin/magento`` it runs cannot be told: a variable, a relative path; it is
in ``/etc/crontab`` or ``/etc/cron.d``, which the deploy user cannot edit; cron would run
it with a shell that is not a POSIX sh) makes :func:`pause` refuse, before anything
changed, with the fix.

Running ``cron:run`` processes are waited for, never killed: a cron job killed half-way
(an indexer, an export) is worse than one finishing against the old schema, and the
maintenance window is already on. :func:`pause` reports, by PID, those still running
after ``wait_seconds``; the caller decides.
"""

from __future__ import annotations

import posixpath
import re
import shlex
import time
from dataclasses import dataclass, field

from fabric import task
from invoke import Context

from .consumers import Proc, scan
from .hosts import Host, StepFailed, q, say
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


# ------------------------------------------------------------- every line of this shop

POSIX_SHELLS = frozenset({"sh", "bash", "dash", "ksh", "mksh", "zsh", "ash", "posh", "yash"})
_ENTRY = re.compile(r"(\s*(?:@[A-Za-z]+|[0-9*]\S*(?:\s+\S+){4})\s+)(\S.*)")
_SYSTEM_ENTRY = re.compile(r"(\s*(?:@[A-Za-z]+|[0-9*]\S*(?:\s+\S+){4})\s+\S+\s+)(\S.*)")
_ENV = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*")
_OPERATOR = frozenset("();<>|&")
# Operators that do not end the command the flag test guards (pipes and redirections).
_IN_ONE_COMMAND = frozenset({"|", "|&", ">", ">>", "<", ">&", "<&", "&>", "&>>", ">|", "<>",
                             "<<<"})
_CD_OPTIONS = frozenset({"-L", "-P", "-e", "-@", "--"})
FILE_MARK = "#@fabric-magento-deploy file@ "  # separates the system crontabs in one read


def guard(settings: Settings) -> str:
    """What :func:`pause` puts in front of a line's command: while a pause is in force the
    shell exits before the command, whatever the command is (``;``, ``&&``, a comment)."""
    return f"{paused_test(settings)} && exit 0; "


@dataclass(frozen=True)
class CronLine:
    """A crontab line that runs this shop's ``cron:run`` (or might: ``problem`` says)."""

    where: str  # "crontab" (the deploy user's) or the system file it is in
    number: int  # 1-based
    text: str  # the line as written, without its newline
    head: str  # the schedule (and user), with the blank after it
    dirs: tuple[str, ...] = ()  # the directories whose bin/magento it runs
    guarded: bool = False  # it tests this shop's pause flag before it runs anything
    problem: str = ""  # why a deploy cannot pause it ('' when it can)
    fix: str = ""

    def describe(self) -> str:
        return f"{self.where} line {self.number}: {self.text.strip()}"


def _shell_part(command: str) -> str:
    """What cron gives the shell: up to the first unescaped ``%`` (the rest is stdin)."""
    out, i = [], 0
    while i < len(command):
        if command[i] == "\\" and command[i + 1:i + 2] == "%":
            out.append("%")
            i += 2
            continue
        if command[i] == "%":
            break
        out.append(command[i])
        i += 1
    return "".join(out)


def _words(text: str, *, nested: bool = True, depth: int = 0) -> list[str] | None:
    """Shell words and operators of ``text`` (None: quoting it cannot read). ``nested``:
    a word that is itself a command naming ``cron:run`` (``sh -c '...'``) is read too."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        words = list(lexer)
    except ValueError:
        return None
    out: list[str] = []
    for word in words:
        if nested and depth < 3 and CRON_RUN in word and any(c.isspace() for c in word):
            inner = _words(word, depth=depth + 1)
            if inner is None:
                return None
            out += inner
        else:
            out.append(word)
    return out


def _is_operator(word: str) -> bool:
    return bool(word) and set(word) <= _OPERATOR


def _path(base: str | None, path: str, home: str) -> str | None:
    """``path`` made absolute as the shell would (None: it cannot be told)."""
    if any(c in path for c in "$`*?[") or path == "-":
        return None
    if path == "~" or path.startswith("~/"):
        if not home:
            return None
        path = home + path[1:]
    elif path.startswith("~"):
        return None
    if not path.startswith("/"):
        if not base:
            return None
        path = posixpath.join(base, path)
    return posixpath.normpath(path)


def magento_dirs(words: list[str], home: str) -> tuple[str, ...] | None:
    """The directories whose ``bin/magento`` the words run, absolute; None when one of
    them cannot be told (a variable, a glob, a relative path from an unknown directory).
    Cron starts the command in ``home``; a ``cd`` before ``bin/magento`` counts."""
    cwd: str | None = home or None
    dirs = []
    for i, word in enumerate(words):
        if word == "cd":
            j = i + 1
            while j < len(words) and words[j] in _CD_OPTIONS:
                j += 1
            arg = words[j] if j < len(words) and not _is_operator(words[j]) else "~"
            cwd = _path(cwd, arg, home)
        elif word == "bin/magento" or word.endswith("/bin/magento"):
            path = _path(cwd, word, home)
            if path is None:
                return None
            dirs.append(posixpath.dirname(posixpath.dirname(path)))
    return tuple(dict.fromkeys(dirs)) or None


def is_guarded(command: str, settings: Settings) -> bool:
    """The command tests this shop's pause flag before anything else runs: :func:`guard`
    in front, or ``<test> || <one command>`` (our own line, the documented form)."""
    test = paused_test(settings)
    if command.startswith(guard(settings)):
        return True
    if not command.startswith(test + " || "):
        return False
    rest = _words(_shell_part(command[len(test) + 4:]), nested=False)
    return rest is not None and not any(
        _is_operator(w) and w not in _IN_ONE_COMMAND for w in rest)


def _fixes(where: str, settings: Settings) -> dict[str, str]:
    install = "`fab cron-install` (its line runs current, and a deploy pauses it)"
    if where == "crontab":
        return {"tell": f"name {settings.current}/bin/magento in it, or remove it "
                        f"(`crontab -e`) and run {install}",
                "shell": f"give it SHELL=/bin/sh (`crontab -e`), or remove it and run {install}"}
    return {"tell": f"remove it from {where} (as root) and run {install}",
            "edit": f"remove it from {where} (as root) and run {install}; or put "
                    f"`{guard(settings).strip()}` in front of its command",
            "shell": f"remove it from {where} (as root) and run {install}"}


def classify(text: str, settings: Settings, *, home: str = "", real: str = "",
             resolved: dict[str, str] | None = None, where: str = "crontab",
             all_shops: bool = False) -> list[CronLine]:
    """The lines of one crontab that run this shop's ``cron:run``, or might (pure).

    ``home``: where cron starts the deploy user's commands (a ``HOME=`` line in the crontab
    wins); ``real``: the deploy path with symlinks resolved; ``resolved``: directories
    named by lines, each with its symlinks resolved (see :func:`survey`). ``where`` other
    than "crontab" is a system crontab (a user field; the deploy user cannot edit it).
    A line is this shop's when a directory whose ``bin/magento`` it runs is, or resolves
    to, the deploy path or a path under it (``current``, ``releases/N``). ``all_shops``:
    every ``cron:run`` line, whoever's (:func:`survey` resolves the paths they name).
    """
    resolved = resolved or {}
    system = where != "crontab"
    roots = [r for r in dict.fromkeys((settings.deploy_path, real)) if r]
    fixes = _fixes(where, settings)
    shell, cwd = "/bin/sh", "" if system else home
    found = []

    def mine(path: str) -> bool:
        return any(p == r or p.startswith(r + "/") for p in (path, resolved.get(path, path))
                   for r in roots)

    for number, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        entry = (_SYSTEM_ENTRY if system else _ENTRY).fullmatch(line)
        if entry is None:
            env = _ENV.fullmatch(line)
            if env:
                value = env.group(2)
                if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                    value = value[1:-1]
                if env.group(1) == "SHELL":
                    shell = value
                elif env.group(1) == "HOME" and not system:
                    cwd = value
            continue
        head, command = entry.group(1), entry.group(2)
        if CRON_RUN not in command:
            continue
        words = _words(_shell_part(command))
        if words is not None and CRON_RUN not in words:
            continue  # sys:cron:run, setup:cron:run, a log file named cron:run...
        dirs = magento_dirs(words, cwd) if words is not None else None
        if dirs is not None and not all_shops and not any(mine(d) for d in dirs):
            continue  # another shop's
        row = CronLine(where, number, line, head, dirs or (),
                       guarded=is_guarded(command, settings))
        if posixpath.basename(shell) not in POSIX_SHELLS:
            found.append(_problem(row, f"cron runs it with SHELL={shell}, in which the "
                                       "pause test may not work", fixes["shell"]))
        elif row.guarded:
            found.append(row)
        elif dirs is None:
            found.append(_problem(row, "it runs cron:run, but which shop's bin/magento it "
                                       "runs cannot be told (a variable, a relative path, a "
                                       "glob or quoting)", fixes["tell"]))
        elif system:
            found.append(_problem(row, f"it is in {where}, which the deploy user cannot "
                                       "edit", fixes["edit"]))
        else:
            found.append(row)
    return found


def _problem(row: CronLine, problem: str, fix: str) -> CronLine:
    return CronLine(row.where, row.number, row.text, row.head, row.dirs, row.guarded,
                    problem, fix)


def guarded_crontab(text: str, lines: list[CronLine], settings: Settings) -> str:
    """``text`` with :func:`guard` in front of the command of each of ``lines`` (from
    :func:`classify` of this text); every other byte is kept."""
    rows = text.split("\n")
    for line in lines:
        row = rows[line.number - 1]
        assert row == line.text and row.startswith(line.head), (row, line)
        rows[line.number - 1] = line.head + guard(settings) + row[len(line.head):]
    out = "\n".join(rows)
    return out if not out or out.endswith("\n") else out + "\n"  # crontab wants the newline


@dataclass
class CronSurvey:
    """What :func:`survey` found on one host."""

    host: str
    crontab: str  # the deploy user's, as read ('' when there is none)
    lines: list[CronLine]  # every line that runs this shop's cron:run, or might
    roots: list[str]  # directories a cron:run process of this shop names

    @property
    def blocked(self) -> list[CronLine]:
        """Lines a deploy cannot pause."""
        return [line for line in self.lines if line.problem]

    @property
    def unguarded(self) -> list[CronLine]:
        """Lines of the deploy user's crontab a pause must guard first."""
        return [line for line in self.lines if not line.problem and not line.guarded]

    def refusal(self) -> str:
        """The blocked lines, each with why and the fix ('' when there is none)."""
        return "\n".join(f"[{self.host}] {line.describe()}\n    {line.problem}\n"
                         f"    fix: {line.fix}" for line in self.blocked)


# --------------------------------------------------------------------------- on a host


def read_crontab(host: Host, *, missing_ok: bool = False) -> str:
    """The deploy user's crontab ('' when there is none; with ``missing_ok`` also when
    the host has no ``crontab`` command or the user may not have a crontab)."""
    if not host.test("command -v crontab >/dev/null"):
        if missing_ok:
            return ""
        raise CronError(f"[{host.name}] no crontab command: install cron on this host")
    result = host.run("crontab -l", step="crontab -l", warn=True, echo=False)
    if result.ok:
        return result.stdout
    if "no crontab for" in result.stderr or (missing_ok and "not allowed" in result.stderr):
        return ""
    raise CronError(f"[{host.name}] crontab -l failed (exit {result.exited}): "
                    f"{result.stderr.strip()}")


def write_crontab(host: Host, text: str, why: str) -> None:
    result = host.run("crontab -", step="crontab -", stdin=text, warn=True, echo=False)
    if not result.ok:
        raise CronError(f"[{host.name}] `crontab -` failed (exit {result.exited}) {why}: "
                        f"{(result.stderr or result.stdout).strip()}")


# Read-only, one round trip: $HOME (where cron starts the user's commands), the deploy
# path resolved, then the system crontabs cron reads (Debian's cron skips names with a dot).
_FACTS = (
    'printf "%s\\n" "$HOME"; readlink -f -- "$1" || echo; '
    "deb=0; [ -e /etc/debian_version ] && deb=1; "
    "for f in /etc/crontab /etc/cron.d/*; do n=${f##*/}; "
    "case $n in .*|*~|*.rpmsave|*.rpmorig|*.rpmnew|*.dpkg-*|*.swp) continue;; esac; "
    'if [ $deb = 1 ] && [ "$f" != /etc/crontab ]; then case $n in *.*) continue;; esac; fi; '
    '[ -f "$f" ] && [ -r "$f" ] || continue; '
    f'printf "%s%s\\n" {q(FILE_MARK)} "$f"; cat -- "$f"; echo; done'
)


def host_facts(host: Host, settings: Settings) -> tuple[str, str, dict[str, str]]:
    """``$HOME``, the deploy path resolved, and each readable system crontab's text."""
    out = host.run(f"sh -c {q(_FACTS)} sh {q(settings.deploy_path)}", step="cron lines",
                   echo=False).stdout
    home, real, *rest = out.split("\n")
    files: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in rest:
        if line.startswith(FILE_MARK):
            current = files.setdefault(line[len(FILE_MARK):], [])
        elif current is not None:
            current.append(line)
    return home, real, {name: "\n".join(lines) for name, lines in files.items()}


def _resolve(host: Host, paths: list[str]) -> dict[str, str]:
    """Each path with its symlinks resolved (``readlink -m``: missing parts allowed)."""
    if not paths:
        return {}
    out = host.run("readlink -m -- " + " ".join(q(p) for p in paths), step="cron lines",
                   echo=False).stdout.split("\n")
    return {p: r for p, r in zip(paths, out, strict=False) if r}


def survey(host: Host, settings: Settings, text: str | None = None,
           facts: tuple[str, str, dict[str, str]] | None = None) -> CronSurvey:
    """Every crontab line on ``host`` that runs this shop's ``cron:run`` (read-only): the
    deploy user's crontab (or ``text`` in its place), ``/etc/crontab`` and
    ``/etc/cron.d``, paths through symlinks resolved on the host."""
    text = read_crontab(host, missing_ok=True) if text is None else text
    home, real, files = facts or host_facts(host, settings)
    sources = [("crontab", text), *files.items()]
    roots = [r for r in dict.fromkeys((settings.deploy_path, real)) if r]
    named = sorted({d for where, body in sources for line in classify(
        body, settings, home=home, where=where, all_shops=True) for d in line.dirs})
    resolved = _resolve(host, named)
    lines = [line for where, body in sources for line in classify(
        body, settings, home=home, real=real, resolved=resolved, where=where)]
    dirs = [p for line in lines for d in line.dirs for p in (d, resolved.get(d, d))]
    return CronSurvey(host.name, text, lines, list(dict.fromkeys(roots + dirs)))



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
    """Put our block in the deploy user's crontab on ``host``, and guard the other lines
    of this shop's ``cron:run`` (see :func:`pause`); written only if changed. The notes
    say what changed and which lines a deploy cannot pause."""
    existing = read_crontab(host)
    facts = host_facts(host, settings)
    php = php_command(host, settings)
    planned = plan(existing, settings, php=php, deploy_realpath=facts[1])
    look = survey(host, settings, planned.crontab, facts)
    text = guarded_crontab(planned.crontab, look.unguarded, settings)
    notes = list(planned.notes)
    ours = cron_line(settings, php)
    for line in look.lines:
        if line.where == "crontab" and line.text != ours and not line.problem:
            notes.append(f"{line.describe()}: also starts this shop's cron:run, besides our "
                         "line (remove one of them: `crontab -e`)"
                         + ("; guarded, so a deploy's pause covers it" if not line.guarded
                            else ""))
    notes += [f"a deploy cannot pause {line.describe()}: {line.problem}; fix: {line.fix}"
              for line in look.blocked]
    if text != existing:
        write_crontab(host, text, "while installing our line")
    return CronPlan(text, text != existing, tuple(notes))


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
    covered: int = 0  # crontab lines of this shop's cron:run the pause holds
    guarded: list[str] = field(default_factory=list)  # lines it guarded first, as they were

    def lines(self) -> list[str]:
        """Notes, in order; the last one is the warning about processes still running."""
        out = []
        if self.previous:
            out.append(f"[{self.host}] cron was already paused: {self.previous}")
        out += [f"[{self.host}] crontab: guarded (the flag test put in front; kept, it changes "
                f"nothing without a pause): {line.strip()}" for line in self.guarded]
        held = f", {self.covered} crontab line(s)" if self.covered else ""
        out.append(f"[{self.host}] cron paused (no new cron:run{held}) until {self.until} "
                   "at the latest")
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


def cron_processes(host: Host, settings: Settings, more: list[str] | None = None
                   ) -> list[CronProcess]:
    """This shop's ``cron:run`` processes; ``more``: other directories that count (a
    crontab line's path through a symlink)."""
    found = scan(host, settings)
    roots = [r for r in dict.fromkeys((settings.deploy_path, found.deploy_realpath,
                                       *(more or []))) if r]
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
    ``DEPLOY_TIMEOUT_UPGRADE`` + 10 min) even if :func:`resume` is never called.

    First every crontab line of this shop's ``cron:run`` that does not test the flag yet
    gets :func:`guard` (the crontab is written once, re-read, and must then be complete).
    A line that cannot be paused (:attr:`CronSurvey.blocked`) is refused before anything
    changes: :class:`CronError` with each line and its fix.
    """
    ttl = settings.timeout_upgrade + PAUSE_MARGIN if ttl_seconds is None else int(ttl_seconds)
    if ttl <= 0:
        raise SettingsError(f"cron pause TTL {ttl!r}: give a positive number of seconds")
    look = survey(host, settings)
    if look.blocked:
        raise CronError(f"cron:run that a deploy cannot pause; cron is NOT paused:\n"
                        f"{look.refusal()}")
    newly = look.unguarded
    if newly:
        write_crontab(host, guarded_crontab(look.crontab, newly, settings),
                      "while guarding this shop's cron:run lines; cron is NOT paused")
        look = survey(host, settings)
        if look.blocked or look.unguarded:
            raise CronError(f"[{host.name}] the crontab changed while a deploy guarded its "
                            "cron:run lines (someone edited it meanwhile?); cron is NOT "
                            f"paused:\n{look.refusal() or look.unguarded[0].describe()}")
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
    report = PauseReport(host.name, until, previous, covered=len(look.lines),
                         guarded=[line.text for line in newly])
    deadline = time.monotonic() + max(0.0, wait_seconds)
    started = time.monotonic()
    while True:
        report.still_running = cron_processes(host, settings, look.roots)
        if not report.still_running or time.monotonic() >= deadline:
            break
        time.sleep(min(POLL, max(0.0, deadline - time.monotonic())))
    report.waited = time.monotonic() - started
    return report


def resume(host: Host, settings: Settings) -> str:
    """Remove the pause flag; safe when cron is not paused. Returns one line to print;
    :class:`CronError` when the flag is still there afterwards (cron stays paused)."""
    flag = q(pause_file(settings))
    try:
        result = host.run(f"if [ -e {flag} ] || [ -L {flag} ]; then cat {flag} 2>/dev/null;"
                          f" echo; rm -f {flag} && echo removed; fi",
                          step="cron resume", warn=True, echo=False)
    except StepFailed as exc:  # timed out, or the host cannot be reached
        raise CronError(f"[{host.name}] cron could not be resumed: "
                        f"{str(exc).strip().splitlines()[0]}") from exc
    out = result.stdout.strip()
    if result.ok and not out:
        return f"[{host.name}] cron was not paused"
    if not result.ok or not out.endswith("removed"):
        said = (result.stderr or result.stdout).strip() or f"exit {result.exited}"
        raise CronError(f"[{host.name}] cron is still paused: {pause_file(settings)} could "
                        f"not be removed ({said})")
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
