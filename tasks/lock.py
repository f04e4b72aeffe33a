"""One deploy at a time: ``DEPLOY_PATH/deploy.lock``, created atomically on every host.

The file is created with the shell's noclobber (``O_EXCL``), so two deploys racing for it
cannot both win. It says who holds it, from where, since when and for what; a lock older
than ``DEPLOY_LOCK_STALE_MINUTES`` is reported as probably stale, never broken silently.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone

from .hosts import Host, q
from .release import operator, utc_now
from .settings import Settings


class LockHeld(RuntimeError):
    """Another deploy (or a crashed one) holds the lock."""


def lock_info(action: str, release: str = "") -> dict:
    return {"who": operator(), "pid": os.getpid(), "since": utc_now(), "action": action,
            "release": release}


def describe(host: str, settings: Settings, info: dict) -> str:
    """One paragraph naming the holder, and what to do about a stale lock."""
    since = info.get("since", "?")
    try:
        age_min = (datetime.now(timezone.utc) - datetime.fromisoformat(since)).total_seconds() / 60
    except (TypeError, ValueError):
        age_min = float("inf")
    text = (f"[{host}] {settings.lock_file} is held by {info.get('who', '?')} "
            f"(pid {info.get('pid', '?')}, {info.get('action', '?')}"
            f"{' of ' + info['release'] if info.get('release') else ''}) since {since}")
    if info.get("kept"):
        text += (f"; it was KEPT because {info['kept']}. Check the database and the hosts "
                 f"(`fab db-status`, `fab releases`), then clear it with: fab unlock "
                 f"--hosts={host}")
    elif age_min > settings.lock_stale_minutes:
        text += (f"; it is {age_min:.0f} min old, probably stale (a crashed deploy?). "
                 f"If nobody is deploying, clear it with: fab unlock --hosts={host}")
    return text


def acquire(host: Host, settings: Settings, info: dict, then: str = "") -> str:
    """Create the lock or raise :class:`LockHeld` with the holder's details.

    ``then``: a script to run once the lock is ours, in the same round trip (the deploy's
    preflight); returns its output (stdout and stderr). It runs only if the lock was taken.
    """
    path = q(settings.lock_file)
    take = (f"mkdir -p {q(settings.deploy_path)} && (set -C; printf '%s\\n' {q(json.dumps(info))}"
            f" > {path}) || {{ if [ -e {path} ]; then cat {path}; exit 3; fi; exit 4; }}")
    result = host.run(  # exit 3: held (the file exists); any other failure: cannot create
        f"{take}\n{then}" if then else take, step="lock", warn=True, echo=False,
    )
    if result.exited == 3:
        try:
            holder = json.loads(result.stdout)
        except ValueError:
            holder = {"who": result.stdout.strip() or "unknown"}
        raise LockHeld(describe(host.name, settings, holder))
    if result.exited == 4 or (result.failed and not then):
        raise LockHeld(f"[{host.name}] cannot create {settings.lock_file}: "
                       f"{(result.stdout + result.stderr).strip()}")
    return result.stdout + result.stderr


def release(host: Host, settings: Settings, info: dict) -> None:
    """Remove the lock if it is still ours (same pid and since), never someone else's."""
    ours = q(json.dumps(info))
    host.run(f"if [ \"$(cat {q(settings.lock_file)} 2>/dev/null)\" = {ours} ];"
             f" then rm -f {q(settings.lock_file)}; fi", step="unlock", warn=True, echo=False)


def keep(host: Host, settings: Settings, info: dict, why: str) -> None:
    """Leave our lock in place, saying why (only if it is still ours)."""
    ours, kept = q(json.dumps(info)), q(json.dumps({**info, "kept": why}))
    host.run(f"if [ \"$(cat {q(settings.lock_file)} 2>/dev/null)\" = {ours} ]; then"
             f" printf '%s\\n' {kept} > {q(settings.lock_file)}; fi", step="keep lock",
             warn=True, echo=False)


def read(host: Host, settings: Settings) -> dict | None:
    out = host.run(f"cat {q(settings.lock_file)} 2>/dev/null; true", step="lock", echo=False)
    text = out.stdout.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return {"who": text}


def force_unlock(host: Host, settings: Settings) -> dict | None:
    """Remove the lock whoever holds it; return what it said."""
    info = read(host, settings)
    host.run(f"rm -f {q(settings.lock_file)}", step="unlock", echo=False)
    return info
