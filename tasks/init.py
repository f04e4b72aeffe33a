"""``fab init``: look at hosts that already run a shop and write the ``.env`` for them.

Given hosts and a path, each fact is found by a read-only probe in pyinfra's shape: a
shell command and a pure parser (tested without SSH), or an existing probe of the
library reused as it is:

* the layout at the path (:func:`layout_command`, :func:`parse_layout`): a release layout
  (``current`` -> ``releases/<id>``, ours, Capistrano's or Deployer's), a plain directory
  to adopt, or nothing yet; and in the Magento root, the links into ``shared/``
  (:func:`root_command`, :func:`parse_root`) and what ``shared/`` holds
  (:func:`shared_command`, :func:`parse_shared`);
* the repository (:func:`git_command`, :func:`parse_git`): ``origin`` of a checkout or of
  the git mirror a deploy tool keeps, and the branch;
* PHP and Composer (:data:`PHP_PROBE`, :func:`composer_command`);
* PHP-FPM (:data:`FPM_PS`, :func:`parse_fpm_processes`, :func:`parse_fpm_config`): the
  running masters of this host (:mod:`.procs`: this mount namespace), their pools,
  ``listen`` and ``user``; and
  :func:`.opcache.discover_sockets` (the deploy's own socket globs);
* nginx (:func:`.doctor.host_nginx`: the running masters of this host, by mount namespace
  and listen address, their configuration, the server blocks whose root is the shop)
  and which socket it passes PHP to (:func:`fastcgi_targets`);
* the base URL (:mod:`.shopurl`: ``bin/magento config:show``) and where each host
  listens for it (:data:`.shopurl.LISTENERS`, :func:`.shopurl.plan`, as the deploy's
  health check does);
* the crontab (:func:`.cron.read_crontab`, :func:`classify_cron`);
* the Magento version (:func:`version_command`, :func:`parse_version`) and so whether
  blue/green is possible (:data:`.bluegreen.SINCE`).

:func:`discover` runs them on every host at once and returns :class:`Findings`;
:func:`plan_env` decides each setting from them (pure), :func:`render_env` writes the
commented ``.env`` text and :func:`summary` what was found, where hosts differ and what
could not be decided. Nothing is written on a host: no file, no lock, no OPcache request.
"""

from __future__ import annotations

import json
import posixpath
import re
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from . import bluegreen, cron, opcache, procs, shopurl
from .doctor import (
    Directive,
    Server,
    host_nginx,
    read_files,
    shop_servers,
    walk,
)
from .hosts import Host, StepFailed, on_all, q
from .redact import register, split
from .release import ReleaseRecord
from .settings import DEFAULTS, PER_RELEASE, Settings, SettingsError, _shared

T = TypeVar("T")

RELEASES, CURRENT_DIR, NO_LIVE, PLAIN, EMPTY, MISSING = (
    "release layout", "current is a directory", "layout without a live release",
    "plain directory", "empty", "missing")
OURS, CAPISTRANO, DEPLOYER = "fabric-magento-deploy", "Capistrano", "Deployer"

DEFAULT_DIRS = tuple(DEFAULTS["DEPLOY_SHARED_DIRS"].split())
DEFAULT_FILES = tuple(DEFAULTS["DEPLOY_SHARED_FILES"].split())
#: Directories other tools share (docs/adopting.md), looked for in ``shared/``.
KNOWN_DIRS = DEFAULT_DIRS + ("pub/sitemaps", "var/composer_home", "var/importexport",
                             "var/import_history", "var/tmp")
KNOWN_FILES = DEFAULT_FILES + ("var/.maintenance.ip",)
#: Big trees of a release that hold no links into shared/: not searched.
PRUNE = ("vendor", "generated", "pub/static", "var/cache", "var/page_cache",
         "var/view_preprocessed", ".git", "node_modules", "dev", "setup", "update")
LAYOUT_NAMES = ("current", "releases", "shared", "repo.git", "history", "repo",
                "revisions.log", ".dep", "bin/magento", "app/etc", "../bin/magento",
                "../releases")


# -- the layout at the path -----------------------------------------------------------------------

@dataclass(frozen=True)
class Layout:
    """What lies at the path given to ``fab init`` on one host."""

    kind: str  # RELEASES | CURRENT_DIR | NO_LIVE | PLAIN | EMPTY | MISSING
    deploy_path: str  # DEPLOY_PATH it means (the parent when given .../current)
    root: str = ""  # the Magento root to ask: DEPLOY_PATH/current or the plain directory
    live: str = ""  # the release current points at
    detail: str = ""  # one line: what was found
    tool: str = ""  # OURS | CAPISTRANO | DEPLOYER | ""
    real_path: str = ""  # deploy_path with links resolved
    owner: str = ""  # owner of the path
    problems: tuple[str, ...] = ()


def layout_command(path: str) -> str:
    """What exists at ``path``: ``real``, ``owner``, then one line per name of
    :data:`LAYOUT_NAMES` that exists (``L name<TAB>link<TAB>resolved``, ``D name``, ``F name``)."""
    names = " ".join(q(n) for n in LAYOUT_NAMES)
    return (f"p={q(path)}; if [ ! -e \"$p\" ]; then echo missing; exit 0; fi;"
            " echo \"real $(readlink -f -- \"$p\")\"; echo \"owner $(stat -c %U -- \"$p\")\";"
            " if [ -L \"$p\" ]; then printf 'self\\t%s\\t%s\\n' \"$(readlink -- \"$p\")\""
            " \"$(readlink -f -- \"$p\")\"; fi;"
            f" for n in {names}; do f=\"$p/$n\"; if [ -L \"$f\" ]; then"
            " printf 'L %s\\t%s\\t%s\\n' \"$n\" \"$(readlink -- \"$f\")\""
            " \"$(readlink -f -- \"$f\")\";"
            " elif [ -d \"$f\" ]; then echo \"D $n\"; elif [ -e \"$f\" ]; then echo \"F $n\"; fi;"
            " done; true")


def _entries(text: str) -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    values: dict[str, str] = {}
    found: dict[str, tuple[str, ...]] = {}
    for line in text.splitlines():
        if line.startswith(("L ", "D ", "F ")):
            kind, _, rest = line.partition(" ")
            name, *link = rest.split("\t")
            found[name] = (kind, *link)
        elif line.startswith("self\t"):
            found["."] = ("L", *line.split("\t")[1:])
        elif " " in line:
            key, _, value = line.partition(" ")
            values[key] = value
    return values, found


def parse_layout(text: str, path: str) -> Layout:
    """The output of :func:`layout_command` for ``path`` (pure)."""
    if text.strip() == "missing":
        return Layout(MISSING, path, detail=f"{path} does not exist")
    values, e = _entries(text)
    real, owner = values.get("real", path), values.get("owner", "")
    tool = (OURS if "repo.git" in e or "history" in e else CAPISTRANO
            if "revisions.log" in e or "repo" in e else DEPLOYER if ".dep" in e else "")
    made = f", made by {tool}" if tool else ""
    base = {"real_path": real, "owner": owner, "tool": tool}
    current = e.get("current", ())
    if current[:1] == ("L",):
        target, resolved = (list(current[1:]) + ["", ""])[:2]
        live = posixpath.basename(resolved.rstrip("/"))
        parent = posixpath.dirname(posixpath.normpath(target))
        inside = parent in ("releases", f"{path}/releases") or \
            posixpath.dirname(resolved) == f"{real}/releases"
        problems = () if inside else (
            f"{path}/current points at {target}, outside {path}/releases/: the deploy refuses "
            "it; move that release into releases/ and point current at it (docs/adopting.md)",)
        return Layout(RELEASES, path, f"{path}/current", live if inside else "",
                      f"{path}/current -> {target} (a release layout{made})", problems=problems,
                      **base)
    if current[:1] == ("D",):
        return Layout(CURRENT_DIR, path, f"{path}/current", "",
                      f"{path}/current is a directory, not a link{made}",
                      problems=(f"{path}/current is a directory: the deploy needs a symlink "
                                f"into releases/: `mv {path}/current {path}/releases/legacy && "
                                f"ln -s releases/legacy {path}/current` (docs/adopting.md)",),
                      **base)
    if "bin/magento" in e and "app/etc" in e:
        if posixpath.basename(path) == "current" and e.get(".", ())[:1] == ("L",) \
                and "../releases" in e:
            parent = posixpath.dirname(path)
            live = posixpath.basename(e["."][2].rstrip("/")) if len(e["."]) > 2 else ""
            return Layout(RELEASES, parent, path, live,
                          f"{path} -> {e['.'][1]}: you gave the current link, the deploy path "
                          f"is {parent} (a release layout)", real_path=posixpath.dirname(real),
                          owner=owner, tool=tool)
        return Layout(PLAIN, path, path, "", f"{path} is a Magento root updated in place "
                      "(a plain directory, not a release layout)", **base)
    if posixpath.basename(path) == "pub" and "../bin/magento" in e:
        root = posixpath.dirname(path)
        return Layout(PLAIN, root, root, "", f"{path} is the document root of the Magento "
                      f"root {root} (a plain directory, not a release layout)",
                      real_path=posixpath.dirname(real), owner=owner, tool=tool)
    if "releases" in e or "shared" in e:
        have = " and ".join(n + "/" for n in ("releases", "shared") if n in e)
        return Layout(NO_LIVE, path, detail=f"{path} has {have} but no current yet{made}",
                      **base)
    return Layout(EMPTY, path, detail=f"{path} exists, without a shop in it", **base)


# -- the Magento root: links into shared/, data directories ---------------------------------------

@dataclass(frozen=True)
class RootFacts:
    """The Magento root: its physical path, what it links into ``shared/``, and the data
    directories and files it holds itself (a plain directory's)."""

    physical: str
    shared_dirs: tuple[str, ...] = ()  # linked to shared/<same path>, a directory
    shared_files: tuple[str, ...] = ()
    data: tuple[str, ...] = ()  # known shared entries present as real dirs/files
    magento: bool = False
    git: bool = False
    problems: tuple[str, ...] = ()


def root_command(root: str) -> str:
    """Links under ``root`` (``L path<TAB>target<TAB>type``, big build trees skipped) and
    the known shared entries present as real directories (``D``) or files (``F``)."""
    prune = " -o ".join(f"-path ./{d}" for d in PRUNE)
    known = " ".join(q(d) for d in (*KNOWN_DIRS, *KNOWN_FILES))
    return (f"cd {q(root)} 2>/dev/null || exit 0; echo \"phys $(pwd -P)\";"
            f" find . -maxdepth 4 \\( {prune} \\) -prune -o -type l"
            " -printf 'L %P\\t%l\\t%Y\\n' 2>/dev/null | head -n 500;"
            f" for d in {known}; do if [ -L \"$d\" ]; then :; elif [ -d \"$d\" ]; then"
            " echo \"D $d\"; elif [ -f \"$d\" ]; then echo \"F $d\"; fi; done;"
            " if [ -f bin/magento ]; then echo magento; fi; if [ -e .git ]; then echo git; fi;"
            " true")


def parse_root(text: str, deploy_path: str, real_path: str = "") -> RootFacts:
    """The output of :func:`root_command` (pure). A link counts as shared when it points
    at ``shared/<its own path>`` (relative or absolute, through a linked deploy path)."""
    physical, dirs, files, data, problems = "", [], [], [], []
    magento = git = False
    shared_roots = {f"{p}/shared" for p in (deploy_path, real_path) if p}
    for line in text.splitlines():
        if line.startswith("phys "):
            physical = line[5:]
        elif line.startswith("L "):
            rel, _, rest = line[2:].partition("\t")
            target, _, kind = rest.partition("\t")
            where = target if target.startswith("/") else posixpath.normpath(
                posixpath.join(physical, posixpath.dirname(rel), target))
            inside = next((where[len(s) + 1:] for s in shared_roots
                           if where.startswith(s + "/")), None)
            if inside is None:
                continue
            if inside != rel:
                problems.append(f"{rel} links to shared/{inside}, the deploy links "
                                f"shared/{rel}: move the data there first")
            elif kind == "d":
                dirs.append(rel)
            elif kind == "f":
                files.append(rel)
            else:
                problems.append(f"{rel} links to shared/{rel}, which does not exist")
        elif line.startswith(("D ", "F ")):
            data.append(line[2:])
        elif line == "magento":
            magento = True
        elif line == "git":
            git = True
    return RootFacts(physical, tuple(dirs), tuple(files), tuple(data), magento, git,
                     tuple(problems))


def shared_command(shared_dir: str) -> str:
    """What ``shared/`` holds, three levels deep (``S path<TAB>type``)."""
    return (f"find {q(shared_dir)} -mindepth 1 -maxdepth 3 -printf 'S %P\\t%y\\n' 2>/dev/null"
            " | head -n 3000; true")


@dataclass(frozen=True)
class SharedListing:
    dirs: tuple[str, ...] = ()  # known shared directories present
    files: tuple[str, ...] = ()  # known shared files present
    other: tuple[str, ...] = ()  # entries none of the known ones explains


def parse_shared(text: str, linked: Iterable[str] = ()) -> SharedListing:
    """The output of :func:`shared_command` (pure). ``linked``: entries the live release
    links, which explain their part of the tree too."""
    entries = {}
    for line in text.splitlines():
        if line.startswith("S "):
            rel, _, kind = line[2:].partition("\t")
            entries[rel] = kind
    dirs = tuple(d for d in KNOWN_DIRS if entries.get(d) == "d")
    files = tuple(f for f in KNOWN_FILES if entries.get(f) == "f")
    explained = (*dirs, *files, *linked)
    other = tuple(rel for rel in entries if not any(
        _inside(rel, k) or _inside(k, rel) for k in explained)
        and rel.count("/") < 2)
    return SharedListing(dirs, files, tuple(sorted(other)))


def _inside(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent + "/")


# -- the repository -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Repo:
    url: str = ""  # without credentials
    has_credentials: bool = False
    source: str = ""  # where it was found
    branch: str = ""
    branch_source: str = ""
    problems: tuple[str, ...] = ()


def git_places(root: str, deploy_path: str) -> list[tuple[str, str, str]]:
    """(label, git dir, file that must exist there) in the order they are believed."""
    return [(f"the git checkout {root}", root, ".git"),
            (f"the bare mirror {deploy_path}/repo.git ({OURS})", f"{deploy_path}/repo.git", "HEAD"),
            (f"Capistrano's mirror {deploy_path}/repo", f"{deploy_path}/repo", "HEAD"),
            (f"Deployer's mirror {deploy_path}/.dep/repo", f"{deploy_path}/.dep/repo", "HEAD")]


def git_command(root: str, deploy_path: str, live: str = "") -> str:
    """``origin`` and branch of each place of :func:`git_places` (``O``/``E``/``B n<TAB>...``),
    the last lines of Capistrano's and Deployer's logs, and the live release's record."""
    parts = []
    for n, (_, where, mark) in enumerate(git_places(root, deploy_path) if root else
                                         git_places("", deploy_path)[1:], start=0 if root else 1):
        g = q(where)
        parts.append(f"if [ -e {q(where + '/' + mark)} ]; then"
                     f" if u=$(git -C {g} remote get-url origin 2>&1); then printf 'O {n}\\t%s\\n'"
                     f" \"$u\"; else printf 'E {n}\\t%s\\n' \"$(echo \"$u\" | head -n 1)\"; fi;"
                     f" b=$(git -C {g} symbolic-ref --short -q HEAD 2>/dev/null) &&"
                     f" printf 'B {n}\\t%s\\n' \"$b\"; fi")
    parts.append(f"tail -n 1 {q(deploy_path + '/revisions.log')} 2>/dev/null | sed 's/^/C /'")
    parts.append(f"tail -n 1 {q(deploy_path + '/.dep/releases_log')} 2>/dev/null | sed 's/^/J /'")
    if live:
        parts.append(f"printf 'R %s\\n' \"$(cat {q(f'{deploy_path}/history/{live}.json')}"
                     " 2>/dev/null | tr '\\n' ' ')\"")
    return "; ".join(parts) + "; true"


def parse_git(text: str, root: str, deploy_path: str, live: str = "") -> Repo:
    """The output of :func:`git_command` (pure). Credentials in an origin URL are never
    kept: the URL without them (:func:`.redact.split`), and a flag."""
    places = git_places(root, deploy_path)
    origins: dict[int, str] = {}
    branches: dict[int, str] = {}
    problems = []
    extra: dict[str, str] = {}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        if kind in ("O", "E", "B"):
            n, _, value = rest.partition("\t")
            if not n.isdigit():
                continue
            if kind == "O" and value.strip():
                origins[int(n)] = value.strip()
            elif kind == "E":
                problems.append(f"{places[int(n)][1]}: git remote get-url origin: {value}")
            elif kind == "B":
                branches[int(n)] = value.strip()
        elif kind in ("C", "J", "R"):
            extra[kind] = rest
    if not origins:
        return Repo(problems=tuple(problems))
    n = min(origins)
    register(origins[n])  # masked in anything printed from here on
    url, header = split(origins[n])
    branch, why = "", ""
    if n == 0 and 0 in branches:
        branch, why = branches[0], f"the branch checked out in {root}"
    elif n == 1 and live and "R" in extra:
        try:
            ref = ReleaseRecord.from_json(extra["R"]).ref
        except (ValueError, TypeError):
            ref = ""
        if ref:
            branch, why = ref, f"the ref of the live release's record (history/{live}.json)"
    elif "C" in extra and (m := re.search(r"Branch (\S+) \(at", extra["C"])):
        branch, why = m[1], f"the last line of {deploy_path}/revisions.log"
    elif "J" in extra:
        try:
            target = json.loads(extra["J"]).get("target", "")
        except (ValueError, AttributeError):
            target = ""
        if target:
            branch, why = str(target), f"the last entry of {deploy_path}/.dep/releases_log"
    return Repo(url, bool(header), f"origin of {places[n][0]}", branch, why, tuple(problems))


# -- PHP, Composer --------------------------------------------------------------------------------

#: Every PHP CLI on the PATH and in the usual places: ``P command<TAB>path<TAB>version``.
PHP_PROBE = (
    "for c in php $(ls /usr/bin /usr/local/bin 2>/dev/null | grep -E '^php[0-9][0-9.]*$'"
    " | sort -u); do p=$(command -v \"$c\" 2>/dev/null) || continue;"
    " v=$(\"$c\" -r 'echo PHP_VERSION;' 2>/dev/null) || continue;"
    " printf 'P %s\\t%s\\t%s\\n' \"$c\" \"$p\" \"$v\"; done; true"
)


def parse_php(text: str) -> dict[str, tuple[str, str]]:
    """``{command: (path, version)}`` from :data:`PHP_PROBE` (pure)."""
    found = {}
    for line in text.splitlines():
        if line.startswith("P "):
            parts = line[2:].split("\t")
            if len(parts) == 3 and re.fullmatch(r"\d+\.\d+\S*", parts[2].strip()):
                found[parts[0]] = (parts[1], parts[2].strip())
    return found


def _xy(version: str) -> str:
    return ".".join(version.split(".")[:2])


def decide_php(found: dict[str, tuple[str, str]], fpm: str) -> tuple[str, str]:
    """``(DEPLOY_PHP, why)``: ``php`` when it is PHP-FPM's version (or FPM is unknown),
    else ``php<X.Y>`` of FPM's version; ``""`` when nothing fits (pure)."""
    php = found.get("php")
    if php and (not fpm or _xy(php[1]) == fpm):
        return "php", f"`php` is PHP {php[1]}" + (f", the version PHP-FPM runs ({fpm})"
                                                     if fpm else "")
    exact = f"php{fpm}" if fpm else ""
    if exact in found:
        was = f"`php` is PHP {php[1]}" if php else "there is no `php` on the PATH"
        return exact, (f"{was}; PHP-FPM runs {fpm}: {exact} ({found[exact][0]}) is PHP "
                       f"{found[exact][1]}")
    if php:
        return "php", (f"`php` is PHP {php[1]} but PHP-FPM runs {fpm} and no php{fpm} was "
                       "found: Composer installs for the CLI's version")
    if len(found) == 1:
        cmd, (path, version) = next(iter(found.items()))
        return cmd, f"no `php` on the PATH; {cmd} ({path}, PHP {version}) is the only PHP CLI"
    return "", ("no PHP CLI found" if not found else
                "no `php` on the PATH; several: " + ", ".join(
                    f"{c} ({v})" for c, (_, v) in found.items()))


COMPOSER_VERSION = re.compile(r"Composer (?:version )?(\d+\.\d+\S*)")


def composer_command(php: str, root: str) -> str:
    """The first Composer that answers ``--version`` (``C command<TAB>first line``)."""
    names = ["composer", "composer2", "$HOME/bin/composer", "$HOME/.local/bin/composer",
             "/usr/local/bin/composer"]
    phars = ([f"{root}/composer.phar"] if root else []) + ["$HOME/composer.phar"]
    parts = [f"for c in {' '.join(n if n.startswith('$') else q(n) for n in names)}; do"
             " command -v \"$c\" >/dev/null 2>&1 || continue;"
             " v=$(\"$c\" --version --no-interaction 2>/dev/null | grep Composer | head -n 1)"
             " && [ -n \"$v\" ] && { printf 'C %s\\t%s\\n' \"$c\" \"$v\"; exit 0; }; done"]
    for phar in phars:
        path = phar if phar.startswith("$") else q(phar)
        parts.append(f"if [ -f \"{path}\" ]; then v=$({php} \"{path}\" --version --no-interaction"
                     " 2>/dev/null | grep Composer | head -n 1) && [ -n \"$v\" ] &&"
                     f" {{ printf 'C %s\\t%s\\n' \"{php} {path}\" \"$v\"; exit 0; }}; fi")
    return "; ".join(parts) + "; true"


def parse_composer(text: str) -> tuple[str, str]:
    """``(command, version)`` from :func:`composer_command`; ``("", "")`` if none (pure)."""
    for line in text.splitlines():
        if line.startswith("C "):
            command, _, first = line[2:].partition("\t")
            found = COMPOSER_VERSION.search(first)
            if found:
                return command, found[1]
    return "", ""


# -- PHP-FPM --------------------------------------------------------------------------------------

#: The php-fpm processes (:func:`.procs.ps_command`), with their mount namespace.
FPM_PS = procs.FPM_PS


@dataclass(frozen=True)
class FpmMaster:
    """A running PHP-FPM master of this host: its config file, version and pools (name ->
    users its workers run as)."""

    pid: str
    conf: str
    version: str  # X.Y, "" if unknown
    pools: dict[str, tuple[str, ...]] = field(default_factory=dict)


def parse_fpm_processes(text: str) -> list[FpmMaster]:
    """The masters of :data:`FPM_PS` that run on this host, with their pools (pure).

    A master of another mount namespace (a container, another host on this machine) is
    not this host's: :meth:`.procs.Listing.ours`, which reads the namespace from
    ``mountinfo`` (readable by the deploy user even for root's masters and for workers
    that changed user, where ``/proc/PID/ns/mnt`` is not)."""
    listing = procs.parse_ps(text)
    found = []
    for master in listing.masters("php-fpm: master process"):
        conf = re.match(r"php-fpm: master process \((.+)\)", master.args.strip())
        if conf is None or not listing.ours(master):
            continue
        version = re.search(r"php-fpm(\d+\.\d+)", master.comm) or re.search(
            r"/php/?(\d+\.\d+)/", conf[1])
        pools: dict[str, set[str]] = {}
        for proc in listing.procs:
            pool = re.match(r"php-fpm: pool (\S+)", proc.args.strip())
            if pool and proc.ppid == master.pid:
                pools.setdefault(pool[1], set()).add(proc.user)
        found.append(FpmMaster(master.pid, conf[1], version[1] if version else "",
                               {n: tuple(sorted(u)) for n, u in sorted(pools.items())}))
    return found


def parse_fpm_config(text: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    """One php-fpm ini file (pure): its ``include`` globs and ``{pool: {key: value}}``,
    ``$pool`` expanded."""
    section, includes = "", []
    pools: dict[str, dict[str, str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in ";#":
            continue
        header = re.fullmatch(r"\[(.+)\]", line)
        if header:
            section = header[1].strip()
            continue
        key, sep, value = line.partition("=")
        if not sep:
            continue
        key, value = key.strip(), value.split(";")[0].strip().strip("\"'")
        if key == "include":
            includes.append(value)
        elif section and section != "global":
            pools.setdefault(section, {})[key] = value.replace("$pool", section)
    return includes, pools


def fpm_socket(listen: str) -> str:
    """A pool's ``listen`` as ``DEPLOY_FPM_SOCKET`` takes it (pure): a unix path, or
    ``host:port`` to connect to (``9000`` and ``0.0.0.0:9000`` -> ``127.0.0.1:9000``)."""
    listen = listen.strip()
    if listen.startswith("/"):
        return listen
    if re.fullmatch(r"\d+", listen):
        return f"127.0.0.1:{listen}"
    host, _, port = listen.rpartition(":")
    return f"{shopurl.WILDCARDS.get(host.strip('[]'), host)}:{port}" \
        if host.strip("[]") in shopurl.WILDCARDS else listen


def fastcgi_targets(tree: list[Directive], server: Server) -> tuple[
        list[str], list[str]]:
    """Where a shop's server block passes PHP (pure): sockets (``fastcgi_pass``, through an
    ``upstream`` of the same configuration), and the values that could not be resolved."""
    upstreams = {d.args[0]: [s.args[0] for s in (d.block or []) if s.name == "server" and s.args]
                 for d in walk(tree) if d.name == "upstream" and d.args}
    sockets: list[str] = []
    unresolved: list[str] = []
    for d in server.directives:
        if d.name != "fastcgi_pass" or not d.args:
            continue
        value = d.args[0]
        for target in upstreams.get(value, [value]):
            if target.startswith("unix:"):
                sockets.append(target[5:])
            elif "$" in target or target in upstreams or not re.search(r":\d+$", target):
                unresolved.append(target)
            else:
                sockets.append(fpm_socket(target))
    return list(dict.fromkeys(sockets)), list(dict.fromkeys(unresolved))


# -- nginx ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ShopServer:
    """A server block whose root is the shop."""

    name: str  # server names (first listen)
    roots: tuple[str, ...]
    listens: tuple[str, ...]
    sockets: tuple[str, ...]
    unresolved: tuple[str, ...] = ()


@dataclass(frozen=True)
class WebFacts:
    confs: tuple[str, ...] = ()
    servers: tuple[ShopServer, ...] = ()
    problem: str = ""  # why no server block was found

    @property
    def sockets(self) -> list[str]:
        return list(dict.fromkeys(s for server in self.servers for s in server.sockets))


def shop_web_servers(tree: list[Directive], shop_path: str) -> list[ShopServer]:
    """The server blocks whose root lies under ``shop_path`` (pure)."""
    found = []
    for server in shop_servers(tree, shop_path):
        sockets, unresolved = fastcgi_targets(tree, server)
        listens = tuple(" ".join(d.args) for d in server.directives
                        if d.name == "listen" and d.args)
        found.append(ShopServer(server.name, tuple(server.roots), listens, tuple(sockets),
                                tuple(unresolved)))
    return found


def inspect_nginx(host: Host, shop_path: str) -> WebFacts:
    """The configuration of this host's nginx (never another host's on the same machine),
    read as :func:`.doctor.check_nginx` does (:func:`.doctor.host_nginx`)."""
    found = host_nginx(host, "init")
    servers = [s for c in found.configs for s in shop_web_servers(c.tree, shop_path)]
    return WebFacts(tuple(c.conf for c in found.configs), tuple(servers),
                    "" if servers else found.why_none(shop_path))


# -- Magento: version, base URL -------------------------------------------------------------------

def version_command(php: str, root: str) -> str:
    """``bin/magento --version`` (``V ...``), and the edition's version in composer.lock."""
    return (f"cd {q(root)} || exit 0; printf 'V %s\\n' \"$({php} bin/magento --version 2>&1"
            " | head -n 3 | tr '\\n' ' ')\"; grep -A 3 -E"
            " '\"name\": \"magento/(product-(community|enterprise)-edition|magento2-base)\"'"
            " composer.lock 2>/dev/null | sed 's/^/L /' | head -n 20; true")


def parse_version(text: str) -> tuple[str, str]:
    """``(version, where from)`` from :func:`version_command` (pure); ``("", "")`` if none."""
    for line in text.splitlines():
        if line.startswith("V ") and (v := bluegreen.parse_version(line)):
            full = re.search(r"\b\d+\.\d+\.\d+(-p\d+)?", line)
            return (full[0] if full else ".".join(map(str, v))), "bin/magento --version"
    lock = "\n".join(line[2:] for line in text.splitlines() if line.startswith("L "))
    found = re.search(r'"version":\s*"v?(\d+\.\d+\.\d+[^"]*)"', lock)
    return (found[1], "composer.lock") if found else ("", "")


def blue_green_possible(version: str) -> bool | None:
    parsed = bluegreen.parse_version(version)
    return None if parsed is None else parsed >= bluegreen.SINCE


# -- cron -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CronLine:
    line: str
    kind: str  # ours | current | pinned | plain | other
    detail: str


def classify_cron(text: str, deploy_path: str, real_path: str = "",
                  root: str = "") -> list[CronLine]:
    """The crontab's ``cron:run`` lines, each with what it runs (pure)."""
    settings = Settings(deploy_path=deploy_path)
    begin, end = cron.begin_marker(settings), cron.end_marker(settings)
    paths = [p for p in dict.fromkeys((deploy_path, real_path)) if p]
    found, ours, magento_block = [], False, False
    for raw in text.splitlines():
        line = raw.strip()
        if line == begin:
            ours = True
            continue
        if line == end:
            ours = False
            continue
        if line.startswith("#~ MAGENTO START"):
            magento_block = True
        elif line.startswith("#~ MAGENTO END"):
            magento_block = False
        if not line or line.startswith("#") or cron.CRON_RUN not in line:
            continue
        pinned = next((m for p in paths for m in re.findall(
            rf"{re.escape(p)}/releases/([^/\s'\"]+)", line)), None)
        if ours:
            found.append(CronLine(line, "ours", "fab cron-install's line, on current"))
        elif pinned:
            how = " (written by bin/magento cron:install)" if magento_block else ""
            found.append(CronLine(line, "pinned", f"pinned to releases/{pinned}{how}: it keeps "
                                  "running that release after the next switch"))
        elif any(f"{p}/current/" in line for p in paths):
            found.append(CronLine(line, "current", "on current"))
        elif root and f"{root}/bin/magento" in line:
            found.append(CronLine(line, "plain", f"on the plain directory {root}"))
        else:
            found.append(CronLine(line, "other", "runs another path"))
    return found


# -- one host -------------------------------------------------------------------------------------

@dataclass
class HostFindings:
    """Everything found on one host; ``notes`` are problems seen, ``errors`` probes that
    could not run."""

    name: str
    entry: str  # as in DEPLOY_HOSTS
    user: str = ""
    layout: Layout | None = None
    root: RootFacts | None = None
    shared: SharedListing | None = None
    repo: Repo = field(default_factory=Repo)
    php: dict[str, tuple[str, str]] = field(default_factory=dict)
    php_command: str = ""
    php_why: str = ""
    composer: tuple[str, str] = ("", "")
    fpm: list[FpmMaster] = field(default_factory=list)
    pools: dict[str, dict[str, str]] = field(default_factory=dict)
    fpm_version: str = ""
    sockets: list[str] = field(default_factory=list)
    sockets_why: str = ""
    socket_access: dict[str, bool] = field(default_factory=dict)
    pool_user: str = ""
    web: WebFacts | None = None
    magento_version: str = ""
    version_source: str = ""
    base_url: str = ""
    base_url_error: str = ""
    target: str = ""  # where this host's web server answers for the base URL
    target_error: str = ""
    cron: list[CronLine] | None = None
    cron_error: str = ""
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class Findings:
    """What :func:`discover` found on every host, and how the hosts were given."""

    path: str
    hosts: list[HostFindings]
    hosts_from: str = "--hosts"
    when: str = ""
    unreachable: dict[str, str] = field(default_factory=dict)

    @property
    def deploy_path(self) -> str:
        paths = [h.layout.deploy_path for h in self.hosts if h.layout and h.layout.kind in (
            RELEASES, CURRENT_DIR, NO_LIVE)]
        return paths[0] if paths else self.path


def _attempt(found: HostFindings, what: str, probe: Callable[[], T]) -> T | None:
    """One probe; a failure is written down, the other probes still run."""
    try:
        return probe()
    except (StepFailed, RuntimeError, LookupError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        found.errors.append(f"{what}: {first}")
        return None


def inspect(host: Host, path: str, entry: str) -> HostFindings:
    """Every probe on one host, read-only. Raises :class:`.hosts.StepFailed` only when SSH
    itself fails."""
    host.open()
    found = HostFindings(host.name, entry)
    found.user = host.output("id -un", step="init")
    layout = parse_layout(host.output(layout_command(path), step="init"), path)
    found.layout = layout
    found.notes += layout.problems
    deploy_path, real = layout.deploy_path, layout.real_path or layout.deploy_path
    if found.user == "root":
        owner = f" ({layout.owner} owns {path})" if layout.owner else ""
        found.notes.append("logged in as root: the deploy refuses root; connect as the deploy "
                           f"user{owner}")
    elif layout.owner and layout.owner != found.user and layout.kind != MISSING:
        found.notes.append(f"{path} belongs to {layout.owner}, not to {found.user} (the login "
                           "user): the deploy user must own DEPLOY_PATH")
    if layout.root:
        found.root = _attempt(found, "links into shared/", lambda: parse_root(
            host.output(root_command(layout.root), step="init"), deploy_path, real))
        if found.root:
            found.notes += found.root.problems
    if layout.kind in (RELEASES, CURRENT_DIR, NO_LIVE):
        linked = (found.root.shared_dirs + found.root.shared_files) if found.root else ()
        found.shared = _attempt(found, "shared/", lambda: parse_shared(
            host.output(shared_command(f"{deploy_path}/shared"), step="init"), linked))
    found.repo = _attempt(found, "git", lambda: parse_git(
        host.output(git_command(layout.root if found.root and found.root.git else "",
                                deploy_path, layout.live), step="init"),
        layout.root if found.root and found.root.git else "", deploy_path, layout.live)
    ) or Repo()
    found.php = _attempt(found, "PHP", lambda: parse_php(host.output(PHP_PROBE, step="init"))) or {}
    _inspect_fpm(host, found)
    shop_path = deploy_path if layout.kind in (RELEASES, CURRENT_DIR, NO_LIVE) else (
        layout.root or path)
    found.web = _attempt(found, "nginx", lambda: inspect_nginx(host, shop_path))
    _decide_sockets(host, found)
    found.php_command, found.php_why = decide_php(found.php, found.fpm_version)
    php = found.php_command or "php"
    found.composer = _attempt(found, "Composer", lambda: parse_composer(
        host.output(composer_command(php, layout.root), step="init"))) or ("", "")
    if layout.root and found.root and found.root.magento:
        _inspect_magento(host, found, php)
    _inspect_cron(host, found, deploy_path, real)
    return found


def _inspect_fpm(host: Host, found: HostFindings) -> None:
    masters = _attempt(found, "PHP-FPM processes", lambda: parse_fpm_processes(
        host.run(FPM_PS, step="init", warn=True, echo=False).stdout)) or []
    found.fpm = masters
    if not masters:
        return
    files = _attempt(found, "PHP-FPM configuration", lambda: _read_fpm_configs(
        host, [m.conf for m in masters])) or {}
    for text in files.values():
        found.pools.update(parse_fpm_config(text)[1])
    versions = {m.version for m in masters if m.version}
    found.fpm_version = next(iter(versions)) if len(versions) == 1 else ""


def _read_fpm_configs(host: Host, confs: list[str]) -> dict[str, str]:
    files, _ = read_files(host, confs, step="init")
    pending = [posixpath.join(posixpath.dirname(conf), inc) for conf, text in files.items()
               for inc in parse_fpm_config(text)[0]]
    if pending:
        more, _ = read_files(host, pending, step="init")
        files.update(more)
    return files


def _decide_sockets(host: Host, found: HostFindings) -> None:
    """The socket(s) serving the shop: where nginx passes its PHP, else the one pool of the
    running PHP-FPM, else the one socket in the deploy's usual places."""
    listens = {name: fpm_socket(pool["listen"]) for name, pool in found.pools.items()
               if pool.get("listen")}
    web = found.web.sockets if found.web else []
    if web:
        found.sockets = web
        where = "; ".join(f"{s.name}: fastcgi_pass -> {', '.join(s.sockets)}"
                          for s in found.web.servers if s.sockets) if found.web else ""
        found.sockets_why = f"nginx passes the shop's PHP there (server {where})"
    elif len(set(listens.values())) == 1:
        found.sockets = [next(iter(listens.values()))]
        found.sockets_why = f"the only pool of the running PHP-FPM ({next(iter(listens))})"
    else:
        globbed = _attempt(found, "FPM sockets", lambda: opcache.discover_sockets(host)) or []
        if len(globbed) == 1:
            found.sockets, found.sockets_why = globbed, "the only socket in " + " ".join(
                opcache.SOCKET_GLOBS)
        elif globbed or listens:
            found.sockets_why = "several PHP-FPM pools: " + ", ".join(
                sorted(set(globbed) | set(listens.values())))
        else:
            found.sockets_why = "no PHP-FPM found (no process, no socket in the usual places)"
    for sock in found.sockets:
        pool = next((n for n, s in listens.items() if s == sock), "")
        if pool:
            users = {found.pools[pool].get("user", "")} - {""}
            users |= {u for m in found.fpm for u in m.pools.get(pool, ())}
            found.pool_user = ", ".join(sorted(users))
            master = next((m for m in found.fpm if pool in m.pools), None)
            if master and master.version:
                found.fpm_version = master.version
            found.sockets_why += f"; pool {pool}" + (f", runs as {found.pool_user}"
                                                     if found.pool_user else "")
    unix = [s for s in found.sockets if s.startswith("/")]
    if unix:
        out = _attempt(found, "socket access", lambda: host.run(
            "for s in " + " ".join(q(s) for s in unix) + "; do if [ -S \"$s\" ] && [ -w \"$s\" ];"
            " then echo \"W $s\"; fi; done; true", step="init", warn=True, echo=False).stdout)
        writable = {line[2:] for line in (out or "").splitlines() if line.startswith("W ")}
        found.socket_access = {s: s in writable for s in unix}
        for sock, ok in found.socket_access.items():
            if not ok:
                found.notes.append(f"{found.user} cannot write to {sock}: the OPcache flush "
                                   "needs it (listen.group, listen.mode = 0660; docs/opcache.md)")


def _inspect_magento(host: Host, found: HostFindings, php: str) -> None:
    layout = found.layout
    assert layout is not None
    version = _attempt(found, "Magento version", lambda: parse_version(host.run(
        version_command(php, layout.root), step="init", warn=True, echo=False).stdout))
    if version:
        found.magento_version, found.version_source = version
    result = _attempt(found, "base URL", lambda: host.run(
        shopurl.config_command(php, layout.root), step="init", warn=True, echo=False))
    if result is None:
        return
    try:
        found.base_url = shopurl.base_url(shopurl.parse_config(result.stdout))
    except shopurl.ShopUrlError as exc:
        said = (result.stdout + result.stderr).strip().splitlines()
        found.base_url_error = (f"bin/magento config:show: {said[-1].strip()}" if result.failed
                                and said else str(exc))
        return
    listeners = _attempt(found, "listening sockets", lambda: shopurl.parse_listeners(
        host.output(shopurl.LISTENERS, step="init")))
    if listeners is None:
        return
    try:
        target = shopurl.plan(found.base_url, listeners, host.name)
        found.target = target.note or target.url
    except shopurl.ShopUrlError as exc:
        found.target_error = str(exc)


def _inspect_cron(host: Host, found: HostFindings, deploy_path: str, real: str) -> None:
    try:
        text = cron.read_crontab(host)
    except cron.CronError as exc:
        found.cron_error = str(exc)
        return
    except StepFailed as exc:
        found.errors.append(f"crontab: {str(exc).splitlines()[0]}")
        return
    root = found.layout.root if found.layout and found.layout.kind == PLAIN else ""
    found.cron = classify_cron(text, deploy_path, real, root)


def discover(hosts: list[Host], path: str, entries: dict[str, str] | None = None, *,
             hosts_from: str = "--hosts", when: str = "") -> Findings:
    """Every probe on every host at once (read-only). ``entries``: each host as it goes
    into ``DEPLOY_HOSTS`` (default: its name). A host that cannot be reached is in
    :attr:`Findings.unreachable`."""
    entries = entries or {}
    results = on_all(hosts, lambda h: inspect(h, path, entries.get(h.name, h.name)))
    found, unreachable = [], {}
    for host in hosts:
        result = results[host.name]
        if isinstance(result, BaseException):
            unreachable[host.name] = str(result).strip().splitlines()[0] if str(
                result).strip() else type(result).__name__
        else:
            found.append(result)
    return Findings(path, found, hosts_from, when, unreachable)


# -- deciding the settings (pure) -----------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """One block of the ``.env``: comment lines, then ``KEY=value``, or (``value`` None) a
    TODO and the line commented out with a suggestion. A block without a key is only
    comments (and ``suggestion``, a whole line, commented out)."""

    key: str
    value: str | None
    why: tuple[str, ...] = ()
    todo: str = ""
    suggestion: str = ""


def _by_value(hosts: list[HostFindings],
              get: Callable[[HostFindings], Any]) -> dict[Any, list[str]]:
    grouped: dict[Any, list[str]] = {}
    for h in hosts:
        grouped.setdefault(get(h), []).append(h.name)
    return grouped


def _on(names: list[str], hosts: list[HostFindings]) -> str:
    return "" if len(hosts) == 1 else (" on every host" if len(names) == len(hosts)
                                       else " on " + ", ".join(names))


def _per_host(grouped: dict[Any, list[str]], show: Callable[[Any], str] = str) -> str:
    return "; ".join(f"{', '.join(names)}: {show(value)}" for value, names in grouped.items())


def suggested_path(root: str) -> str:
    """Where docs/adopting.md would put the release layout of a plain ``root``."""
    parent = posixpath.dirname(root.rstrip("/")) or "/"
    shop = posixpath.join(parent, "shop")
    return shop if shop != root else posixpath.join(parent, "shop-releases")


def shared_settings(dirs: Iterable[str], files: Iterable[str]) -> tuple[
        str | None, str | None, list[str]]:
    """``DEPLOY_SHARED_DIRS`` and ``_FILES`` covering what the shop shares now (pure):
    None where the default covers it; notes for entries left out (built per release)."""
    notes = []
    keep_dirs, keep_files = [], []
    for rel, keep in [(d, keep_dirs) for d in dirs] + [(f, keep_files) for f in files]:
        own = next((p for p in PER_RELEASE if _inside(p, rel) or _inside(rel, p)), None)
        if own:
            notes.append(f"{rel} is shared now but covers {own}, which every release builds "
                         "for itself: left out")
        elif rel not in keep:
            keep.append(rel)
    found = keep_dirs + keep_files
    all_dirs = keep_dirs + [d for d in DEFAULT_DIRS if d not in keep_dirs
                            and not any(_inside(d, f) or _inside(f, d) for f in found)]
    all_files = keep_files + [f for f in DEFAULT_FILES if f not in keep_files
                              and not any(_inside(f, x) or _inside(x, f) for x in found)]
    dirs_value = None if set(all_dirs) == set(DEFAULT_DIRS) else " ".join(
        sorted(all_dirs, key=lambda d: (d not in DEFAULT_DIRS, DEFAULT_DIRS.index(d)
                                        if d in DEFAULT_DIRS else 0, d)))
    files_value = None if set(all_files) == set(DEFAULT_FILES) else " ".join(
        sorted(all_files, key=lambda f: (f not in DEFAULT_FILES, f)))
    try:
        _shared({"DEPLOY_SHARED_DIRS": dirs_value or DEFAULTS["DEPLOY_SHARED_DIRS"],
                 "DEPLOY_SHARED_FILES": files_value or DEFAULTS["DEPLOY_SHARED_FILES"]})
    except SettingsError as exc:
        notes.append(f"what the shop shares now cannot be used as it is: {exc}")
        return None, None, notes
    return dirs_value, files_value, notes


def plan_env(findings: Findings) -> list[Entry]:
    """Every ``.env`` block, decided from the findings (pure)."""
    hosts = findings.hosts
    entries = [_path_entry(findings), Entry(
        "DEPLOY_HOSTS", ",".join(h.entry for h in hosts),
        (f"the hosts init was given ({findings.hosts_from})",))]
    seen = [f"  {h.name}: {n}" for h in hosts for n in h.notes]
    failed = [f"  {h.name}: {e}" for h in hosts for e in h.errors]
    if seen:
        entries.append(Entry("", None, ("NOTE what init saw on the hosts (fab doctor checks "
                                        "these too):", *seen)))
    if failed:
        entries.append(Entry("", None, ("Probes that could not run (nothing decided from "
                                        "them):", *failed)))
    entries += _repo_entries(hosts)
    entries += _command_entries(hosts)
    entries += [_socket_entry(hosts)]
    entries += _shared_entries(hosts)
    entries += [_upgrade_entry(hosts), _health_entry(hosts), _cron_entry(findings)]
    return [e for e in entries if e.key or e.why]


def _path_entry(findings: Findings) -> Entry:
    hosts, path = findings.hosts, findings.deploy_path
    details = _by_value([h for h in hosts if h.layout], lambda h: h.layout.detail)
    details = [f"found: {detail}" + _on(names, hosts) for detail, names in details.items()]
    plain = [h for h in hosts if h.layout and h.layout.kind == PLAIN]
    shops = [h for h in hosts if h.layout and h.layout.kind in (RELEASES, CURRENT_DIR, NO_LIVE)]
    if plain and not shops:
        root = plain[0].layout.root if plain[0].layout else path
        data = sorted({d for h in plain if h.root for d in h.root.data
                       if d != "app/etc/env.php"})
        target = suggested_path(root)
        steps = (
            f"{root} is updated in place; the deploy needs releases/, shared/ and a current",
            "link. From docs/adopting.md (\"From a single docroot\"), on every host:",
            f"  1. create {target} owned by the deploy user, with shared/app/etc/",
            f"  2. cp {root}/app/etc/env.php {target}/shared/app/etc/env.php (it holds the "
            "crypt key)",
            "  3. move the data into shared/ (mv on one filesystem is instant): "
            + (", ".join(data) or "pub/media, var/log, ..."),
            f"  4. keep the old tree as a release: mv {root} {target}/releases/legacy &&",
            f"     ln -s releases/legacy {target}/current; point the web server at",
            f"     {target}/current/pub (nginx root, or Apache's DocumentRoot), reload it",
            "then run `fab doctor`. Suggested layout:")
        return Entry("DEPLOY_PATH", None, (*details, *steps),
                     f"a plain directory, not a release layout: move it (above) and set "
                     f"DEPLOY_PATH (e.g. {target})", target)
    why = details
    missing = [h.name for h in hosts if h.layout and h.layout.kind in (MISSING, EMPTY)]
    if missing and shops:
        why.append(f"{', '.join(missing)}: nothing there yet, the first deploy creates the "
                   "layout (copy shared/app/etc/env.php there first)")
    if not shops and not plain:
        return Entry("DEPLOY_PATH", path, (*why, "no shop found there: a first deploy creates "
                     "releases/, shared/ and current (put shared/app/etc/env.php first)"))
    return Entry("DEPLOY_PATH", path, tuple(why))


def _repo_entries(hosts: list[HostFindings]) -> list[Entry]:
    found = [h for h in hosts if h.repo.url]
    if not found:
        problems = [p for h in hosts for p in h.repo.problems]
        return [Entry("DEPLOY_REPO", None, tuple(problems[:2]),
                      "the shop's git URL: no git checkout at the shop's root and no mirror of "
                      "a deploy tool (repo.git, repo/, .dep/repo) was found on the hosts",
                      "git@git.example.com:shop.git"),
                Entry("DEPLOY_BRANCH", "main", ("not found: main is the default; set the branch "
                                                "(or tag) you deploy",))]
    first = found[0]
    urls = _by_value(found, lambda h: h.repo.url)
    why = [f"found: {first.repo.source}" + _on([first.name], hosts)]
    if len(urls) > 1:
        why.append("hosts differ: " + _per_host(urls))
    if first.repo.has_credentials:
        repo = Entry("DEPLOY_REPO", None, tuple(why),
                     "origin has credentials in its URL (not copied here): give the URL with a "
                     "token (https://USER:TOKEN@...) or use a deploy key", first.repo.url)
    else:
        repo = Entry("DEPLOY_REPO", first.repo.url, tuple(why))
    if first.repo.branch:
        branch = Entry("DEPLOY_BRANCH", first.repo.branch,
                       (f"found: {first.repo.branch_source}" + _on([first.name], hosts),))
    else:
        branch = Entry("DEPLOY_BRANCH", "main", ("not found: main is the default; set the branch "
                                                 "(or tag) you deploy",))
    return [repo, branch]


def _command_entries(hosts: list[HostFindings]) -> list[Entry]:
    entries = []
    php = _by_value(hosts, lambda h: h.php_command)
    whys = list(dict.fromkeys(h.php_why for h in hosts))
    if "" in php or len(php) > 1:
        entries.append(Entry("DEPLOY_PHP", None, tuple(
            f"{h.name}: {h.php_why}" for h in hosts),
            "the PHP CLI of the shop's PHP version, the same on every host"
            + (" (hosts differ)" if len(php) > 1 else ""),
            next((c for c in php if c), "php8.2")))
    elif next(iter(php)) != "php":
        entries.append(Entry("DEPLOY_PHP", next(iter(php)), tuple(
            f"found: {w}" for w in whys)))
    else:
        entries.append(Entry("", None, tuple(f"PHP{_on(php['php'], hosts)}: {w}: the default "
                                             "`php`, nothing to set" for w in whys[:1])))
    comp = _by_value(hosts, lambda h: h.composer[0])
    if "" in comp or len(comp) > 1:
        entries.append(Entry("DEPLOY_COMPOSER", None, tuple(
            f"{h.name}: {h.composer[0] or 'no Composer found'}" for h in hosts),
            "Composer 2 for the deploy user (getcomposer.org), the same command on every host",
            next((c for c in comp if c), "composer")))
    else:
        command = next(iter(comp))
        versions = ", ".join(sorted({h.composer[1] for h in hosts}))
        if command != "composer":
            entries.append(Entry("DEPLOY_COMPOSER", command,
                                 (f"found: {command} is Composer {versions}",)))
        else:
            entries.append(Entry("", None, (f"Composer{_on(comp[command], hosts)}: `composer` "
                                            f"is Composer {versions}: the default, nothing to "
                                            "set",)))
    return entries


def _socket_entry(hosts: list[HostFindings]) -> Entry:
    grouped = _by_value(hosts, lambda h: tuple(h.sockets))
    if len(grouped) == 1 and () not in grouped:
        sockets = next(iter(grouped))
        why = list(dict.fromkeys(f"found: {h.sockets_why}" for h in hosts))
        if len(why) > 1:
            why = [f"found{_on([h.name], hosts)}: {h.sockets_why}" for h in hosts]
        return Entry("DEPLOY_FPM_SOCKET", " ".join(sockets), tuple(why))
    return Entry("DEPLOY_FPM_SOCKET", None, tuple(
        f"{h.name}: {', '.join(h.sockets) or 'none'} ({h.sockets_why})" for h in hosts),
        "the PHP-FPM socket(s) serving the shop, one setting for every host (the deploy "
        "resets OPcache through it): " + ("hosts differ" if len(grouped) > 1 else
                                          "not found"),
        next((" ".join(s) for s in grouped if s), "/run/php/php8.2-fpm.sock"))


def _shared_entries(hosts: list[HostFindings]) -> list[Entry]:
    linked_from = [h for h in hosts if h.root and h.layout and h.layout.kind == RELEASES]
    if linked_from:
        dirs = [d for h in linked_from for d in h.root.shared_dirs]  # type: ignore[union-attr]
        files = [f for h in linked_from for f in h.root.shared_files]  # type: ignore[union-attr]
        source = "linked into the live release"
    else:
        listed = [h for h in hosts if h.shared]
        dirs = [d for h in listed for d in h.shared.dirs]  # type: ignore[union-attr]
        files = [f for h in listed for f in h.shared.files]  # type: ignore[union-attr]
        source = "present in shared/"
        if not listed:
            return []
    dirs, files = list(dict.fromkeys(dirs)), list(dict.fromkeys(files))
    dirs_value, files_value, notes = shared_settings(dirs, files)
    other = sorted({o for h in hosts if h.shared for o in h.shared.other})
    what = ", ".join(files + dirs) or "nothing"
    why = [f"found {source}: {what}", *notes]
    if other:
        why.append(f"also in shared/ (not linked, not known): {', '.join(other)}: add them "
                   "if the shop uses them")
    entries = []
    for key, value, defaults in (("DEPLOY_SHARED_FILES", files_value, DEFAULT_FILES),
                                 ("DEPLOY_SHARED_DIRS", dirs_value, DEFAULT_DIRS)):
        if value is not None:
            extra = [v for v in value.split() if v not in defaults]
            dropped = [d for d in defaults if d not in value.split()]
            why.append(f"{key}: the default" + (f", plus {', '.join(extra)}" if extra else "")
                       + (f", without {', '.join(dropped)} (inside one found)" if dropped else ""))
            entries.append(Entry(key, value, tuple(why)))
            why = []
    if why:
        missing = [d for d in (*DEFAULT_FILES, *DEFAULT_DIRS) if d not in files + dirs]
        why.append("the defaults of DEPLOY_SHARED_FILES and _DIRS cover it"
                   + (f" (not there yet, created empty by the deploy: {', '.join(missing)})"
                      if missing else ""))
        entries.append(Entry("", None, tuple(why)))
    return entries


def _upgrade_entry(hosts: list[HostFindings]) -> Entry:
    versions = _by_value([h for h in hosts if h.magento_version], lambda h: h.magento_version)
    if not versions:
        return Entry("", None, ("Magento version: not found (bin/magento --version, composer.lock);"
                                " DEPLOY_UPGRADE_MODE=blue-green needs 2.4.4 or later "
                                "(docs/blue-green.md)",))
    sources = sorted({h.version_source for h in hosts if h.version_source})
    since = ".".join(map(str, bluegreen.SINCE))
    shown = _per_host(versions) if len(versions) > 1 else next(iter(versions))
    possible = [blue_green_possible(v) for v in versions]
    if all(possible):
        return Entry("", None, (
            f"Magento {shown} ({', '.join(sources)}): blue/green is possible ({since} or later):"
            " a schema release can skip the maintenance window when its changes are additive "
            "(docs/blue-green.md). The default stays maintenance; for one deploy: "
            "fab deploy --upgrade-mode=blue-green; for every deploy:",),
            suggestion="DEPLOY_UPGRADE_MODE=blue-green")
    return Entry("", None, (f"Magento {shown} ({', '.join(sources)}): blue/green is not possible "
                            f"(it needs {since} or later): keep DEPLOY_UPGRADE_MODE=maintenance",))


def _health_entry(hosts: list[HostFindings]) -> Entry:
    urls = _by_value([h for h in hosts if h.base_url], lambda h: h.base_url)
    why = ["Health check after the switch: the deploy finds the shop by itself (its base URL, "
           "on each host's own web server)."]
    failing = [h for h in hosts if h.target_error]
    if urls:
        url = next(iter(urls))
        why.append(f"  base URL: {url} (bin/magento config:show)" if len(urls) == 1
                   else "  base URL (hosts differ!): " + _per_host(urls))
        why += [f"  {h.name}: {h.target}" for h in hosts if h.target]
    unknown = [h for h in hosts if not h.base_url and h.layout and h.layout.root]
    if failing or (unknown and not urls):
        examples = " ".join(f"{h.name}=http://{_listen_address(h)}" for h in hosts)
        reasons = [f"  {h.target_error}" for h in failing] or [
            f"  {names}: {error}" for error, names in (
                (e, ", ".join(n)) for e, n in _by_value(
                    unknown, lambda h: h.base_url_error or "no base URL found").items())]
        return Entry("DEPLOY_HEALTH_BASE_URL", None, tuple(why + reasons),
                     "where each host's web server answers for the shop (with "
                     "DEPLOY_HEALTH_HOST=<shop name> if it needs one), or "
                     "DEPLOY_HEALTH_PATHS=none to deploy without the check", examples)
    return Entry("", None, tuple(why))


def _listen_address(h: HostFindings) -> str:
    """The address:port the shop's server block listens on, for a suggestion."""
    for server in (h.web.servers if h.web else ()):
        for listen in server.listens:
            first = listen.split()[0]
            if re.fullmatch(r"[\d.]+:\d+|\[[0-9a-f:]+\]:\d+", first):
                return first
            if re.fullmatch(r"\d+", first):
                return f"127.0.0.1:{first}"
    return "ADDRESS:PORT"


def _cron_entry(findings: Findings) -> Entry:
    hosts = findings.hosts
    why = ["Cron (crontab -l of the login user):"]
    for h in hosts:
        if h.cron_error:
            why.append(f"  {h.name}: {h.cron_error}")
        elif not h.cron:
            why.append(f"  {h.name}: no cron:run line")
        for line in h.cron or []:
            why.append(f"  {h.name}, {line.detail}:")
            why.append(f"    {line.line}")
    why.append(f"`fab cron-install` writes our line: cron:run from {findings.deploy_path}/current,"
               " paused while a schema release upgrades the database (docs/cron.md); it replaces "
               "Magento's cron:install blocks of this shop.")
    return Entry("", None, tuple(why))


# -- writing --------------------------------------------------------------------------------------

def env_value(value: str) -> str:
    """``value`` as python-dotenv reads it back unchanged: bare when plain, else quoted.
    (python-dotenv expands ``${NAME}`` whatever the quotes; no setting needs it.)"""
    if re.fullmatch(r"[\w@%+=:,./\-\[\]~]+( [\w@%+=:,./\-\[\]~]+)*", value) or not value:
        return value
    if "'" not in value and "\n" not in value:
        return f"'{value}'"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def comment(text: str, width: int = 92) -> list[str]:
    """``text`` as comment lines, wrapped; a text indented by 4 spaces (a crontab line) is
    kept whole, to be copied."""
    if not text.strip():
        return ["#"]
    if text.startswith("    "):
        return [f"# {text}"]
    indent = text[:len(text) - len(text.lstrip())]
    return ["# " + line for line in textwrap.wrap(
        text, width, subsequent_indent=indent + "  ", break_long_words=False,
        break_on_hyphens=False)]


def render_env(findings: Findings) -> str:
    """The ``.env`` text (pure): every block of :func:`plan_env`, commented."""
    names = ", ".join(h.name for h in findings.hosts)
    lines = [f"# Written by `fab init --path={findings.path}` from {names}"
             + (f" on {findings.when}" if findings.when else "") + ".",
             "# Read-only: nothing was changed on the hosts. Each value says where it was found;",
             "# lines with TODO need you. Then: fab doctor. All settings: .env.example, README.md.",
             ""]
    for entry in plan_env(findings):
        lines += [line for w in entry.why for line in comment(w)]
        if entry.key and entry.value is not None:
            lines.append(f"{entry.key}={env_value(entry.value)}")
        elif entry.key:
            lines += comment(f"TODO {entry.key}: {entry.todo}")
            lines.append(f"# {entry.key}={env_value(entry.suggestion)}")
        elif entry.suggestion:  # a setting to consider, commented out
            lines.append(f"# {entry.suggestion}")
        lines.append("")
    return "\n".join(lines)


def undecided(findings: Findings) -> list[str]:
    """``could not decide`` lines: the TODOs of the ``.env`` and the probes that failed."""
    out = [f"could not decide {e.key}: {e.todo}" for e in plan_env(findings)
           if e.key and e.value is None]
    for h in findings.hosts:
        out += [f"could not decide [{h.name}] {err}" for err in h.errors]
    return out


def differences(findings: Findings) -> list[str]:
    """Facts that differ between hosts (pure): each one a warning."""
    hosts = findings.hosts
    if len(hosts) < 2:
        return []
    facts: list[tuple[str, Callable[[HostFindings], str]]] = [
        ("layout", lambda h: h.layout.kind if h.layout else ""),
        ("live release", lambda h: h.layout.live if h.layout else ""),
        ("PHP CLI version", lambda h: h.php.get(h.php_command, ("", ""))[1]),
        ("PHP-FPM version", lambda h: h.fpm_version),
        ("PHP-FPM socket", lambda h: " ".join(h.sockets)),
        ("PHP-FPM pool user", lambda h: h.pool_user),
        ("Composer", lambda h: " ".join(h.composer)),
        ("Magento version", lambda h: h.magento_version),
        ("base URL", lambda h: h.base_url),
        ("nginx root", lambda h: " ".join(sorted({r for s in (h.web.servers if h.web else ())
                                                  for r in s.roots}))),
        ("repository", lambda h: h.repo.url),
    ]
    out = []
    for what, get in facts:
        grouped = _by_value(hosts, get)
        if len(grouped) > 1:
            out.append(f"WARNING: the hosts differ in {what}: "
                       + _per_host(grouped, lambda v: v or "(none)"))
    return out


def summary(findings: Findings) -> str:
    """What was found on each host, where hosts differ, what could not be decided (pure)."""
    lines = [f"init: {findings.path} on {', '.join(h.name for h in findings.hosts)}"]
    for h in findings.hosts:
        p = f"[{h.name}]"
        lines.append(f"{p} login: {h.user}")
        if h.layout:
            lines.append(f"{p} layout: {h.layout.detail}")
        if h.root:
            shared = ", ".join(h.root.shared_files + h.root.shared_dirs)
            lines.append(f"{p} shared: {shared or 'nothing linked into shared/'}")
        if h.magento_version:
            lines.append(f"{p} Magento {h.magento_version} ({h.version_source})")
        php = h.php.get(h.php_command)
        lines.append(f"{p} PHP CLI: " + (f"{h.php_command} {php[1]}" if php else "not decided")
                     + "; Composer: " + (f"{h.composer[0]} {h.composer[1]}" if h.composer[0]
                                        else "not found"))
        lines.append(f"{p} PHP-FPM: " + (", ".join(h.sockets) or "no socket") + " ("
                     + h.sockets_why + ")" + (f", PHP {h.fpm_version}" if h.fpm_version else ""))
        if h.web:
            for s in h.web.servers:
                lines.append(f"{p} nginx: {s.name} root {', '.join(s.roots)}")
            if h.web.problem:
                lines.append(f"{p} nginx: {h.web.problem}")
        if h.base_url:
            lines.append(f"{p} base URL: {h.base_url} -> " + (h.target or h.target_error))
        elif h.base_url_error:
            lines.append(f"{p} base URL: {h.base_url_error}")
        if h.repo.url:
            lines.append(f"{p} repository: {h.repo.url} ({h.repo.source})")
        if h.cron is not None:
            kinds = [c.detail for c in h.cron]
            lines.append(f"{p} cron: " + ("; ".join(kinds) if kinds else "no cron:run line"))
        elif h.cron_error:
            lines.append(f"{p} cron: {h.cron_error}")
        lines += [f"{p} NOTE {n}" for n in h.notes]
    lines += differences(findings)
    lines += undecided(findings)
    return "\n".join(lines)


__all__ = ["Findings", "HostFindings", "discover", "render_env", "summary", "plan_env",
           "undecided", "differences"]
