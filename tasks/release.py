"""Release folders and their records: ids, the JSON history, what is live, what to prune.

Layout under ``DEPLOY_PATH``::

    releases/<id>/     one folder per deploy; <id> is a UTC timestamp, so sorting = age
    shared/            pub/media, env.php, logs: linked into every release, never copied
    current -> releases/<id>   the only thing the web server knows about
    history/<id>.json  one record per release; survives the pruning of its folder so a
                       rollback can still tell that a later release moved the schema
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
from .settings import Settings

# Status of a release folder, as its record says.
BUILDING, BUILT, LIVE, PREVIOUS, FAILED = "building", "built", "live", "previous", "failed"


def new_release_id(now: datetime | None = None) -> str:
    """``20261126.223912.482``: UTC to the millisecond, sortable as text.

    Only digits and dots, because the id doubles as static content's
    ``--content-version``, which Magento restricts to letters, digits and dots.

    Two deploys in one second get different ids; the lock keeps them from racing and
    ``mkdir`` (without ``-p``) refuses an id that already exists.
    """
    now = now or datetime.now(timezone.utc)
    return now.strftime("%Y%m%d.%H%M%S.") + f"{now.microsecond // 1000:03d}"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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
    db_status: str = ""
    setup_upgrade: bool = False
    config_import: bool = False
    maintenance_seconds: float = 0.0
    steps: dict[str, float] = field(default_factory=dict)
    hosts: list[str] = field(default_factory=list)
    note: str = ""

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
    path = record_path(settings, record.id)
    tmp = f"{path}.{os.getpid()}.tmp"
    text = json.dumps(asdict(record), indent=1, sort_keys=True)
    host.run(
        f"mkdir -p {q(settings.history_dir)} && printf '%s\\n' {q(text)} > {q(tmp)}"
        f" && mv -f {q(tmp)} {q(path)}",
        step="record", echo=False,
    )


def read_records(host: Host, settings: Settings) -> dict[str, ReleaseRecord]:
    """Every record on the host, by id (one SSH round trip)."""
    out = host.run(
        f"cd {q(settings.history_dir)} 2>/dev/null && for f in *.json; do "
        f'[ -f "$f" ] && printf \'%s\\0\' "$(cat "$f")"; done; true',
        step="records", echo=False,
    ).stdout
    records = {}
    for chunk in out.split("\0"):
        if chunk.strip():
            try:
                rec = ReleaseRecord.from_json(chunk)
            except (ValueError, TypeError):
                continue  # a foreign or damaged file is not a release record
            records[rec.id] = rec
    return records


def list_releases(host: Host, settings: Settings) -> list[str]:
    """Release folder names on the host, oldest first."""
    out = host.run(f"ls -1 {q(settings.releases_dir)} 2>/dev/null; true",
                   step="list releases", echo=False).stdout
    return sorted(line for line in out.split() if line and not line.startswith("."))


def live_release(host: Host, settings: Settings) -> str | None:
    """The release ``current`` points at, or None before the first deploy."""
    target = host.run(f"readlink {q(settings.current)}; true", step="readlink",
                      echo=False).stdout.strip()
    return os.path.basename(target.rstrip("/")) or None


@dataclass(frozen=True)
class PrunePlan:
    remove: tuple[str, ...]
    keep: tuple[str, ...]


def plan_prune(
    releases: list[str],
    records: dict[str, ReleaseRecord],
    *,
    keep: int,
    protected: set[str],
) -> PrunePlan:
    """Decide which release folders go. Pure: the same answer in ``--dry`` and for real.

    Keeps the newest ``keep`` good releases plus everything in ``protected`` (``current``,
    the release it replaced, the rollback target). A failed release goes once it is
    older than the newest live one; a folder without a record is treated as good.
    """
    ordered = sorted(releases)
    good = [r for r in ordered if records.get(r, ReleaseRecord(r, status=BUILT)).status != FAILED]
    keep_set = set(good[-keep:]) | (protected & set(ordered))
    live = [r for r in ordered if r in protected]
    newest_live = live[-1] if live else None
    remove = []
    for rel in ordered:
        if rel in keep_set:
            continue
        failed = records.get(rel) is not None and records[rel].status == FAILED
        if failed and (newest_live is None or rel > newest_live):
            continue  # a failed release newer than what is live: keep it for inspection
        remove.append(rel)
    return PrunePlan(tuple(remove), tuple(r for r in ordered if r not in remove))


def remove_release_cmd(settings: Settings, release: str) -> str:
    """Delete a release folder even when ``generated/`` holds read-only files."""
    path = settings.release_dir(release)
    return f"chmod -R u+w {q(path)} 2>/dev/null; rm -rf {q(path)}"
