"""Deploy settings: ``DEPLOY_*`` from the environment, then ``./.env``; validated once.

Every setting has its default here and nowhere else. Validation happens before any
host is contacted, and each error names the key and the value it refused, so a typo
never becomes a half-done deploy.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import dotenv_values

from .redact import MIN_LENGTH, redact, register, register_urls, secret

OPCACHE_STRATEGIES = ("auto", "fcgi", "url", "command", "none")
HOST_KEY_MODES = ("strict", "accept-new", "off")
#: Named points of a deploy where a shop's own steps run (see tasks/hooks.py).
HOOK_POINTS = ("after_code", "before_static_content", "after_build", "before_database",
               "before_switch", "after_switch", "after_deploy", "on_failure")
AREAS = ("frontend", "adminhtml")
ADMIN_THEME = "Magento/backend"
NO_THEME = "none"
# Paths a build writes into every release, or that must stay per release (the maintenance
# flag is looked up in the release serving the request): never shared.
PER_RELEASE = ("app/etc/config.php", "generated", "pub/static", "var/.maintenance.flag",
               "var/view_preprocessed", "vendor")
# Options of setup:static-content:deploy that the deploy sets itself.
OWN_STATIC_OPTIONS = ("--content-version", "--area", "-a", "--theme", "-t", "--language", "-l")
SYSTEM_DIRS = ("/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/opt", "/proc", "/root",
               "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var", "/var/www")

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
    "DEPLOY_STATIC_ARGS": "",
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
    "DEPLOY_HOST_KEYS": "",
    "DEPLOY_TIMEOUT_COMMAND": "900",
    "DEPLOY_TIMEOUT_BUILD": "3600",
    "DEPLOY_TIMEOUT_UPGRADE": "10800",
    "DEPLOY_ALLOW_ROOT": "",
    "DEPLOY_BUILD": "each",
    "DEPLOY_CRON_WAIT": "60",
    "DEPLOY_UPGRADE_MODE": "maintenance",
    "DEPLOY_CONFIG_PHP": "check",
    "DEPLOY_VERIFY_PATH": "pub/health_check.php",
    "DEPLOY_HEALTH_PATHS": "/ /health_check.php",
    "DEPLOY_HEALTH_BASE_URL": "",
    "DEPLOY_HEALTH_HOST": "",
    "DEPLOY_HEALTH_HEADERS": "",
    "DEPLOY_HEALTH_AUTH": "",
    "DEPLOY_HEALTH_TLS_VERIFY": "1",
    "DEPLOY_HEALTH_WINDOW": "1",
    "DEPLOY_HEALTH_INTERVAL": "0.25",
    "DEPLOY_HEALTH_TIMEOUT": "5",
    "DEPLOY_CONSUMERS_COMMAND": "",
    "DEPLOY_CONSUMERS_STOP_OLD": "",
    "DEPLOY_BUILD_DIR": "",
    "DEPLOY_SECRETS": "",
    **{f"DEPLOY_HOOK_{point.upper()}": "" for point in HOOK_POINTS},
}


class SettingsError(ValueError):
    """A setting has a value we refuse; the message names the key and the value, with
    every registered credential masked (the value may be a URL with a token in it)."""

    def __init__(self, *args: object):
        super().__init__(*(redact(a) if isinstance(a, str) else a for a in args))


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
    static_args: tuple[str, ...] = ()
    shared_files: tuple[str, ...] = ("app/etc/env.php",)
    shared_dirs: tuple[str, ...] = tuple(DEFAULTS["DEPLOY_SHARED_DIRS"].split())
    opcache: str = "auto"
    fpm_sockets: tuple[str, ...] = ()
    opcache_url: str = ""
    opcache_command: str = ""
    primary: str = ""
    lock_stale_minutes: int = 60
    host_keys: str = ""  # "" = each host's StrictHostKeyChecking; else strict|accept-new|off
    timeout_command: int = 900
    timeout_build: int = 3600
    timeout_upgrade: int = 10800
    allow_root: bool = False
    build: str = "each"  # each: every host builds; local: the machine running fab, shipped
    build_dir: str = ""  # the builder's folder for DEPLOY_BUILD=local ("" = under ~/.cache)
    cron_wait: int = 60  # seconds a schema deploy waits for running cron:run to finish
    upgrade_mode: str = "maintenance"  # or "blue-green" (Magento 2.4.4+, see bluegreen.py)
    config_php: str = "check"  # or "sync": modules config.php lacks (see configphp.py)
    verify_path: str = "pub/health_check.php"  # run by each host's PHP-FPM before the switch
    # ("" = DEPLOY_VERIFY_PATH=none: no FastCGI request, the other checks still run)
    # After the switch (tasks/health.py): () = no check.
    health_paths: tuple[str, ...] = ()
    health_base_url: str = ""  # "" = the shop's base URL on each host's own web server
    health_base_urls: Mapping[str, str] = field(default_factory=dict)  # host name -> URL
    health_host: str = ""
    health_headers: tuple[str, ...] = ()
    health_auth: str = field(default="", repr=False)  # user:password, masked
    health_tls_verify: bool = True
    health_window: float = 1.0
    health_interval: float = 0.25
    health_timeout: float = 5.0
    consumers_command: str = ""  # run in current on every host after the switch
    consumers_stop_old: bool = False  # SIGTERM consumers on an old release that ignore the pill
    hooks: Mapping[str, str] = field(default_factory=dict)  # point -> DEPLOY_HOOK_* command
    secrets: tuple[str, ...] = ()  # DEPLOY_SECRETS: variables whose values are masked

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

    def __post_init__(self) -> None:
        """Credentials in any URL of any value are masked in everything printed or stored
        (:func:`load` registered them already; this covers settings built by hand)."""
        register(self.repo)
        secret(self.health_auth.partition(":")[2])
        for value in vars(self).values():
            items = value.values() if isinstance(value, Mapping) else (
                value if isinstance(value, tuple) else (value,))
            for item in items:
                if isinstance(item, str):
                    register_urls(item)


def split_list(value: str) -> tuple[str, ...]:
    """Lists accept spaces, commas or both: ``"a, b c"`` -> ``("a", "b", "c")``."""
    return tuple(part for part in re.split(r"[\s,]+", value.strip()) if part)


#: The stage chosen by ``fab stage NAME`` for this process (``DEPLOY_STAGE`` otherwise).
selected_stage = ""
STAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def project_dir(cwd: str | Path | None = None) -> Path:
    """Where ``.env`` files live: the nearest directory, from ``cwd`` up, holding a
    fabfile (where ``fab`` found it) or a ``.env``; else ``cwd`` itself."""
    start = Path(cwd or os.getcwd()).resolve()
    for folder in (start, *start.parents):
        if any((folder / name).exists() for name in ("fabfile.py", "fabfile", ".env")):
            return folder
    return start


def sources(environ: Mapping[str, str] | None = None,
            cwd: str | Path | None = None) -> dict[str, tuple[str, str]]:
    """Every setting as ``(value, where it came from)``: the default < ``.env`` <
    ``.env.<stage>`` < the environment; ``os.environ`` is never changed.

    ``dotenv_values`` reads the file only; ``load_dotenv`` would leak every value into
    every subprocess we start, and ``find_dotenv`` would look next to the installed
    library instead of the user's project. Every credential found is registered for
    masking (:func:`_mask`) before this returns.
    """
    found, places = _read(environ, cwd)
    _mask(found, places)  # from here on, even if a value is refused later
    return found


def _read(environ: Mapping[str, str] | None,
          cwd: str | Path | None) -> tuple[dict[str, tuple[str, str]], list[Mapping]]:
    """The settings with their origins, and every place read (environment, each file)."""
    environ = os.environ if environ is None else environ
    folder = project_dir(cwd)
    stage = selected_stage or environ.get("DEPLOY_STAGE", "").strip()
    files = [folder / ".env"]
    if stage:
        if not STAGE.fullmatch(stage) or not (folder / f".env.{stage}").is_file():
            raise SettingsError(f"DEPLOY_STAGE={stage!r}: no file .env.{stage} in {folder}")
        files.append(folder / f".env.{stage}")
    found = {key: (value, "default") for key, value in DEFAULTS.items()}
    read = [dotenv_values(path) if path.is_file() else {} for path in files]
    for path, values in zip(files, read, strict=True):
        for key in DEFAULTS:
            if values.get(key) is not None:
                found[key] = (values[key] or "", str(path))
    for key in DEFAULTS:
        if key in environ:
            found[key] = (environ[key], "environment")
    return found, [environ, *read]


SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _mask(found: dict[str, tuple[str, str]], places: list[Mapping]) -> None:
    """Register what must never be printed: the credentials of every URL in every value
    (``DEPLOY_REPO``, a hook's ``curl https://user:TOKEN@...``), ``DEPLOY_HEALTH_AUTH``'s
    password, and the values of the variables ``DEPLOY_SECRETS`` names."""
    for value, _ in found.values():
        register_urls(value)
    register(found["DEPLOY_REPO"][0])
    secret(found["DEPLOY_HEALTH_AUTH"][0].strip().partition(":")[2])
    for values in secret_values(found["DEPLOY_SECRETS"][0], places).values():
        for value in values:
            secret(value)


def secret_values(names: str, places: list[Mapping]) -> dict[str, list[str]]:
    """Each entry of ``DEPLOY_SECRETS`` -> its values in the environment and every
    ``.env`` file read (any variable, a setting too); ``[]``: set nowhere.

    An entry that is not a variable name is itself treated as a secret: it is most likely
    a value given where its name belongs (``DEPLOY_SECRETS=$SLACK_TOKEN``); :func:`load`
    refuses it.
    """
    return {name: [str(place[name]) for place in places if place.get(name) is not None]
            if SECRET_NAME.fullmatch(name) else [name] for name in split_list(names)}


def unmasked_secrets(environ: Mapping[str, str] | None = None,
                     cwd: str | Path | None = None) -> list[str]:
    """What ``fab config`` warns about: names in ``DEPLOY_SECRETS`` set nowhere (a typo
    leaves the real variable unmasked) or whose value is too short to be masked."""
    found, places = _read(environ, cwd)
    problems = []
    for name, values in secret_values(found["DEPLOY_SECRETS"][0], places).items():
        if not SECRET_NAME.fullmatch(name):
            continue  # load() refuses it
        if not values:
            problems.append(f"{name} is set neither in the environment nor in a .env file: "
                            "nothing to mask")
        elif any(0 < len(value) < MIN_LENGTH for value in values):
            problems.append(f"{name} is shorter than {MIN_LENGTH} characters: never masked")
    return problems


def read_raw(environ: Mapping[str, str] | None = None, cwd: str | Path | None = None) -> dict:
    """The settings' values only (see :func:`sources`)."""
    return {key: value for key, (value, _) in sources(environ, cwd).items()}


def check_ref(ref: str, key: str = "--ref") -> str:
    """A branch, tag or commit as git may take it: never an option (``-x``), no spaces."""
    if ref.startswith("-") or re.search(r"\s", ref) or not ref:
        raise SettingsError(f"{key}={ref!r}: not a branch, tag or commit")
    return ref


def _positive_int(raw: dict, key: str, *, minimum: int, optional: bool = False) -> int | None:
    value = raw[key].strip()
    if optional and not value:
        return None
    if not re.fullmatch(r"\d{1,9}", value) or int(value) < minimum:
        raise SettingsError(f"{key}={value[:20]!r}: must be a whole number >= {minimum} "
                            "(at most 9 digits)")
    return int(value)


def _deploy_path(value: str) -> str:
    value = value.strip()
    if not value:
        raise SettingsError("DEPLOY_PATH is not set: give the absolute directory to deploy into")
    if not value.startswith("/"):
        raise SettingsError(f"DEPLOY_PATH={value!r}: must be an absolute path")
    # normpath keeps a leading "//" (POSIX allows it a meaning); for us "//var" is "/var".
    norm = os.path.normpath(re.sub("/+", "/", value))
    if norm in SYSTEM_DIRS:
        raise SettingsError(f"DEPLOY_PATH={value!r}: refusing the system directory {norm}")
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


def _inside(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent + "/")


def _shared(raw: dict) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Shared dirs and files, refused when one lies inside another (or repeats it).

    Nested entries destroy data: ``app/etc`` shared with ``app/etc/env.php`` turns the
    shared env.php into a link to itself; ``pub/media`` with ``pub/media/catalog``
    deletes the catalog through the outer link. Paths every build writes are refused too.
    """
    dirs = _relative_paths(raw, "DEPLOY_SHARED_DIRS")
    files = _relative_paths(raw, "DEPLOY_SHARED_FILES")
    entries = ([("DEPLOY_SHARED_DIRS", p) for p in dirs]
               + [("DEPLOY_SHARED_FILES", p) for p in files])
    for i, (key, path) in enumerate(entries):
        for other_key, other in entries[i + 1:]:
            if _inside(path, other) or _inside(other, path):
                raise SettingsError(
                    f"{key}: {path!r} and {other_key}: {other!r} overlap (one is inside the "
                    "other); shared entries must be separate, or the shared data is lost")
        for own in PER_RELEASE:
            if _inside(own, path) or _inside(path, own):
                raise SettingsError(f"{key}: {path!r} would share {own}, which every release "
                                    "must have its own of")
    return dirs, files


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
    url = raw["DEPLOY_OPCACHE_URL"].strip()
    try:
        valid = bool(re.match(r"https?://[^/\s]+", url)) and (urlsplit(url).port or 0) >= 0
    except ValueError:  # a port that is not a number
        valid = False
    if value == "url" and not valid:
        raise SettingsError(f"DEPLOY_OPCACHE_URL={url!r}: must be an http(s):// URL")
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
    secrets = _secret_names(raw)
    repo = raw["DEPLOY_REPO"].strip()
    if require_repo and not repo:
        raise SettingsError("DEPLOY_REPO is not set: give the git URL or path of the shop")
    branch = check_ref(raw["DEPLOY_BRANCH"].strip() or "main", "DEPLOY_BRANCH")
    hosts = split_list(raw["DEPLOY_HOSTS"])
    repeated = sorted({h for h in hosts if hosts.count(h) > 1})
    if repeated:
        raise SettingsError(f"DEPLOY_HOSTS={raw['DEPLOY_HOSTS']!r}: {', '.join(repeated)} "
                            "given more than once")
    primary = raw["DEPLOY_PRIMARY"].strip()
    if primary and hosts and primary not in hosts:
        raise SettingsError(f"DEPLOY_PRIMARY={primary!r}: not one of DEPLOY_HOSTS {hosts}")
    for key in ("DEPLOY_PHP", "DEPLOY_COMPOSER"):
        if not raw[key].strip():
            raise SettingsError(f"{key} is empty: give the command to run")
    shared_dirs, shared_files = _shared(raw)
    return Settings(
        deploy_path=_deploy_path(raw["DEPLOY_PATH"]),
        hosts=hosts,
        repo=repo,
        branch=branch,
        keep_releases=_positive_int(raw, "DEPLOY_KEEP_RELEASES", minimum=1),  # type: ignore[arg-type]
        php=raw["DEPLOY_PHP"].strip(),
        composer=raw["DEPLOY_COMPOSER"].strip(),
        locales=_locales(raw),
        themes=_themes(raw),
        static_jobs=_positive_int(raw, "DEPLOY_STATIC_JOBS", minimum=1, optional=True),
        static_args=_static_args(raw),
        shared_dirs=shared_dirs,
        shared_files=shared_files,
        opcache=_opcache(raw),
        fpm_sockets=_sockets(raw),
        opcache_url=raw["DEPLOY_OPCACHE_URL"].strip(),
        opcache_command=raw["DEPLOY_OPCACHE_COMMAND"].strip(),
        primary=primary,
        lock_stale_minutes=_positive_int(raw, "DEPLOY_LOCK_STALE_MINUTES", minimum=1),  # type: ignore[arg-type]
        host_keys=_choice(raw, "DEPLOY_HOST_KEYS", HOST_KEY_MODES),
        timeout_command=_positive_int(raw, "DEPLOY_TIMEOUT_COMMAND", minimum=1),  # type: ignore[arg-type]
        timeout_build=_positive_int(raw, "DEPLOY_TIMEOUT_BUILD", minimum=1),  # type: ignore[arg-type]
        timeout_upgrade=_positive_int(raw, "DEPLOY_TIMEOUT_UPGRADE", minimum=1),  # type: ignore[arg-type]
        allow_root=_choice(raw, "DEPLOY_ALLOW_ROOT", ("0", "1")) == "1",
        build=_build(raw),
        build_dir=_build_dir(raw),
        cron_wait=_positive_int(raw, "DEPLOY_CRON_WAIT", minimum=0),  # type: ignore[arg-type]
        upgrade_mode=upgrade_mode(raw["DEPLOY_UPGRADE_MODE"]),
        config_php=_choice(raw, "DEPLOY_CONFIG_PHP", ("check", "sync")) or "check",
        verify_path=_verify_path(raw),
        **_health(raw, hosts),
        consumers_command=raw["DEPLOY_CONSUMERS_COMMAND"].strip(),
        consumers_stop_old=_choice(raw, "DEPLOY_CONSUMERS_STOP_OLD", ("0", "1")) == "1",
        hooks={p: raw[f"DEPLOY_HOOK_{p.upper()}"].strip() for p in HOOK_POINTS
               if raw[f"DEPLOY_HOOK_{p.upper()}"].strip()},
        secrets=secrets,
    )


def _secret_names(raw: dict) -> tuple[str, ...]:
    """``DEPLOY_SECRETS``: names of variables (``SLACK_TOKEN``), never values. A refused
    entry is not shown: it may be the secret itself (``DEPLOY_SECRETS=$SLACK_TOKEN``)."""
    names = split_list(raw["DEPLOY_SECRETS"])
    for n, name in enumerate(names, 1):
        if not SECRET_NAME.fullmatch(name):
            raise SettingsError(
                f"DEPLOY_SECRETS: entry {n} of {len(names)} is not a variable name (letters, "
                "digits and _, not starting with a digit); it is not shown in case it is a "
                "secret itself. Give the NAMES of the environment or .env variables whose "
                "values must be masked, e.g. DEPLOY_SECRETS=\"SLACK_TOKEN CI_HOOK_TOKEN\"")
    return names


def _health(raw: dict, hosts: tuple[str, ...]) -> dict:
    """``DEPLOY_HEALTH_*``, checked by the health check's own rules (tasks/health.py), so a
    value accepted here is one the check can run. ``DEPLOY_HEALTH_PATHS=none``: no check."""
    # Imported here: health imports hosts, which imports this module.
    from .health import DEFAULT_PATHS, HealthError, HealthParams, parse_base_urls, parse_headers

    value = raw["DEPLOY_HEALTH_PATHS"].strip()
    paths = () if value == "none" else tuple(value.split()) or DEFAULT_PATHS
    seconds = {}
    for key in ("DEPLOY_HEALTH_WINDOW", "DEPLOY_HEALTH_INTERVAL", "DEPLOY_HEALTH_TIMEOUT"):
        text = raw[key].strip()
        if not re.fullmatch(r"\d{1,6}(\.\d{1,3})?", text):
            raise SettingsError(f"{key}={text[:20]!r}: must be seconds like 10 or 0.5")
        seconds[key] = float(text)
    try:
        base_url, base_urls = parse_base_urls(raw["DEPLOY_HEALTH_BASE_URL"])
        auth = raw["DEPLOY_HEALTH_AUTH"].strip()  # its password: masked by read_raw
        params = HealthParams(paths=paths, base_url=base_url, base_urls=base_urls,
                              host_header=raw["DEPLOY_HEALTH_HOST"].strip(),
                              headers=parse_headers(raw["DEPLOY_HEALTH_HEADERS"]), auth=auth,
                              tls_verify=_choice(raw, "DEPLOY_HEALTH_TLS_VERIFY",
                                                 ("0", "1")) == "1",
                              window_seconds=seconds["DEPLOY_HEALTH_WINDOW"],
                              interval=seconds["DEPLOY_HEALTH_INTERVAL"],
                              request_timeout=seconds["DEPLOY_HEALTH_TIMEOUT"])
    except HealthError as exc:
        raise SettingsError(str(exc)) from exc
    unknown = sorted(set(base_urls) - set(hosts)) if hosts else []
    if unknown:
        raise SettingsError(f"DEPLOY_HEALTH_BASE_URL: {', '.join(unknown)} not in "
                            f"DEPLOY_HOSTS {list(hosts)}")
    return {"health_paths": params.paths, "health_base_url": params.base_url,
            "health_base_urls": dict(params.base_urls), "health_host": params.host_header,
            "health_headers": params.headers, "health_auth": params.auth,
            "health_tls_verify": params.tls_verify,
            "health_window": params.window_seconds, "health_interval": params.interval,
            "health_timeout": params.request_timeout}


def _verify_path(raw: dict) -> str:
    from .verify import check_path  # verify imports settings: import here, not at the top

    value = raw["DEPLOY_VERIFY_PATH"].strip() or "pub/health_check.php"
    return "" if value == "none" else check_path(value)


UPGRADE_MODES = ("maintenance", "blue-green")


def upgrade_mode(value: str, key: str = "DEPLOY_UPGRADE_MODE") -> str:
    """How a schema release is applied: ``maintenance`` or ``blue-green``."""
    return _choice({key: value.strip() or "maintenance"}, key, UPGRADE_MODES)


def _build(raw: dict) -> str:
    value = raw["DEPLOY_BUILD"].strip() or "each"
    if value.startswith("host:"):
        raise SettingsError(f"DEPLOY_BUILD={value!r}: building on a named build host is not "
                            "supported yet; use local (build where fab runs, e.g. in CI) or each")
    return _choice({"DEPLOY_BUILD": value}, "DEPLOY_BUILD", ("each", "local"))


def _build_dir(raw: dict) -> str:
    value = raw["DEPLOY_BUILD_DIR"].strip()
    if value and (not value.startswith("/") or re.search(r"[\s'\"\\$`]", value)):
        raise SettingsError(f"DEPLOY_BUILD_DIR={value!r}: must be an absolute path without "
                            "whitespace or shell characters")
    return os.path.normpath(value) if value else ""


def _choice(raw: dict, key: str, allowed: tuple[str, ...]) -> str:
    value = raw[key].strip()
    if value and value not in allowed:
        raise SettingsError(f"{key}={value!r}: use one of {', '.join(allowed)}")
    return value


LOCALE = re.compile(r"[a-z]{2,3}(_[A-Z][a-z]{3})?_([A-Z]{2}|\d{3})")
THEME = re.compile(r"[A-Za-z0-9_\-]+/[A-Za-z0-9_\-]+")


def by_area(values: tuple[str, ...], key: str) -> dict[str, tuple[str, ...]]:
    """``("frontend:Hyva/default", "Magento/luma", "adminhtml:en_US")`` grouped by area.

    An entry without ``area:`` belongs to ``""`` (every area, or frontend for themes:
    the caller decides). Shared by validation and by the static content plan.
    """
    grouped: dict[str, list[str]] = {}
    for value in values:
        area, sep, item = value.rpartition(":")
        if sep and area not in AREAS:
            raise SettingsError(f"{key}: {value!r}: unknown area {area!r}, "
                                f"use {' or '.join(AREAS)}")
        grouped.setdefault(area, []).append(item)
    return {area: tuple(items) for area, items in grouped.items()}


def _locales(raw: dict) -> tuple[str, ...]:
    locales = split_list(raw["DEPLOY_LOCALES"]) or ("en_US",)
    grouped = by_area(locales, "DEPLOY_LOCALES")
    for locale in (item for items in grouped.values() for item in items):
        if not LOCALE.fullmatch(locale):
            raise SettingsError(f"DEPLOY_LOCALES: {locale!r} is not a locale like en_US "
                                "or zh_Hans_CN")
    if "" not in grouped:
        raise SettingsError(f"DEPLOY_LOCALES={raw['DEPLOY_LOCALES']!r}: give the locales of "
                            "every area too (entries without an area: prefix)")
    return locales


def _themes(raw: dict) -> tuple[str, ...]:
    themes = split_list(raw["DEPLOY_THEMES"])
    for area, items in by_area(themes, "DEPLOY_THEMES").items():
        for theme in items:
            if not THEME.fullmatch(theme) and (area, theme) != ("adminhtml", NO_THEME):
                raise SettingsError(f"DEPLOY_THEMES: {theme!r} is not a theme like Vendor/theme"
                                    f" (or {NO_THEME!r} after adminhtml: to skip the admin)")
    return themes


def _static_args(raw: dict) -> tuple[str, ...]:
    try:
        args = tuple(shlex.split(raw["DEPLOY_STATIC_ARGS"]))
    except ValueError as exc:
        raise SettingsError(f"DEPLOY_STATIC_ARGS={raw['DEPLOY_STATIC_ARGS']!r}: {exc}") from exc
    for arg in args:
        name = arg.split("=", 1)[0]
        if name in OWN_STATIC_OPTIONS or (not arg.startswith("-")):
            raise SettingsError(
                f"DEPLOY_STATIC_ARGS: {arg!r} is set by the deploy itself or is not an option; "
                "use DEPLOY_THEMES / DEPLOY_LOCALES for themes, areas and locales")
    return args


__all__ = ["Settings", "SettingsError", "load", "split_list"]
