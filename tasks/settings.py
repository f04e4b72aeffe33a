"""Deploy settings: ``DEPLOY_*`` from the environment, then ``./.env``; validated once.

Every setting has its default here and nowhere else. Validation happens before any
host is contacted, and each error names the key and the value it refused, so a typo
never becomes a half-done deploy.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values

OPCACHE_STRATEGIES = ("auto", "fcgi", "url", "command", "none")

DEFAULTS: dict[str, str] = {
    "DEPLOY_PATH": "",
    "DEPLOY_HOSTS": "",
    "DEPLOY_REPO": "",
    "DEPLOY_BRANCH": "main",
    "DEPLOY_KEEP_RELEASES": "3",
    "DEPLOY_PHP": "php",
    "DEPLOY_COMPOSER": "composer",
    "DEPLOY_LOCALES": "en_US",
    "DEPLOY_THEMES": "",
    "DEPLOY_STATIC_JOBS": "",
    "DEPLOY_SHARED_FILES": "app/etc/env.php",
    "DEPLOY_SHARED_DIRS": (
        "pub/media var/log var/report var/session var/export var/import var/backups pub/sitemap"
    ),
    "DEPLOY_OPCACHE": "auto",
    "DEPLOY_FPM_SOCKET": "",
    "DEPLOY_OPCACHE_URL": "",
    "DEPLOY_OPCACHE_COMMAND": "",
    "DEPLOY_PRIMARY": "",
    "DEPLOY_LOCK_STALE_MINUTES": "60",
}


class SettingsError(ValueError):
    """A setting has a value we refuse; the message names the key and the value."""


@dataclass(frozen=True)
class Settings:
    """One deploy's configuration, immutable once validated.

    :func:`load` builds it from ``DEFAULTS`` + ``.env`` + environment; the field defaults
    only serve code that builds a ``Settings`` by hand (tests, scripts).
    """

    deploy_path: str
    hosts: tuple[str, ...] = ()
    repo: str = ""
    branch: str = "main"
    keep_releases: int = 3
    php: str = "php"
    composer: str = "composer"
    locales: tuple[str, ...] = ("en_US",)
    themes: tuple[str, ...] = ()
    static_jobs: int | None = None
    shared_files: tuple[str, ...] = ("app/etc/env.php",)
    shared_dirs: tuple[str, ...] = tuple(DEFAULTS["DEPLOY_SHARED_DIRS"].split())
    opcache: str = "auto"
    fpm_sockets: tuple[str, ...] = ()
    opcache_url: str = ""
    opcache_command: str = ""
    primary: str = ""
    lock_stale_minutes: int = 60

    # Paths derived from deploy_path: one definition of the layout.
    @property
    def releases_dir(self) -> str:
        return f"{self.deploy_path}/releases"

    @property
    def shared_dir(self) -> str:
        return f"{self.deploy_path}/shared"

    @property
    def current(self) -> str:
        return f"{self.deploy_path}/current"

    @property
    def mirror(self) -> str:
        return f"{self.deploy_path}/repo.git"

    @property
    def history_dir(self) -> str:
        return f"{self.deploy_path}/history"

    @property
    def lock_file(self) -> str:
        return f"{self.deploy_path}/deploy.lock"

    def release_dir(self, release: str) -> str:
        return f"{self.releases_dir}/{release}"


def split_list(value: str) -> tuple[str, ...]:
    """Lists accept spaces, commas or both: ``"a, b c"`` -> ``("a", "b", "c")``."""
    return tuple(part for part in re.split(r"[\s,]+", value.strip()) if part)


def read_raw(environ: Mapping[str, str] | None = None, cwd: str | Path | None = None) -> dict:
    """Merge defaults < ``./.env`` < environment, without touching ``os.environ``.

    ``dotenv_values`` reads the file only; ``load_dotenv`` would leak every value into
    every subprocess we start, and ``find_dotenv`` would look next to the installed
    library instead of the user's working directory.
    """
    environ = os.environ if environ is None else environ
    dotenv_path = Path(cwd or os.getcwd()) / ".env"
    from_file = dotenv_values(dotenv_path) if dotenv_path.is_file() else {}
    raw = dict(DEFAULTS)
    for key in DEFAULTS:
        if from_file.get(key) is not None:
            raw[key] = from_file[key] or ""
        if key in environ:
            raw[key] = environ[key]
    return raw


def _positive_int(raw: dict, key: str, *, minimum: int, optional: bool = False) -> int | None:
    value = raw[key].strip()
    if optional and not value:
        return None
    if not re.fullmatch(r"\d+", value) or int(value) < minimum:
        raise SettingsError(f"{key}={value!r}: must be a whole number >= {minimum}")
    return int(value)


def _deploy_path(value: str) -> str:
    value = value.strip()
    if not value:
        raise SettingsError("DEPLOY_PATH is not set: give the absolute directory to deploy into")
    if not value.startswith("/"):
        raise SettingsError(f"DEPLOY_PATH={value!r}: must be an absolute path")
    norm = os.path.normpath(value)
    if norm == "/" or norm.count("/") < 1 or norm in ("/root", "/home", "/var", "/usr", "/etc"):
        raise SettingsError(f"DEPLOY_PATH={value!r}: refusing a system directory")
    if re.search(r"[\s'\"\\$`]", norm):
        raise SettingsError(f"DEPLOY_PATH={value!r}: whitespace and shell characters not allowed")
    return norm


def _relative_paths(raw: dict, key: str) -> tuple[str, ...]:
    paths = split_list(raw[key])
    for path in paths:
        norm = os.path.normpath(path)
        if path.startswith("/") or norm.startswith("..") or norm == ".":
            raise SettingsError(f"{key}: {path!r} must be a path inside the release")
    return tuple(os.path.normpath(p) for p in paths)


def _opcache(raw: dict) -> str:
    value = raw["DEPLOY_OPCACHE"].strip() or "auto"
    if value not in OPCACHE_STRATEGIES:
        raise SettingsError(
            f"DEPLOY_OPCACHE={value!r}: unknown strategy, "
            f"use one of {', '.join(OPCACHE_STRATEGIES)}"
        )
    needs = {"url": "DEPLOY_OPCACHE_URL", "command": "DEPLOY_OPCACHE_COMMAND"}
    if value in needs and not raw[needs[value]].strip():
        raise SettingsError(f"DEPLOY_OPCACHE={value}: {needs[value]} must be set too")
    if value == "url" and not re.match(r"https?://[^/\s]+", raw["DEPLOY_OPCACHE_URL"].strip()):
        raise SettingsError(
            f"DEPLOY_OPCACHE_URL={raw['DEPLOY_OPCACHE_URL']!r}: must be an http(s):// URL"
        )
    return value


def _sockets(raw: dict) -> tuple[str, ...]:
    sockets = split_list(raw["DEPLOY_FPM_SOCKET"])
    for sock in sockets:
        if not (sock.startswith("/") or re.fullmatch(r"[\w.\-\[\]:]+:\d+", sock)):
            raise SettingsError(
                f"DEPLOY_FPM_SOCKET: {sock!r} is neither an absolute unix socket path nor host:port"
            )
    return sockets


def load(
    environ: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    *,
    require_repo: bool = True,
) -> Settings:
    """Read and validate every ``DEPLOY_*`` setting; the first bad one raises SettingsError.

    ``require_repo`` is False for tasks that never fetch code (``releases``, ``rollback``).
    """
    raw = read_raw(environ, cwd)
    repo = raw["DEPLOY_REPO"].strip()
    if require_repo and not repo:
        raise SettingsError("DEPLOY_REPO is not set: give the git URL or path of the shop")
    branch = raw["DEPLOY_BRANCH"].strip() or "main"
    if branch.startswith("-") or re.search(r"\s", branch):
        raise SettingsError(f"DEPLOY_BRANCH={branch!r}: not a branch, tag or commit")
    hosts = split_list(raw["DEPLOY_HOSTS"])
    primary = raw["DEPLOY_PRIMARY"].strip()
    if primary and hosts and primary not in hosts:
        raise SettingsError(f"DEPLOY_PRIMARY={primary!r}: not one of DEPLOY_HOSTS {hosts}")
    for key in ("DEPLOY_PHP", "DEPLOY_COMPOSER"):
        if not raw[key].strip():
            raise SettingsError(f"{key} is empty: give the command to run")
    return Settings(
        deploy_path=_deploy_path(raw["DEPLOY_PATH"]),
        hosts=hosts,
        repo=repo,
        branch=branch,
        keep_releases=_positive_int(raw, "DEPLOY_KEEP_RELEASES", minimum=1),  # type: ignore[arg-type]
        php=raw["DEPLOY_PHP"].strip(),
        composer=raw["DEPLOY_COMPOSER"].strip(),
        locales=_locales(raw),
        themes=split_list(raw["DEPLOY_THEMES"]),
        static_jobs=_positive_int(raw, "DEPLOY_STATIC_JOBS", minimum=1, optional=True),
        shared_files=_relative_paths(raw, "DEPLOY_SHARED_FILES"),
        shared_dirs=_relative_paths(raw, "DEPLOY_SHARED_DIRS"),
        opcache=_opcache(raw),
        fpm_sockets=_sockets(raw),
        opcache_url=raw["DEPLOY_OPCACHE_URL"].strip(),
        opcache_command=raw["DEPLOY_OPCACHE_COMMAND"].strip(),
        primary=primary,
        lock_stale_minutes=_positive_int(raw, "DEPLOY_LOCK_STALE_MINUTES", minimum=1),  # type: ignore[arg-type]
    )


def _locales(raw: dict) -> tuple[str, ...]:
    locales = split_list(raw["DEPLOY_LOCALES"]) or ("en_US",)
    for locale in locales:
        if not re.fullmatch(r"[a-z]{2,3}_[A-Z][A-Za-z]{1,3}", locale):
            raise SettingsError(f"DEPLOY_LOCALES: {locale!r} is not a locale like en_US")
    return locales


__all__ = ["Settings", "SettingsError", "load", "split_list"]
