"""``fab doctor``: a read-only health check of every host, before a deploy finds out.

A host set up wrongly (no ``env.php`` in ``shared/``, a socket the deploy user cannot
reach, a crontab pinned to one release, nginx handing PHP the symlinked path) otherwise
shows up in the middle of a deploy, or never: the shop just keeps serving old code. Each
check here is a small function returning :class:`Check` rows (host, check, status,
detail, fix); the task runs them on all hosts at once and prints one table. Errors make
the exit non-zero; warnings do not.

Nothing here changes a host: no ``mkdir``, no lock, no OPcache reset. The only file
written is the OPcache status probe's one-time script, which the deploy's own preflight
writes too, and which is removed at once (see :mod:`.opcache`).
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from fabric import task
from invoke import Context

from . import health, lock, magento, opcache, procs
from .build import static_version
from .cli import FleetTask, clean_errors, fleet_call, fleet_post
from .hosts import Host, StepFailed, distinct, on_all, q, say
from .preflight import CONFIG
from .redact import redact, split
from .release import live_release, new_release_id
from .settings import Settings
from .source import with_credentials

OK, WARN, ERROR, SKIPPED = "ok", "WARN", "ERROR", "skipped"
SEVERITY = {OK: 0, SKIPPED: 0, WARN: 1, ERROR: 2}


@dataclass(frozen=True)
class Check:
    """One row of the doctor's table: what was checked on which host, and what to do."""

    host: str
    name: str
    status: str  # OK | WARN | ERROR | SKIPPED
    detail: str
    fix: str = ""


class DoctorFailed(RuntimeError):
    """At least one check is an error: the deploy would fail or serve a broken shop."""


# -- ssh and the login user ------------------------------------------------------------------

def check_ssh(host: Host, settings: Settings) -> Check:
    """SSH works, and we are not root: the library refuses root (``preflight.judge``) because
    the release's files would belong to root and PHP-FPM could not write them."""
    try:
        host.open()
        user, uid = host.output("id -un; id -u", step="doctor").split()
    except (StepFailed, ValueError) as exc:
        return Check(host.name, "ssh", ERROR, _first_lines(str(exc), 3),
                     f"`ssh {host.key}` must log in without a prompt: key (IdentityFile), "
                     "known_hosts (or DEPLOY_HOST_KEYS), host name and port in ~/.ssh/config")
    if uid == "0":
        fix = ("connect as the deploy user that owns DEPLOY_PATH (User in ~/.ssh/config or "
               "user@host in DEPLOY_HOSTS)")
        if settings.allow_root:
            return Check(host.name, "ssh", WARN, "logged in as root (DEPLOY_ALLOW_ROOT=1): "
                         "releases will belong to root; PHP-FPM may not write var/", fix)
        return Check(host.name, "ssh", ERROR, "logged in as root: the deploy refuses root "
                     "(unless DEPLOY_ALLOW_ROOT=1)", fix)
    return Check(host.name, "ssh", OK, f"logged in as {user} (uid {uid})")


# -- DEPLOY_PATH: writable, and room for the next release -------------------------------------

def check_deploy_path(host: Host, settings: Settings) -> Check:
    """``DEPLOY_PATH`` (and ``releases/``, ``shared/`` if present) writable, or creatable."""
    path = settings.deploy_path
    out = host.output(
        f"p={q(path)}; while [ ! -e \"$p\" ]; do p=$(dirname \"$p\"); done; echo \"$p\";"
        f" for d in {q(path)} {q(settings.releases_dir)} {q(settings.shared_dir)}"
        f" {q(settings.current + '/')}; do"
        " if [ ! -e \"$d\" ]; then echo absent; elif [ -d \"$d\" ] && [ -w \"$d\" ];"
        " then echo writable; else echo readonly; fi; done", step="doctor")
    existing, *states = out.splitlines()
    user = host.output("id -un", step="doctor")
    names = [path, settings.releases_dir, settings.shared_dir, settings.current + "/"]
    if states[0] == "absent":
        if existing == "/" or not host.test(f"test -w {q(existing)}"):
            return Check(host.name, "deploy path", ERROR,
                         f"{path} does not exist and {existing} is not writable by {user}",
                         f"sudo mkdir -p {path} && sudo chown {user}: {path}")
        return Check(host.name, "deploy path", OK,
                     f"{path} does not exist yet; the first deploy creates it in {existing}")
    bad = [name for name, state in zip(names, states, strict=True) if state == "readonly"]
    if bad:
        return Check(host.name, "deploy path", ERROR,
                     f"not writable by {user}: {', '.join(bad)}",
                     f"sudo chown -R {user}: {path} (the deploy user must own DEPLOY_PATH)")
    return Check(host.name, "deploy path", OK, f"{path} is writable by {user}")


def disk_verdict(free_kb: int, release_kb: int | None) -> tuple[str, str]:
    """Status and detail for ``free_kb`` available next to a live release of ``release_kb``.

    A deploy writes a whole new release (code, generated/, pub/static) before the switch:
    less room than one release fails the build half-way; less than two leaves no margin
    for the release after (old ones are pruned only after the switch).
    """
    free = _size_kb(free_kb)
    if release_kb is None:
        return OK, f"{free} free (no live release to compare with)"
    size = _size_kb(release_kb)
    if free_kb < release_kb:
        return ERROR, f"{free} free, less than one release ({size}): the next build fails"
    if free_kb < 2 * release_kb:
        return WARN, f"{free} free, room for one release ({size}) but not two"
    return OK, f"{free} free, {free_kb // max(release_kb, 1)} releases of {size} fit"


def check_disk(host: Host, settings: Settings) -> Check:
    """Free space on DEPLOY_PATH's filesystem against the live release's size (``du``)."""
    out = host.output(
        f"p={q(settings.deploy_path)}; while [ ! -e \"$p\" ]; do p=$(dirname \"$p\"); done;"
        " df -Pk \"$p\" | awk 'NR==2 {print $4}';"
        f" if [ -d {q(settings.current)} ]; then"
        f" du -sk \"$(readlink -f {q(settings.current)})\" 2>/dev/null | cut -f1; fi",
        step="doctor")
    free, *size = out.split()
    status, detail = disk_verdict(int(free), int(size[0]) if size else None)
    fix = "" if status == OK else (f"free space on the filesystem of {settings.deploy_path}, "
                                   "or lower DEPLOY_KEEP_RELEASES (`fab prune-releases`)")
    return Check(host.name, "disk", status, detail, fix)


# -- PHP CLI and Composer --------------------------------------------------------------------

def check_php(host: Host, settings: Settings) -> Check:
    """The PHP CLI the build runs (``DEPLOY_PHP``)."""
    result = host.run(f"{settings.php} -r 'echo PHP_VERSION;'", step="doctor", warn=True,
                      echo=False)
    version = result.stdout.strip().splitlines()[-1:] if result.ok else []
    if not version or not re.fullmatch(r"\d+\.\d+\S*", version[0]):
        return Check(host.name, "php cli", ERROR,
                     f"DEPLOY_PHP={settings.php!r} does not run (exit {result.exited}): "
                     + _first_lines(result.stderr or result.stdout, 2),
                     "install the PHP CLI of the shop's version (php8.2-cli) or set DEPLOY_PHP "
                     "to its path")
    return Check(host.name, "php cli", OK, f"PHP {version[0]} ({settings.php})")


def check_composer(host: Host, settings: Settings) -> Check:
    """The Composer the build runs (``DEPLOY_COMPOSER``)."""
    result = host.run(f"{settings.composer} --version --no-interaction 2>&1", step="doctor",
                      warn=True, echo=False)
    found = re.search(r"Composer (?:version )?(\d+\.\d+\S*)", result.stdout)
    if result.failed or not found:
        return Check(host.name, "composer", ERROR,
                     f"DEPLOY_COMPOSER={settings.composer!r} does not run (exit "
                     f"{result.exited}): {_first_lines(result.stdout, 2)}",
                     "install Composer 2 (getcomposer.org) for the deploy user, or set "
                     "DEPLOY_COMPOSER to its path")
    return Check(host.name, "composer", OK, f"Composer {found[1]}")


# -- the repository ---------------------------------------------------------------------------

def check_repo(host: Host, settings: Settings) -> Check:
    """``git ls-remote`` from the host, with the credentials handled as the deploy does
    (:func:`.source.with_credentials`: on stdin, never in an argument or printed)."""
    if not settings.repo:
        return Check(host.name, "repository", ERROR, "DEPLOY_REPO is not set",
                     "set DEPLOY_REPO to the shop's git URL")
    url = split(settings.repo)[0]
    step = with_credentials(settings, "git ls-remote",
                            f"GIT_TERMINAL_PROMPT=0 git ls-remote {q(url)} {q(settings.branch)}")
    result = host.step(step, warn=True, echo=False, timeout=120)
    if result.failed:
        why = "git is not installed" if result.exited == 127 else redact(
            _first_lines(result.stderr or result.stdout, 3))
        return Check(host.name, "repository", ERROR, f"{url} not reachable: {why}",
                     f"the host must reach DEPLOY_REPO as the deploy user: a deploy key for "
                     f"ssh URLs, a token in an https URL; try `git ls-remote {url}` there")
    if not result.stdout.strip() and not re.fullmatch(r"[0-9a-f]{7,40}", settings.branch):
        return Check(host.name, "repository", ERROR,
                     f"{url} is reachable but has no branch or tag {settings.branch!r}",
                     "set DEPLOY_BRANCH to a branch or tag of DEPLOY_REPO")
    return Check(host.name, "repository", OK, f"{url} reachable, {settings.branch} found")


# -- shared files -----------------------------------------------------------------------------

def check_shared_files(host: Host, settings: Settings) -> list[Check]:
    """Every ``DEPLOY_SHARED_FILES`` entry in ``shared/``. A missing ``env.php`` stops the
    deploy (``preflight.judge``); another missing file is created empty by it."""
    if not settings.shared_files:
        return [Check(host.name, "shared files", OK, "DEPLOY_SHARED_FILES is empty")]
    paths = [posixpath.join(settings.shared_dir, f) for f in settings.shared_files]
    out = host.output("for f in " + " ".join(q(p) for p in paths) + "; do"
                      " if [ -s \"$f\" ]; then echo full; elif [ -e \"$f\" ]; then echo empty;"
                      " else echo missing; fi; done", step="doctor")
    rows = []
    for name, path, state in zip(settings.shared_files, paths, out.split(), strict=True):
        if state == "full":
            continue
        if name == CONFIG:
            rows.append(Check(host.name, "shared files", ERROR,
                              f"{path} is {state}: the deploy refuses to build without it",
                              f"copy the shop's env.php to {path} (it holds the database and "
                              "the crypt key; see docs/adopting.md)"))
        elif state == "missing":
            rows.append(Check(host.name, "shared files", WARN,
                              f"{path} is missing: the deploy will create it empty",
                              f"put the shop's {name} in {path}, or drop it from "
                              "DEPLOY_SHARED_FILES"))
    return rows or [Check(host.name, "shared files", OK,
                          f"present in shared/: {', '.join(settings.shared_files)}")]


# -- PHP-FPM and OPcache ----------------------------------------------------------------------

#: What to do for each failure :mod:`.opcache` names (docs/opcache.md, "Errors at a glance").
OPCACHE_FIXES = (
    ("no PHP-FPM socket found", "set DEPLOY_FPM_SOCKET to the shop's pool (its `listen`), or "
     "DEPLOY_OPCACHE=url or command"),
    ("several PHP-FPM sockets", "set DEPLOY_FPM_SOCKET to the pool(s) serving the shop"),
    ("no such socket", "start PHP-FPM, or set DEPLOY_FPM_SOCKET to the pool's `listen` path"),
    ("permission denied on the socket", "add the deploy user to the socket's group "
     "(listen.group) and set listen.mode = 0660 in the pool"),
    ("cannot connect", "is PHP-FPM listening there? DEPLOY_FPM_SOCKET = the pool's `listen`"),
    ("closed the connection", "let the host's own address in listen.allowed_clients"),
    ("did not answer", "the pool is busy or hung (pm.max_children?): see the FPM log"),
    ("cannot see", "PHP-FPM must see DEPLOY_PATH: no chroot, PrivateTmp or other namespace"),
    ("open_basedir", "add DEPLOY_PATH to the pool's open_basedir"),
    ("limit_extensions", "allow .php in security.limit_extensions"),
    ("OPcache is disabled", "enable OPcache in the pool, or DEPLOY_OPCACHE=none"),
    ("not loaded", "zend_extension=opcache in the pool's php.ini, or DEPLOY_OPCACHE=none"),
    ("restrict_api", "set opcache.restrict_api to a prefix of DEPLOY_PATH (or empty)"),
    ("cannot write the one-time script", "make DEPLOY_PATH (url: current/pub) writable by "
     "the deploy user"),
    ("did not run", "set DEPLOY_PHP to the PHP CLI on the host"),
    ("without running the script", "add the nginx location from docs/opcache.md (url)"),
    ("TLS refused", "a certificate valid for DEPLOY_OPCACHE_URL's host, or openssl.cafile"),
)


def opcache_fix(problem: str) -> str:
    for needle, fix in OPCACHE_FIXES:
        if needle in problem:
            return fix
    return "see docs/opcache.md"


def status_probe(host: Host, settings: Settings, mode: str, target: str) -> dict:
    """A status-only request through the deploy's own client (``fcgi`` or ``url``), never
    a reset: the pool's OPcache status plus its ini values. Raises :class:`OpcacheError`.

    The same one-time script and client the flush uses, so what works here works for the
    deploy; the script is removed by the client, the shell, and from here if unconfirmed.
    """
    return opcache.request(host, settings, mode, target, ("status",),
                           step="OPcache status")[0]["json"]


def ini_verdict(validate: str, freq: str) -> tuple[str, str, str]:
    """Status, detail and fix for ``opcache.validate_timestamps`` / ``revalidate_freq``."""
    if validate in ("", "0", "Off", "off"):
        return OK, "opcache.validate_timestamps=0 (the deploy's flush loads new code)", ""
    return (WARN, f"opcache.validate_timestamps=1, revalidate_freq={freq or '2'}: PHP stats "
            "every file it runs, and after a deploy may run stale code for up to "
            f"{freq or '2'} s per file",
            "production should use opcache.validate_timestamps=0 in the pool's php.ini "
            "(php_admin_value): the deploy flushes OPcache after every switch")


def check_opcache(host: Host, settings: Settings, cli_php: str = "") -> list[Check]:
    """PHP-FPM reachable through the chosen strategy, OPcache on, and its ini values."""
    try:
        strategy = opcache.choose(host, settings, probe=False)
        if strategy == "none":
            return [Check(host.name, "opcache", WARN, "DEPLOY_OPCACHE=none: deploys do not "
                          "flush OPcache; with validate_timestamps=0 PHP keeps the old release",
                          "DEPLOY_OPCACHE=fcgi (with DEPLOY_FPM_SOCKET), url or command; none "
                          "only when PHP runs without OPcache")]
        if strategy == "command":
            return [Check(host.name, "opcache", SKIPPED, "DEPLOY_OPCACHE=command resets "
                          "OPcache, so doctor does not run it; ini values unknown")]
        if strategy == "url":
            if not host.test(f"test -d {q(settings.current + '/pub')}"):
                return [Check(host.name, "opcache", SKIPPED, "DEPLOY_OPCACHE=url: no live "
                              "release yet, nothing to request through")]
            targets = [settings.opcache_url]
        else:
            targets = list(opcache._sockets(host, settings, "fcgi"))
        rows = []
        for target in targets:
            data = status_probe(host, settings, strategy, target)
            ini = data.get("ini", {})
            fpm_php = ini.get("php", "?")
            rows.append(Check(host.name, "php-fpm", OK,
                              f"{strategy} {target}: PHP {fpm_php}, OPcache on, "
                              f"{data.get('scripts')} scripts cached"))
            if cli_php and fpm_php != "?" and cli_php.split(".")[:2] != fpm_php.split(".")[:2]:
                rows[-1] = Check(host.name, "php-fpm", WARN,
                                 rows[-1].detail + f"; the CLI is PHP {cli_php}",
                                 "DEPLOY_PHP must be the PHP version FPM runs (composer "
                                 "installs for the CLI's version)")
            status, detail, fix = ini_verdict(str(ini.get("validate_timestamps", "")),
                                              str(ini.get("revalidate_freq", "")))
            rows.append(Check(host.name, "opcache settings", status, f"{target}: {detail}", fix))
        return rows
    except opcache.OpcacheError as exc:
        where = f" {exc.target}" if exc.target else ""
        return [Check(host.name, "php-fpm", ERROR, f"{exc.strategy}{where}: {exc.problem}",
                      opcache_fix(exc.problem))]


# -- nginx ------------------------------------------------------------------------------------

@dataclass
class Directive:
    """One nginx directive: ``name args...;`` or ``name args... { block }``."""

    name: str
    args: list[str]
    block: list[Directive] | None = None
    file: str = ""


def tokens(text: str) -> Iterator[str]:
    """nginx's tokens: words (quotes removed), ``{``, ``}`` and ``;``; comments dropped."""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c in "{};":
            yield c
            i += 1
        elif c in "\"'":
            j, word = i + 1, []
            while j < n and text[j] != c:
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                word.append(text[j])
                j += 1
            yield "".join(word)
            i = j + 1
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] not in "{};":
                j += 2 if text[j] == "\\" else 1
            yield text[i:j]
            i = j


def parse(text: str, file: str = "") -> list[Directive]:
    """The directives of one file (no include resolution: see :func:`expand`)."""
    stack: list[list[Directive]] = [[]]
    words: list[str] = []
    for tok in tokens(text):
        if tok == ";":
            if words:
                stack[-1].append(Directive(words[0], words[1:], None, file))
            words = []
        elif tok == "{":
            d = Directive(words[0] if words else "", words[1:], [], file)
            stack[-1].append(d)
            stack.append(d.block)  # type: ignore[arg-type]
            words = []
        elif tok == "}":
            if len(stack) > 1:
                stack.pop()
            words = []
        else:
            words.append(tok)
    return stack[0]


def expand(directives: list[Directive], files: dict[str, str], base: str,
           missing: set[str], depth: int = 0) -> list[Directive]:
    """Replace ``include`` by the directives of the files it names (globs, relative to the
    main file's directory), as nginx does; names not in ``files`` go to ``missing``."""
    out: list[Directive] = []
    for d in directives:
        if d.name == "include" and d.args and depth < 10:
            pattern = posixpath.join(base, d.args[0])
            names = sorted(f for f in files if fnmatch.fnmatchcase(f, pattern))
            if not names and not any(ch in pattern for ch in "*?["):
                missing.add(pattern)
            for name in names:
                out += expand(parse(files[name], name), files, base, missing, depth + 1)
        elif d.block is not None:
            out.append(Directive(d.name, d.args, expand(d.block, files, base, missing, depth),
                                 d.file))
        else:
            out.append(d)
    return out


def walk(directives: Iterable[Directive]) -> Iterator[Directive]:
    for d in directives:
        yield d
        if d.block:
            yield from walk(d.block)


def substitute(value: str, variables: dict[str, str]) -> str:
    """``$MAGE_ROOT/pub`` with ``set $MAGE_ROOT /srv/shop/current;`` -> the path."""
    return re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m[1], m[0]), value)


@dataclass
class Server:
    """A ``server`` block that serves DEPLOY_PATH, with what the checks need from it."""

    name: str
    roots: list[str]
    script_filenames: list[str] = field(default_factory=list)
    static_rules: list[tuple[str, str]] = field(default_factory=list)
    directives: list[Directive] = field(default_factory=list, repr=False)  # all, walked


def shop_servers(tree: list[Directive], deploy_path: str) -> list[Server]:
    """The ``server`` blocks whose ``root`` lies under ``DEPLOY_PATH``."""
    found = []
    for server in (d for d in walk(tree) if d.name == "server" and d.block is not None):
        inner = list(walk(server.block or []))
        variables = {d.args[0].lstrip("$"): d.args[1] for d in inner
                     if d.name == "set" and len(d.args) == 2}
        roots = [posixpath.normpath(substitute(d.args[0], variables)) for d in inner
                 if d.name == "root" and d.args]
        roots = [r for r in roots if r == deploy_path or r.startswith(deploy_path + "/")]
        if not roots:
            continue
        names = next((d.args for d in inner if d.name == "server_name"), []) or ["_"]
        listen = next((d.args[0] for d in inner if d.name == "listen" and d.args), "80")
        found.append(Server(
            f"{' '.join(names)} ({listen})", roots,
            [d.args[1] for d in inner if d.name == "fastcgi_param" and len(d.args) > 1
             and d.args[0] == "SCRIPT_FILENAME"],
            [rule for d in inner for rule in _static_patterns(d)], inner))
    return found


def _static_patterns(d: Directive) -> list[tuple[str, str]]:
    """``(regex, replacement)`` of a ``rewrite`` of ``/static/version...`` URLs."""
    if d.name == "rewrite" and len(d.args) > 1 and "static" in d.args[0] \
            and "version" in d.args[0]:
        return [(d.args[0], d.args[1])]
    return []


def rewrite(pattern: str, replacement: str, path: str) -> str | None:
    """What nginx's ``rewrite pattern replacement`` makes of ``path`` (None: no match, or
    a PCRE that Python cannot compile)."""
    try:
        found = re.search(re.sub(r"\(\?<(?=[A-Za-z_])", "(?P<", pattern), path)
    except re.error:
        return None
    if found is None:
        return None
    return re.sub(r"\$(\d)", lambda m: found.group(int(m[1])) or ""
                  if int(m[1]) <= (found.re.groups) else "", replacement)


def strips(rule: tuple[str, str], path: str, version: str) -> bool:
    """Does ``rule`` map the versioned ``path`` to the file on disk, without the signature?
    (Magento's fallback to ``static.php`` does not count: it answers 404 in production.)"""
    result = rewrite(*rule, path)
    return result is not None and f"version{version}" not in result and ".php" not in result


def nginx_checks(host: str, servers: list[Server], settings: Settings,
                 version: str) -> list[Check]:
    """Root, SCRIPT_FILENAME and static signature of the shop's server blocks (pure)."""
    rows: list[Check] = []
    good = {settings.current, settings.current + "/pub"}
    wrong = sorted({r for s in servers for r in s.roots if r not in good})
    names = "; ".join(s.name for s in servers)
    if wrong:
        pinned = any(r.startswith(settings.releases_dir + "/") for r in wrong)
        rows.append(Check(host, "nginx root", ERROR,
                          f"root {', '.join(wrong)}" + (" is pinned to one release: a switch "
                                                        "changes nothing" if pinned else ""),
                          f"root {settings.current}/pub; (nginx follows `current`), then "
                          "reload nginx"))
    else:
        rows.append(Check(host, "nginx root", OK, f"{names}: root "
                          f"{', '.join(sorted({r for s in servers for r in s.roots}))}"))
    values = sorted({v for s in servers for v in s.script_filenames})
    stale = [v for v in values if "$realpath_root" not in v]
    fix = ("fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name; and "
           "fastcgi_param DOCUMENT_ROOT $realpath_root; in the PHP locations "
           "(docs/opcache.md), then reload nginx")
    if not values:
        rows.append(Check(host, "nginx php path", WARN, "no fastcgi_param SCRIPT_FILENAME in "
                          "the shop's server block: cannot tell what path PHP-FPM gets", fix))
    elif stale:
        rows.append(Check(host, "nginx php path", WARN,
                          f"SCRIPT_FILENAME {', '.join(stale)}: PHP-FPM gets the path through "
                          "the `current` symlink and its workers keep the old release's "
                          "files cached until OPcache is reset", fix))
    else:
        rows.append(Check(host, "nginx php path", OK, f"SCRIPT_FILENAME {', '.join(values)}"))
    sample = f"/static/version{version}/frontend/Magento/luma/en_US/css/styles-m.css"
    rules = sorted({p for s in servers for p in s.static_rules})
    good = [rule for rule in rules if strips(rule, sample, version)]
    if good:
        rows.append(Check(host, "nginx static", OK, f"rewrite {' '.join(good[0])} strips the "
                          f"signature version{version}"))
    elif rules:
        rows.append(Check(host, "nginx static", ERROR,
                          f"no rewrite ({', '.join(r[0] for r in rules)}) strips version"
                          f"{version} from {sample}: every versioned CSS/JS URL goes to "
                          "static.php, which answers 404 in production",
                          r"rewrite ^/static/version\d*/(.*)$ /static/$1 last; (Magento's "
                          "nginx.conf.sample) in location /static/"))
    else:
        rows.append(Check(host, "nginx static", WARN,
                          "no rewrite strips the static signature (/static/version<N>/): "
                          "unless dev/static/sign is 0, CSS/JS URLs answer 404",
                          r"location ~ ^/static/version\d*/ { rewrite ^/static/version\d*/"
                          r"(.*)$ /static/$1 last; } (Magento's nginx.conf.sample)"))
    return rows


def read_config(host: Host, conf: str,
                step: str = "doctor") -> tuple[dict[str, str], set[str]]:
    """Every file of nginx config ``conf``: ``nginx -T`` when the deploy user may run it,
    else by reading the files and their ``include``s; plus the ones we could not read."""
    dump = host.run(f"PATH=\"$PATH:/usr/sbin:/sbin\" nginx -q -T -c {q(conf)} 2>/dev/null",
                    step=step, warn=True, echo=False)
    if dump.ok and "# configuration file " in dump.stdout:
        return split_dump(dump.stdout, "# configuration file "), set()
    files: dict[str, str] = {}
    unreadable: set[str] = set()
    pending, base = [conf], posixpath.dirname(conf)
    for _ in range(6):  # include depth
        if not pending:
            break
        got, missing_now = read_files(host, pending, step)
        unreadable |= missing_now
        files.update(got)
        missing: set[str] = set()
        for text in got.values():
            for d in walk(parse(text)):
                if d.name == "include" and d.args:
                    missing.add(posixpath.join(base, d.args[0]))
        pending = sorted(p for p in missing if p not in files
                         and not any(fnmatch.fnmatchcase(f, p) for f in files)
                         and p not in unreadable)
    return files, unreadable


def read_files(host: Host, patterns: list[str],
               step: str = "doctor") -> tuple[dict[str, str], set[str]]:
    """The files matching shell globs ``patterns`` (each up to 1 MB), read in one round trip
    as the login user: ``{path: text}``, and the ones missing or not readable."""
    mark = f"#doctor-{secrets.token_hex(6)} "
    out = host.run("IFS=; for pat in " + " ".join(q(p) for p in patterns) + "; do"
                   " for f in $pat; do if [ -f \"$f\" ] && [ -r \"$f\" ]; then"
                   f" printf '\\n%s%s:\\n' {q(mark)} \"$f\"; head -c 1000000 -- \"$f\";"
                   f" else printf '\\n%s%s:UNREADABLE\\n' {q(mark)} \"$f\"; fi;"
                   " done; done", step=step, warn=True, echo=False).stdout
    got = split_dump(out, mark)
    return ({p: t for p, t in got.items() if not p.endswith(":UNREADABLE")},
            {p.removesuffix(":UNREADABLE") for p in got if p.endswith(":UNREADABLE")})


def split_dump(text: str, mark: str) -> dict[str, str]:
    """``{path: text}`` from ``nginx -T`` style output (``<mark>/path:`` headers)."""
    files: dict[str, str] = {}
    parts = re.split(rf"^{re.escape(mark)}(.+?):(UNREADABLE)?$", text, flags=re.M)
    for i in range(1, len(parts) - 2, 3):
        name = parts[i] + (":UNREADABLE" if parts[i + 1] else "")
        files[name] = parts[i + 2]
    return files


def listen_address(arg: str) -> str:
    """The address part of a ``listen`` directive's first argument (pure): ``*`` for a
    wildcard (``80``, ``*:80``), ``unix:/path`` as it is, else the address or host name
    (:func:`.procs.normal`: ``[::]:80`` -> ``::``)."""
    if arg.startswith("unix:"):
        return arg
    if arg.startswith("["):
        return procs.normal(arg[1:].split("]")[0])
    if re.fullmatch(r"\d+", arg):
        return "*"
    host, sep, port = arg.rpartition(":")
    return procs.normal(host if sep and re.fullmatch(r"\d+", port) else arg)


def listen_addresses(tree: list[Directive]) -> list[str]:
    """Where the ``server`` blocks of a configuration listen (pure), each address once;
    a server without ``listen`` listens on ``*:80`` (nginx's default)."""
    found: list[str] = []
    for server in (d for d in walk(tree) if d.name == "server" and d.block is not None):
        listens = [d.args[0] for d in server.block or [] if d.name == "listen" and d.args]
        for address in [listen_address(a) for a in listens] or ["*"]:
            if address not in found:
                found.append(address)
    return found


@dataclass
class NginxConfig:
    """One nginx of this host: its main file, its directives (includes expanded) and the
    addresses its servers listen on."""

    conf: str
    tree: list[Directive]
    listens: list[str]


@dataclass
class HostNginx:
    """The nginx configurations serving this host (:func:`host_nginx`), and why others
    were left out or could not be read."""

    configs: list[NginxConfig] = field(default_factory=list)
    unreadable: set[str] = field(default_factory=set)  # files, includes among them
    left_out: list[str] = field(default_factory=list)  # why, one each
    problem: str = ""  # nothing at all to read

    def why_none(self, path: str) -> str:
        """Why no server block with its root under ``path`` was found (for SKIPPED)."""
        if self.problem:
            why = self.problem
        elif self.configs:
            why = (f"no server block in {', '.join(c.conf for c in self.configs)} has its "
                   f"root under {path}")
        elif self.unreadable:
            why = "cannot read the configuration of this host's nginx"
        else:
            why = "no nginx of this host found"
        if self.unreadable:
            why += f" (not readable: {', '.join(sorted(self.unreadable))})"
        if self.left_out:
            why += "; not this host's: " + "; ".join(self.left_out)
        return why


def host_nginx(host: Host, step: str = "doctor") -> HostNginx:
    """The configurations of the nginx masters serving ``host``, never another host's.

    A machine may run several hosts side by side (containers, test rigs), sharing one
    process table: masters of another mount namespace are left out
    (:func:`.procs.nginx_masters`), then those whose every ``listen`` names an address
    that is not this host's (:func:`.procs.is_local`: not a wildcard, loopback, the
    address SSH arrived at or an interface address). With no master of this host,
    ``/etc/nginx/nginx.conf`` is read (nginx stopped, or processes hidden).
    """
    out = host.run(f"{procs.NGINX_PS}; {procs.ADDRESSES}", step=step, warn=True,
                   echo=False).stdout
    confs, foreign = procs.nginx_masters(procs.parse_ps(out))
    addresses = procs.parse_addresses(out)
    found = HostNginx()
    if foreign:
        found.left_out.append(f"{len(foreign)} nginx of other mount namespaces (containers, "
                              f"other hosts on this machine): {', '.join(foreign)}")
    if not confs:
        if not host.test("test -r /etc/nginx/nginx.conf"):
            found.problem = (f"no nginx {'of this host ' if foreign else ''}running and "
                             "/etc/nginx/nginx.conf not readable (another web server?)")
            return found
        confs = ["/etc/nginx/nginx.conf"]
    for conf in confs:
        files, missing = read_config(host, conf, step)
        if conf not in files:
            found.unreadable.add(conf)
            continue
        unresolved: set[str] = set()
        tree = expand(parse(files[conf], conf), files, posixpath.dirname(conf), unresolved)
        found.unreadable |= missing | unresolved
        listens = listen_addresses(tree)
        if listens and not any(procs.is_local(a, addresses) is not False for a in listens):
            found.left_out.append(
                f"{conf} listens on {', '.join(listens)}, none an address of this host "
                f"({', '.join(sorted(addresses.local))})")
            continue
        found.configs.append(NginxConfig(conf, tree, listens))
    return found


def check_nginx(host: Host, settings: Settings) -> list[Check]:
    """The web server as the shop sees it; ``skipped`` (with why) when not readable or
    not this host's (:func:`host_nginx`). Each nginx serving the shop is checked on its
    own, its rows naming its configuration file when there are several."""
    found = host_nginx(host)
    shops = [(c.conf, servers) for c in found.configs
             if (servers := shop_servers(c.tree, settings.deploy_path))]
    if not shops:
        return [Check(host.name, "nginx", SKIPPED, found.why_none(settings.deploy_path))]
    version = static_version(live_release(host, settings) or new_release_id())
    rows: list[Check] = []
    for conf, servers in shops:
        checks = nginx_checks(host.name, servers, settings, version)
        if len(found.configs) > 1:
            checks = [replace(c, detail=f"{conf}: {c.detail}") for c in checks]
        rows += checks
    return rows


# -- cron -------------------------------------------------------------------------------------

def cron_verdict(exit_code: int, text: str, settings: Settings, user: str,
                 unpausable: list[tuple[str, str]] | None = None) -> Check:
    """The deploy user's crontab: ``cron:run`` must run ``current``'s code, not a release
    (``bin/magento cron:install`` writes the physical release path). ``unpausable``: lines
    running this shop's ``cron:run`` that a deploy cannot pause (:func:`cron.survey`),
    each as (what and why, fix): a schema deploy refuses to start while there is one."""
    wanted = (f"* * * * * {settings.php} {settings.current}/bin/magento cron:run 2>&1 | grep -v "
              f"\"Ran jobs by schedule\" >> {settings.current}/var/log/magento.cron.log")
    if unpausable:
        more = f" (and {len(unpausable) - 1} more)" if len(unpausable) > 1 else ""
        return Check("", "cron", ERROR, f"cron:run that a deploy cannot pause: "
                     f"{unpausable[0][0]}{more}; a schema deploy refuses to start",
                     unpausable[0][1])
    if exit_code == 127 or "command not found" in text:
        return Check("", "cron", SKIPPED, "crontab is not installed on the host")
    if exit_code != 0:
        return Check("", "cron", WARN, f"no crontab for {user}: Magento's cron (indexers, "
                     "e-mails, consumers) does not run from this host", f"`crontab -e`: {wanted}")
    lines = [ln for ln in text.splitlines() if "cron:run" in ln and not ln.lstrip().startswith("#")]
    if not lines:
        return Check("", "cron", WARN, f"the crontab of {user} has no bin/magento cron:run",
                     f"`crontab -e`: {wanted}")
    pinned = sorted({m for ln in lines for m in re.findall(
        rf"{re.escape(settings.releases_dir)}/[^/\s'\"]+", ln)})
    if pinned:
        return Check("", "cron", ERROR, f"cron:run names {', '.join(pinned)}: pinned to one "
                     "release (cron:install writes the physical path), it keeps running old "
                     "code and breaks when that release is pruned",
                     f"replace the #~ MAGENTO block (`crontab -e`) with: {wanted}")
    if not all(settings.current + "/" in ln for ln in lines):
        return Check("", "cron", WARN, "cron:run does not name "
                     f"{settings.current}/bin/magento: {_first_lines(lines[0], 1)}",
                     f"`crontab -e`: {wanted}")
    return Check("", "cron", OK, f"cron:run runs {settings.current}/bin/magento")


def check_cron(host: Host, settings: Settings) -> Check:
    """:func:`cron_verdict` of the deploy user's crontab, with the lines of this shop's
    ``cron:run`` (there, in /etc/crontab or /etc/cron.d) that a deploy cannot pause."""
    from . import cron  # (a deploy pauses cron with it; same lines, same verdict)

    result = host.run("crontab -l", step="doctor", warn=True, echo=False)
    user = host.output("id -un", step="doctor")
    try:
        unpausable = [(f"{line.describe()} ({line.problem})", line.fix)
                      for line in cron.survey(host, settings).blocked]
    except cron.CronError as exc:
        unpausable = [(f"{exc} (a deploy cannot tell what cron runs)",
                       "make `crontab -l` work for the deploy user")]
    row = cron_verdict(result.exited, result.stdout + result.stderr, settings, user, unpausable)
    return Check(host.name, row.name, row.status, row.detail, row.fix)


# -- the deploy lock --------------------------------------------------------------------------

def check_lock(host: Host, settings: Settings) -> Check:
    """A lock left by a crashed deploy stops the next one: say who holds it, since when."""
    info = lock.read(host, settings)
    if info is None:
        return Check(host.name, "deploy lock", OK, "no deploy lock")
    return Check(host.name, "deploy lock", WARN,
                 lock.describe(host.name, settings, info).removeprefix(f"[{host.name}] "),
                 f"if nobody is deploying: fab unlock --hosts={host.name}")


# -- one host, all hosts, the table -----------------------------------------------------------

def guarded(host: Host, name: str, fn: Callable[[], Check | list[Check]]) -> list[Check]:
    """One check; a failure of the check itself is an error row, the others still run."""
    try:
        found = fn()
    except (StepFailed, RuntimeError, LookupError, OSError, ValueError) as exc:
        return [Check(host.name, name, ERROR, _first_lines(redact(str(exc)), 3),
                      "see the message; fix it and run fab doctor again")]
    return found if isinstance(found, list) else [found]


def check_storefront(host: Host, settings: Settings) -> Check:
    """The deploy's own storefront check (:func:`health.prepare`) asked of the live shop:
    where the host's web server is found, and whether the live shop passes. If it does
    not, every deploy would stop before building (the check would revert anything)."""
    if not settings.health_paths:
        return Check(host.name, "storefront", SKIPPED, "DEPLOY_HEALTH_PATHS=none: no check")
    live = live_release(host, settings)
    if not live:
        return Check(host.name, "storefront", SKIPPED, "nothing live yet: checked after the "
                     "first switch")
    held = {host.name} if magento.maintenance_owner(host, settings, live) is not None else set()
    try:
        plan = health.prepare([host], host, health.HealthParams.from_settings(settings),
                              settings.release_dir(live), probe_live={host.name},
                              maintenance=held)
    except health.HealthRefused as exc:
        what, fix = exc.fixes[0] if exc.fixes else (str(exc), "")
        return Check(host.name, "storefront", ERROR, _first_lines(what, 3),
                     fix or "see docs/health.md")
    target = plan.targets[host.name]
    where = f"{target.url} via {target.address or 'its name'}"
    if host.name in plan.broken:
        return Check(host.name, "storefront", ERROR, f"the LIVE shop answers errors: "
                     f"{plan.broken[host.name]}", "fix the shop (a deploy goes on, as it may be "
                     "the fix, but a failing check after it cannot revert to this release)")
    if host.name in plan.skipped:
        return Check(host.name, "storefront", WARN, f"{where}: {plan.skipped[host.name]}",
                     "deploys go on, without the storefront check on this host")
    times = [a.seconds for p in plan.live[host.name].paths.values() for a in p.answers if a.ok]
    return Check(host.name, "storefront", OK, f"{where}: {', '.join(settings.health_paths)} "
                 f"answer 2xx (slowest {max(times, default=0):.2f} s)")


def check_host(host: Host, settings: Settings) -> list[Check]:
    """Every check on one host, in a fixed order; nothing else once SSH fails."""
    ssh = check_ssh(host, settings)
    if ssh.status == ERROR and not ssh.detail.startswith("logged in"):
        return [ssh]
    rows = [ssh]
    for name, fn in (("deploy path", check_deploy_path), ("disk", check_disk),
                     ("php cli", check_php), ("composer", check_composer),
                     ("repository", check_repo), ("shared files", check_shared_files)):
        rows += guarded(host, name, lambda fn=fn: fn(host, settings))
    cli = next((r.detail.split()[1] for r in rows if r.name == "php cli" and r.status == OK), "")
    rows += guarded(host, "php-fpm", lambda: check_opcache(host, settings, cli))
    rows += guarded(host, "nginx", lambda: check_nginx(host, settings))
    rows += guarded(host, "cron", lambda: check_cron(host, settings))
    rows += guarded(host, "deploy lock", lambda: check_lock(host, settings))
    rows += guarded(host, "storefront", lambda: check_storefront(host, settings))
    return rows


def diagnose(hosts: list[Host], settings: Settings) -> list[Check]:
    """Every check on every host at once; rows in host order."""
    hosts = distinct(hosts, settings)
    results = on_all(hosts, lambda h: check_host(h, settings))
    rows: list[Check] = []
    for host in hosts:
        found = results[host.name]
        if isinstance(found, BaseException):
            rows.append(Check(host.name, "doctor", ERROR, redact(f"{type(found).__name__}: "
                              f"{found}"), "a bug in fab doctor: please report it"))
        else:
            rows += found
    return rows


def table(rows: list[Check]) -> str:
    """The report: one line per check, the fix indented under every problem."""
    widths = [max([len(r.host) for r in rows] + [4]), max([len(r.name) for r in rows] + [5])]
    status_width = max(len(s) for s in SEVERITY)
    lines = [f"{'HOST':<{widths[0]}}  {'CHECK':<{widths[1]}}  {'STATUS':<{status_width}}  "
             "DETAIL"]
    for r in rows:
        lines.append(f"{r.host:<{widths[0]}}  {r.name:<{widths[1]}}  "
                     f"{r.status:<{status_width}}  {r.detail}")
        if r.fix and r.status in (WARN, ERROR):
            lines.append(" " * (widths[0] + widths[1] + status_width + 6) + f"fix: {r.fix}")
    return "\n".join(lines)


def verdict(rows: list[Check]) -> str:
    count = {s: sum(r.status == s for r in rows) for s in SEVERITY}
    hosts = len(dict.fromkeys(r.host for r in rows))
    return (f"doctor: {hosts} host(s), {len(rows)} checks: {count[OK]} ok, {count[WARN]} "
            f"warning(s), {count[ERROR]} error(s), {count[SKIPPED]} skipped")


def run_doctor(hosts: list[Host], settings: Settings, options: dict[str, Any]) -> None:
    rows = diagnose(hosts, settings)
    say(table(rows))
    say(verdict(rows))
    errors = [r for r in rows if r.status == ERROR]
    if errors:
        raise DoctorFailed(f"{len(errors)} check(s) failed: "
                           + ", ".join(f"{r.host} {r.name}" for r in errors))


@task
@clean_errors
def _doctor_collected(c: Context) -> None:
    fleet_post(c, "doctor", run_doctor)


@task(klass=FleetTask, post=[_doctor_collected])
@clean_errors
def doctor(c: Context) -> None:
    """Check every host before a deploy, changing nothing; exit 1 if any check is an error.

    Per host: SSH and a non-root login; DEPLOY_PATH writable and disk room for two
    releases; PHP CLI and Composer; DEPLOY_REPO reachable (git ls-remote); shared files
    (app/etc/env.php); PHP-FPM reached the way the OPcache flush will be, OPcache's
    validate_timestamps; nginx's root, SCRIPT_FILENAME ($realpath_root) and static
    signature rule; the crontab's cron:run path; a deploy lock left behind. One table,
    a fix under every problem. Warnings do not change the exit code.
    """
    fleet_call(doctor, c, "doctor", run_doctor, quiet=True)


def _first_lines(text: str, n: int) -> str:
    return " / ".join(line.strip() for line in text.strip().splitlines()[:n] if line.strip())


def _size_kb(kb: int) -> str:
    for unit, scale in (("GiB", 1 << 20), ("MiB", 1 << 10)):
        if kb >= scale:
            return f"{kb / scale:.1f} {unit}"
    return f"{kb} KiB"


__all__ = ["doctor", "diagnose", "Check", "DoctorFailed", "table"]
