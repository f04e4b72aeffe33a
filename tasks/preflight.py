"""Phase 1 of a deploy: what every host must be before anything changes, asked at once.

Every question is read-only (except creating the deploy's own directories) and
independent of the others, so they travel in ONE command per host (:mod:`tasks.batch`),
sent right after the deploy lock is taken, in the same round trip (:func:`lock.acquire`'s
``then``). The answers are then judged here, in the order the checks always had, with
the same refusals: root, ``DEPLOY_PATH`` not writable, no rsync for a local build,
``current`` a real directory, the shared ``env.php`` missing, ``current`` outside
``releases/``. The live release's maintenance flag and the PHP-FPM sockets come along.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import batch, magento, opcache, release, switch
from .hosts import Host, StepFailed, q
from .settings import Settings

CONFIG = "app/etc/env.php"
ROOT_REFUSAL = (
    "the deploy would run as root: the release's files would belong to root (PHP-FPM could "
    "not write var/ or generated/), and stopping an interrupted build could kill the web "
    "server's own processes. Connect as the deploy user that owns DEPLOY_PATH, or set "
    "DEPLOY_ALLOW_ROOT=1 if you really mean it")
NO_RSYNC = "DEPLOY_BUILD=local ships with rsync: install it on this host"


class PreflightError(RuntimeError):
    """A host is not fit for the deploy; nothing was changed (the message says why)."""


def dirs_command(settings: Settings) -> str:
    s = settings
    return (f"mkdir -p {q(s.releases_dir)} {q(s.shared_dir)} {q(s.history_dir)}"
            f" && test -w {q(s.deploy_path)}")


def flag_command(settings: Settings) -> str:
    """The live release's name (as ``basename`` reads ``current``) and its maintenance
    flag (:func:`magento.owner_command`'s output), without asking for the name first."""
    cur, rels = q(settings.current), q(settings.releases_dir)
    return (f"t=$(readlink {cur}) || exit 0; n=$(basename -- \"$t\"); printf '%s\\n' \"$n\";"
            f" cat {rels}/\"$n\"/var/.maintenance.flag 2>/dev/null || echo {magento.OFF}")


def command(settings: Settings, token: str) -> str:
    """Every question of the preflight as one script (sections of :mod:`tasks.batch`).

    As root (unless allowed) it stops after ``uid``: nothing is created for a deploy that
    will be refused."""
    s = settings
    stop = "" if s.allow_root else '[ "$(id -u)" = 0 ] && exit 0\n'
    rest = {"dirs": dirs_command(s)}
    if s.build == "local":
        rest["rsync"] = f"command -v rsync >/dev/null || {{ echo {q(NO_RSYNC)}; exit 1; }}"
    rest["current"] = switch.real_dir_test(s)
    if CONFIG in s.shared_files:
        rest["env"] = f"test -s {q(s.shared_dir + '/' + CONFIG)}"
    rest["live"] = release.live_command(s)
    rest["flag"] = flag_command(s)
    if s.opcache in ("auto", "fcgi") and not s.fpm_sockets:
        rest["sockets"] = opcache.discover_command()
    return batch.script(token, {"uid": "id -u"}) + stop + batch.script(token, rest)


@dataclass(frozen=True)
class Facts:
    """What the preflight learnt about one host (after its checks passed)."""

    live: str | None  # the live release, None before the first deploy
    owner: str | None  # who set the live release's maintenance flag (magento.parse_owner)
    sockets: list[str] | None  # PHP-FPM sockets found (None: not asked)


def judge(host: Host, settings: Settings, token: str, output: str) -> Facts:
    """The checks in their usual order on the script's ``output``; raises the first
    refusal, naming the host. A section missing (the script was cut short) is a failure."""
    s, name = settings, host.name
    found = batch.sections(output, token)

    def answer(section: str) -> tuple[int, str]:
        if section not in found:
            raise StepFailed(name, "preflight", f"({section})", None,
                             f"no answer to the {section} check:\n{output[-600:]}")
        return found[section]

    if not s.allow_root and answer("uid")[1] == "0":
        raise PreflightError(f"[{name}] {ROOT_REFUSAL}")
    rc, out = answer("dirs")
    if rc:
        raise StepFailed(name, "preflight", dirs_command(s), rc, out)
    if s.build == "local" and answer("rsync")[0]:
        raise StepFailed(name, "preflight", "command -v rsync", answer("rsync")[0], NO_RSYNC)
    if answer("current")[0] == 0:
        raise RuntimeError(switch.real_dir_refusal(name, s))
    if CONFIG in s.shared_files and answer("env")[0]:
        raise PreflightError(
            f"[{name}] {s.shared_dir}/{CONFIG} is missing or empty: copy the shop's env.php "
            "there (it holds the database and the crypt key; see docs/adopting.md) and deploy "
            "again. Nothing was changed.")
    live = release.parse_live(name, s, answer("live")[1])
    flag_name, _, flag = answer("flag")[1].partition("\n")
    owner = (magento.parse_owner(flag) if flag_name == live
             else magento.maintenance_owner(host, s, live))  # an odd link: ask plainly
    sockets = answer("sockets")[1].split() if "sockets" in found else None
    return Facts(live, owner, sockets)


def ask(host: Host, settings: Settings, token: str) -> str:
    """The preflight alone (without the lock): its output, for :func:`judge`."""
    result = host.run(command(settings, token), step="preflight", warn=True, echo=False)
    return result.stdout + result.stderr

