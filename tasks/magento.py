"""Asking Magento about its database, and the maintenance flag.

``setup:db:status`` and ``app:config:status`` run from the NEW release against the live
database: exit 0 means nothing to do, exit 2 means pending. Magento also exits 2 when
the code is *older* than the database (an old commit deployed after a schema change);
its output then says "Some modules use code versions newer or older than the
database", and we refuse before any maintenance.

Maintenance is the file ``<release>/var/.maintenance.flag`` -- exactly what
``maintenance:enable`` creates -- and Magento looks for it relative to the physical
release of the code serving the request. A deploy therefore sets it in the live release
AND the new one. We touch the file directly instead of booting Magento twice inside the
maintenance window.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .build import magento
from .hosts import Host, q
from .settings import Settings

UP_TO_DATE, PENDING = 0, 2
DB_AHEAD_MARKER = "Some modules use code versions newer or older than the database"
_VERSION_LINE = re.compile(r"^\s*(\S+)\s+(schema|data):\s+(\S+)\s+->\s+(\S+)", re.M)


class MagentoError(RuntimeError):
    """Magento answered something we cannot act on; carries its own output."""


class DatabaseAheadError(MagentoError):
    """The code being deployed is older than the database schema."""


@dataclass(frozen=True)
class DbVerdict:
    """What the new release's Magento says about the live database."""

    schema_pending: bool
    config_pending: bool
    output: str

    @property
    def pending(self) -> bool:
        return self.schema_pending or self.config_pending

    def line(self) -> str:
        if not self.pending:
            return "database and config up to date: zero-downtime switch"
        parts = [p for p, on in (("schema/data", self.schema_pending),
                                 ("config", self.config_pending)) if on]
        return f"pending {' and '.join(parts)}: setup:upgrade in a maintenance window"


def _version_key(version: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"[.\-]", version))


def modules_ahead(output: str) -> list[str]:
    """Modules whose database version is newer than the code's, from db:status output."""
    ahead = []
    for module, kind, db, code in _VERSION_LINE.findall(output):
        if db != "none" and _version_key(db) > _version_key(code):
            ahead.append(f"{module} {kind} {db} in the database > {code} in the code")
    return ahead


STATUS_COMMANDS = ("setup:db:status", "app:config:status")


def _judge(host: str, release: str, command: str, exited: int, output: str) -> tuple[bool, str]:
    """(pending, output) of one status command from its exit code."""
    if exited == UP_TO_DATE:
        return False, output
    if exited == PENDING:
        return True, output
    raise MagentoError(f"[{host}] bin/magento {command} failed (exit {exited}) "
                       f"in release {release}:\n{output}")


def _status(host: Host, settings: Settings, release: str, command: str) -> tuple[bool, str]:
    result = host.run(magento(settings, release, command), step=command, warn=True, echo=False)
    output = (result.stdout + result.stderr).strip()
    return _judge(host.name, release, command, result.exited, output)


def db_status(host: Host, settings: Settings, release: str) -> DbVerdict:
    """Run both status commands from ``release``; refuse code older than the database."""
    schema = _status(host, settings, release, "setup:db:status")
    _refuse_ahead(host.name, schema[1])
    return DbVerdict(*_verdict(schema, _status(host, settings, release, "app:config:status")))


def status_sections(settings: Settings, release: str) -> dict[str, str]:
    """Both status commands as sections for another round trip (:mod:`tasks.batch`),
    named by :func:`section_name`; :func:`verdict_of` reads the answers."""
    return {section_name(c): magento(settings, release, c) for c in STATUS_COMMANDS}


def section_name(command: str) -> str:
    return command.replace(":", "_")


def verdict_of(host: str, release: str, answers: dict[str, tuple[int, str]]) -> DbVerdict:
    """:func:`db_status`'s verdict (and refusals) from :func:`status_sections`' answers;
    a section without an answer is a failure of that command."""
    def one(command: str) -> tuple[bool, str]:
        exited, output = answers.get(section_name(command), (-1, "no answer (cut short)"))
        return _judge(host, release, command, exited, output)

    schema = one("setup:db:status")
    _refuse_ahead(host, schema[1])
    return DbVerdict(*_verdict(schema, one("app:config:status")))


def _verdict(schema: tuple[bool, str], config: tuple[bool, str]) -> tuple[bool, bool, str]:
    return schema[0], config[0], f"{schema[1]}\n{config[1]}"


def _refuse_ahead(host: str, schema_out: str) -> None:
    """Code older than the database: Magento says so in setup:db:status's output."""
    if DB_AHEAD_MARKER in schema_out:
        ahead = modules_ahead(schema_out) or ["(modules not listed)"]
        raise DatabaseAheadError(
            f"[{host}] the release is OLDER than the database: "
            + "; ".join(ahead)
            + ". Deploying it would break the shop and setup:upgrade cannot downgrade. "
            "Deploy a commit that contains these module versions.\n" + schema_out
        )


def upgrade(host: Host, settings: Settings, release: str) -> None:
    """``setup:upgrade --keep-generated``: without it Magento wipes generated/ and pub/static."""
    host.run(magento(settings, release, "setup:upgrade", "--keep-generated"), step="setup:upgrade",
             timeout=settings.timeout_upgrade)


def cache_flush(host: Host, settings: Settings, release: str) -> None:
    host.run(magento(settings, release, "cache:flush"), step="cache:flush", echo=False)


OWNER = "set by fabric-magento-deploy:"
OFF = "__maintenance_off__"


def flag(settings: Settings, release: str) -> str:
    return f"{settings.release_dir(release)}/var/.maintenance.flag"


def maintenance_owner(host: Host, settings: Settings, release: str | None) -> str | None:
    """Who set the maintenance flag of ``release``: None when it is off, ``""`` for the
    operator (or any other tool), else the deploy that set it (``deploy <id>``)."""
    if not release:
        return None
    out = host.run(owner_command(settings, release), step="maintenance state", echo=False)
    return parse_owner(out.stdout)


def owner_command(settings: Settings, release: str) -> str:
    """Prints the flag's content, or :data:`OFF` when there is no flag."""
    return f"cat {q(flag(settings, release))} 2>/dev/null || echo {OFF}"


def parse_owner(out: str) -> str | None:
    """:func:`maintenance_owner` from :func:`owner_command`'s output."""
    out = out.strip()
    if out == OFF:
        return None
    return out[len(OWNER):].strip() if out.startswith(OWNER) else ""


def maintenance_is_on(host: Host, settings: Settings, release: str | None) -> bool:
    return maintenance_owner(host, settings, release) is not None


def maintenance_on(host: Host, settings: Settings, releases: list[str], by: str = "") -> None:
    """Create the flag in each release (the IP allow-list of the first one is copied over).

    Magento only checks that the file exists; a deploy (``by``) writes its id into it, so
    the next deploy and ``fab releases`` can tell a flag a failed deploy left from one the
    operator set on purpose. An existing flag is left as it is.
    """
    content = q(f"{OWNER} {by}" if by else "")
    cmds = []
    for rel in releases:
        var = q(f"{settings.release_dir(rel)}/var")
        flag_file = f"{var}/.maintenance.flag"
        cmds.append(f"mkdir -p {var} && {{ [ -e {flag_file} ] || printf '%s' {content} > "
                    f"{flag_file}; }}")
    first = q(f"{settings.release_dir(releases[0])}/var/.maintenance.ip")
    for rel in releases[1:]:
        ip = q(f"{settings.release_dir(rel)}/var/.maintenance.ip")
        # Deployer shares var/.maintenance.ip: then both are one file, nothing to copy.
        cmds.append(f"if [ -f {first} ] && ! [ {first} -ef {ip} ]; then cp -p {first} {ip}; fi")
    host.run(" && ".join(cmds), step="maintenance on", echo=False)


def maintenance_off(host: Host, settings: Settings, releases: list[str]) -> None:
    host.run("rm -f " + " ".join(q(flag(settings, r)) for r in releases),
             step="maintenance off", echo=False)
