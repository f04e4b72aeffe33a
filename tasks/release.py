"""Release folders and their records: ids, the JSON history, what is live, what to prune.

Layout under ``DEPLOY_PATH``::

    releases/<id>/     one folder per deploy; <id> is a UTC timestamp. Other tools' folders
                       (Capistrano ``20261201095728``, Deployer ``1 2 3``) may sit beside
                       them, so the order of releases comes from the records' start time
                       (folder mtime without a record), never from the names
    shared/            pub/media, env.php, logs: linked into every release, never copied
    current -> releases/<id>   the only thing the web server knows about
    history/<id>.json  one record per release; survives the pruning of its folder so a
                       rollback can still tell that a later release moved the schema. Its
                       status: building, built, live, previous (was live), failed (never
                       finished, or reverted by the health check), rejected (a rollback
                       left it, with who and when): only live/previous ones are rollback
                       targets
    repo.git/          bare mirror of DEPLOY_REPO, updated by fetch
    deploy.lock        present while a deploy, rollback or prune runs
"""

from __future__ import annotations

import getpass
import json
import os
import socket
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from .hosts import Host, q
from .plan import Step
from .redact import redact
from .settings import Settings

# Status of a release folder, as its record says.
BUILDING, BUILT, LIVE, PREVIOUS, FAILED = "building", "built", "live", "previous", "failed"
# The release a ``fab rollback`` left (Deployer's BAD_RELEASE): never chosen as a rollback
# target again; ``fab rollback --to=<id>`` may still name it, and going live makes it good.
REJECTED = "rejected"


def new_release_id(now: datetime | None = None) -> str:
    """``20261126.223912.482``: UTC to the millisecond, readable, unlike other tools' names.

    The static content version is derived from it (``build.static_version``: the digits).
    Two deploys in one second get different ids; the lock keeps them from racing and
    ``mkdir`` (without ``-p``) refuses an id that already exists.
    """
    now = now or datetime.now(timezone.utc)
    return now.strftime("%Y%m%d.%H%M%S.") + f"{now.microsecond // 1000:03d}"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def utc_iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds")


def epoch(iso: str) -> float | None:
    """Seconds since 1970 of a record time, None when it cannot be read."""
    try:
        when = datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return None
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def operator() -> str:
    """``user@machine`` of whoever runs the deploy, for records and the lock."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


@dataclass
class ReleaseRecord:
    """What a release folder is and what its deploy did; ``history/<id>.json``."""

    id: str
    ref: str = ""
    commit: str = ""
    deployed_by: str = field(default_factory=operator)
    started: str = field(default_factory=utc_now)
    finished: str = ""
    status: str = BUILDING
    static_version: str = ""
    db_status: str = ""
    setup_upgrade: bool = False
    config_import: bool = False
    blue_green: bool = False  # setup:upgrade ran while the old release served (no maintenance)
    health: dict | None = None  # the post-switch health check (tasks/health.py), if any
    maintenance_seconds: float = 0.0
    steps: dict[str, float] = field(default_factory=dict)
    hosts: list[str] = field(default_factory=list)
    note: str = ""
    replaced: str = ""  # the release that was live when this one went live, if recorded
    rejected_at: str = ""  # when a rollback left this release (status REJECTED) ...
    rejected_by: str = ""  # ... and who ran it (user@machine)

    @property
    def schema_changed(self) -> bool:
        """Did this deploy move the database (or start to)?"""
        return self.setup_upgrade or self.config_import

    @classmethod
    def from_json(cls, text: str) -> ReleaseRecord:
        data = json.loads(text)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def record_path(settings: Settings, release: str) -> str:
    return f"{settings.history_dir}/{release}.json"


def write_record(host: Host, settings: Settings, record: ReleaseRecord) -> None:
    """Write the record atomically: temp file then ``mv``, so a crash leaves old or new JSON."""
    host.step(record_step(settings, record), echo=False)


def record_step(settings: Settings, record: ReleaseRecord) -> Step:
    """The command of :func:`write_record`, to send along with other steps."""
    path = record_path(settings, record.id)
    tmp = f"{path}.{os.getpid()}.tmp"
    text = redact(json.dumps(asdict(record), indent=1, sort_keys=True))
    return Step("record", f"mkdir -p {q(settings.history_dir)} && printf '%s\\n' {q(text)} >"
                          f" {q(tmp)} && mv -f {q(tmp)} {q(path)}")


def update_record(host: Host, settings: Settings, rel: str, **changes: object) -> ReleaseRecord:
    """Change fields of ``rel``'s record (one written for a release another tool left, if
    it has none) and write it back; returns the record as written."""
    rec = read_records(host, settings).get(rel) or adopted_record(host, settings, rel)
    for name, value in changes.items():
        if name not in ReleaseRecord.__dataclass_fields__:
            raise AttributeError(f"a release record has no field {name!r}")
        setattr(rec, name, value)
    write_record(host, settings, rec)
    return rec


def read_records(host: Host, settings: Settings) -> dict[str, ReleaseRecord]:
    """Every record on the host, by id (one SSH round trip)."""
    return parse_records(host.run(records_command(settings), step="records", echo=False).stdout)


def records_command(settings: Settings) -> str:
    """Prints every record, each followed by a NUL byte (see :func:`parse_records`)."""
    return (f"cd {q(settings.history_dir)} 2>/dev/null && for f in *.json; do "
            f'[ -f "$f" ] && printf \'%s\\0\' "$(cat "$f")"; done; true')


def parse_records(out: str) -> dict[str, ReleaseRecord]:
    records = {}
    for chunk in out.split("\0"):
        if chunk.strip():
            try:
                rec = ReleaseRecord.from_json(chunk)
            except (ValueError, TypeError):
                continue  # a foreign or damaged file is not a release record
            records[rec.id] = rec
    return records


@dataclass(frozen=True)
class Folder:
    """An entry of ``releases/``: its name, mtime, and whether it holds ``app/etc``."""

    name: str
    mtime: float
    has_app_etc: bool


def scan(host: Host, settings: Settings) -> list[Folder]:
    """Every directory in ``releases/`` with its mtime (one SSH round trip)."""
    return parse_scan(host.run(scan_command(settings), step="list releases", echo=False).stdout)


def scan_command(settings: Settings) -> str:
    """Prints ``<mtime> <1 if app/etc> <name>`` per directory of ``releases/``."""
    return (f"cd {q(settings.releases_dir)} 2>/dev/null || exit 0; for d in *; do"
            ' [ -d "$d" ] && [ ! -L "$d" ] || continue;'
            ' if [ -d "$d/app/etc" ]; then e=1; else e=0; fi;'
            ' printf \'%s %s %s\\n\' "$(stat -c %Y -- "$d")" "$e" "$d"; done')


def parse_scan(out: str) -> list[Folder]:
    folders = []
    for line in out.splitlines():
        try:
            mtime, has_etc, name = line.split(" ", 2)
            folders.append(Folder(name, float(mtime), has_etc == "1"))
        except ValueError:
            continue  # not a line of the scan (a message on stderr)
    return folders


@dataclass(frozen=True)
class Releases:
    """What ``releases/`` holds: releases oldest first, and folders that are not releases.

    A folder is a release when it has a record or holds ``app/etc`` (a shop deployed by
    another tool); anything else (``backup``, a stray copy) is never pruned, never rolled
    back to, and reported.
    """

    ordered: tuple[str, ...]
    foreign: tuple[str, ...]
    mtimes: dict[str, float]


def order(folders: list[Folder], records: dict[str, ReleaseRecord]) -> Releases:
    """Order releases by their record's start time, else the folder's mtime. Pure.

    Never by name: Capistrano's ``20261201095728`` sorts after our ``20261201.100243.904``
    as text, and Deployer's ``10`` before its ``9``.
    """
    mtimes = {f.name: f.mtime for f in folders}
    ours = [f.name for f in folders if f.name in records or f.has_app_etc]
    foreign = tuple(sorted(f.name for f in folders if f.name not in ours))
    return Releases(tuple(sorted(ours, key=lambda r: started(r, records, mtimes))), foreign,
                    mtimes)


def started(release: str, records: dict[str, ReleaseRecord],
            mtimes: dict[str, float]) -> tuple[float, str]:
    """Sort key of a release: when its deploy started (record, else folder mtime)."""
    rec = records.get(release)
    when = epoch(rec.started) if rec else None
    if when is None:
        when = mtimes.get(release, 0.0)
    return when, release


def list_releases(host: Host, settings: Settings,
                  records: dict[str, ReleaseRecord] | None = None) -> Releases:
    """The host's releases in deploy order (see :func:`order`)."""
    records = read_records(host, settings) if records is None else records
    return order(scan(host, settings), records)


def adopted_record(host: Host, settings: Settings, release: str) -> ReleaseRecord:
    """A record for a release another tool deployed (Capistrano, Deployer, by hand).

    Its start time is the folder's mtime and its commit the ``REVISION`` file both of
    those tools write, so ``fab releases`` places it and ``fab rollback`` can go back to
    it after our first deploy.
    """
    path = q(settings.release_dir(release))
    facts = host.output(f"stat -c %Y {path} && {{ cat {path}/REVISION 2>/dev/null || true; }}",
                        step="adopt").split()
    return ReleaseRecord(release, commit=facts[1] if len(facts) > 1 else "",
                         deployed_by="another tool", started=utc_iso(float(facts[0])),
                         note="adopted: deployed before this tool")


def live_release(host: Host, settings: Settings) -> str | None:
    """The release ``current`` points at, or None before the first deploy (see
    :func:`parse_live`)."""
    out = host.run(live_command(settings), step="readlink", echo=False).stdout
    return parse_live(host.name, settings, out)


def live_command(settings: Settings) -> str:
    """Prints ``current``'s target, then the physical parents to compare (see parse_live)."""
    cur, rels = q(settings.current), q(settings.releases_dir)
    return (f"readlink {cur} || exit 0; dirname \"$(readlink -f {cur})\";"
            f" realpath {rels} 2>/dev/null; true")


def parse_live(host: str, settings: Settings, out: str) -> str | None:
    """The live release from :func:`live_command`'s output, or None without ``current``.

    ``current`` must point into ``releases/``: relative, as we write it, absolute, as
    Capistrano does, or through a symlinked ``DEPLOY_PATH``. Anywhere else cannot be
    switched back to, so it is refused.
    """
    target, *physical = out.strip().splitlines() or [""]
    if not target:
        return None
    parent, name = os.path.split(os.path.normpath(target))
    inside = parent in ("releases", settings.releases_dir) or (
        len(physical) == 2 and physical[0] == physical[1])
    if not inside or not name:
        raise RuntimeError(
            f"[{host}] {settings.current} points at {target}, outside "
            f"{settings.releases_dir}/: move that release into {settings.releases_dir}/ and "
            "point current at it (see docs/adopting.md)")
    return name


@dataclass(frozen=True)
class PrunePlan:
    remove: tuple[str, ...]
    keep: tuple[str, ...]


def plan_prune(
    releases: list[str] | tuple[str, ...],
    records: dict[str, ReleaseRecord],
    *,
    keep: int,
    protected: set[str],
) -> PrunePlan:
    """Decide which release folders go. Pure: the same answer in ``--dry`` and for real.

    ``releases`` is in deploy order (:func:`order`). Keeps the newest ``keep`` good
    releases plus everything in ``protected`` (``current``, the release it replaced, the
    rollback target). A failed release goes once it is older than the newest live one; a
    folder without a record is treated as good.
    """
    ordered = list(releases)
    good = [r for r in ordered if records.get(r, ReleaseRecord(r, status=BUILT)).status != FAILED]
    keep_set = set(good[-keep:]) | (protected & set(ordered))
    live = [ordered.index(r) for r in ordered if r in protected]
    newest_live = max(live, default=-1)
    remove = []
    for index, rel in enumerate(ordered):
        if rel in keep_set:
            continue
        failed = records.get(rel) is not None and records[rel].status == FAILED
        if failed and index > newest_live:
            continue  # a failed release newer than what is live: keep it for inspection
        remove.append(rel)
    return PrunePlan(tuple(remove), tuple(r for r in ordered if r not in remove))


def remove_release_cmd(settings: Settings, release: str) -> str:
    """Delete a release folder even when it holds read-only directories.

    Only directories are made writable (removing an entry needs a writable directory,
    never a writable file): a release shipped with ``rsync --link-dest`` shares its files'
    inodes with other releases, and changing a file's mode here would change it there.
    Directories are never shared."""
    path = q(settings.release_dir(release))
    return (f"find {path} -type d ! -perm -u=w -exec chmod u+w {{}} + 2>/dev/null; "
            f"rm -rf {path}")
