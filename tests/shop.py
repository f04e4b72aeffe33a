"""Helpers around the fake Magento 2.4 shop in ``tests/fakeshop`` (no pytest in here).

The fake is a real PHP tree: ``bin/magento`` reproduces Magento's exit codes, messages and
side effects for the commands a deployer runs, and ``pub/index.php`` answers like
Magento's storefront (see ``tests/fakeshop/README.md``). This module builds git repos of
it, writes the shared ``app/etc/env.php``, initialises the JSON "database" and reads the
test hooks (command log, faults).

The database (``dbname`` in env.php) is a JSON file shared by every web host::

    {"setup_module": {"Shop_Catalog": {"schema_version": "1.0.0", "data_version": "1.0.0"}},
     "patch_list": [...], "declarative_schema": {...},
     "flag": {"config_hash": {"scopes": sha1, "themes": sha1, "system": sha1}, ...},
     "core_config_data": [{"config_id": 1, "scope": "default", "scope_id": 0,
                           "path": "web/unsecure/base_url", "value": "http://shop.test/"}],
     "history": [{"t": 1.0, "event": "setup:upgrade schema", "bp": "...", "host": "..."}]}
"""

from __future__ import annotations

import fcntl
import hashlib
import html
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FAKESHOP = Path(__file__).resolve().parent / "fakeshop"
LABEL_FILE = "app/code/Shop/Catalog/Label.php"
CONFIG_FILE = "app/etc/config.php"
DEFAULT_BRANCH = "main"
CONFIG_SECTIONS = ("scopes", "themes", "system")
# Left out of a repo made from tests/fakeshop: what a deploy produces (as in .gitignore).
_BUILD_OUTPUT = {"generated", "var", "pub/static"}
# The base URL install_db gives a shop: a name that does not resolve from the machine, so
# reaching the shop by name needs the right Host header (curl --resolve) on its address.
DEFAULT_BASE_URL = "http://shop.test/"


# --------------------------------------------------------------------------- repos


def make_repo(
    path: Path,
    *,
    label: str,
    modules: dict[str, str | None] | None = None,
    config_system: dict | None = None,
) -> str:
    """Create a (non-bare) git repo at ``path`` holding the fake shop; return the commit sha.

    ``modules`` sets ``setup_version`` of existing modules or adds new ones (``None``
    removes a module, ``""`` removes its setup_version); modules not named keep the
    versions of ``tests/fakeshop`` (Shop_Catalog and Shop_Checkout at 1.0.0).
    ``config_system`` replaces the ``system`` section of ``app/etc/config.php``.
    """
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f"{path} exists and is not empty")
    shutil.copytree(FAKESHOP, path, ignore=_ignore_build_output, dirs_exist_ok=True)
    _apply(path, label=label, modules=modules, config_system=config_system)
    _git(path, "init", "-q", "-b", DEFAULT_BRANCH)
    _git(path, "config", "user.name", "Fake Shop Tests")
    _git(path, "config", "user.email", "fakeshop@example.invalid")
    _git(path, "add", "-A")
    _git(path, "commit", "-q", "-m", f"Fake shop {label}")
    return _git(path, "rev-parse", "HEAD")


def commit(
    repo: Path,
    *,
    label: str | None = None,
    modules: dict[str, str | None] | None = None,
    config_system: dict | None = None,
    files: dict[str, str | None] | None = None,
    message: str = "",
) -> str:
    """Commit a change to ``repo``; return the new sha (an empty commit if nothing changed).

    ``label``: the release label the storefront shows. ``modules``: schema change (see
    :func:`make_repo`). ``config_system``: new ``system`` section of config.php (a config
    change: ``app:config:status`` exits 2 until imported). ``files``: path -> content,
    ``None`` deletes (e.g. ``app/code/Shop/Catalog/Setup/Patch/Data/AddThing.php`` adds a
    data patch, ``.../etc/db_schema.xml`` a declarative schema change).
    """
    repo = Path(repo)
    _apply(repo, label=label, modules=modules, config_system=config_system)
    for rel, content in (files or {}).items():
        target = repo / rel
        if content is None:
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
    message = message or _describe(label, modules, config_system, files)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return _git(repo, "rev-parse", "HEAD")


def _ignore_build_output(directory: str, names: list[str]) -> set[str]:
    """What a deploy produces stays out of the repo (Magento's .gitignore; dot files kept)."""
    rel = Path(directory).relative_to(FAKESHOP).as_posix()
    if rel == ".":
        return {"vendor"} & set(names)
    if rel == "app/etc":
        return {"env.php"} & set(names)
    if rel in _BUILD_OUTPUT:
        return {n for n in names if not n.startswith(".")}
    return set()


def _describe(label: str | None, modules: dict | None, system: dict | None,
              files: dict | None) -> str:
    parts = []
    if label is not None:
        parts.append(f"label {label}")
    if modules:
        parts.append("modules " + ", ".join(f"{k}={v}" for k, v in modules.items()))
    if system is not None:
        parts.append("config.php system section")
    if files:
        parts.append("files " + ", ".join(files))
    return "Change " + ("; ".join(parts) or "nothing")


def _apply(tree: Path, *, label: str | None, modules: dict[str, str | None] | None,
           config_system: dict | None) -> None:
    if label is not None:
        (tree / LABEL_FILE).write_text(
            "<?php\n// Release label shown by the storefront (label=...); pub/index.php includes"
            " this file,\n// so OPcache caches it per path like any code file.\n"
            f"return {_export(label, 0)};\n"
        )
    if not modules and config_system is None:
        return
    config = read_config_php(tree)
    for name, version in (modules or {}).items():
        _set_module(tree, config, name, version)
    if config_system is not None:
        config["system"] = config_system
    (tree / CONFIG_FILE).write_text(php_export(config))


def _set_module(tree: Path, config: dict, name: str, version: str | None) -> None:
    if not re.fullmatch(r"[A-Z][A-Za-z0-9]*_[A-Z][A-Za-z0-9]*", name):
        raise ValueError(f"module name must look like Vendor_Module, got {name!r}")
    module_dir = tree / "app" / "code" / Path(*name.split("_"))
    modules = config.setdefault("modules", {})
    if version is None:
        shutil.rmtree(module_dir, ignore_errors=True)
        modules.pop(name, None)
        return
    if not (module_dir / "registration.php").exists():
        (module_dir / "etc").mkdir(parents=True, exist_ok=True)
        (module_dir / "registration.php").write_text(
            "<?php\nuse FakeMagento\\ComponentRegistrar;\n\n"
            f"ComponentRegistrar::register(ComponentRegistrar::MODULE, '{name}', __DIR__);\n"
        )
    attribute = f' setup_version="{version}"' if version else ""
    (module_dir / "etc" / "module.xml").write_text(
        '<?xml version="1.0"?>\n<config xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
        ' xsi:noNamespaceSchemaLocation="urn:magento:framework:Module/etc/module.xsd">\n'
        f'    <module name="{name}"{attribute}/>\n</config>\n'
    )
    if name not in modules:
        modules[name] = 1
        config["modules"] = dict(sorted(modules.items()))


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {repo}:\n{proc.stderr}")
    return proc.stdout.strip()


# --------------------------------------------------------------------------- env.php + DB


def env_php(
    db_path: Path | str,
    command_log: Path | str | None = None,
    faults: Path | str | None = None,
    blue_green: bool = False,
    *,
    mode: str = "production",
    cache_dir: Path | str | None = None,
    id_prefix: str | None = "40d_",
    static_content_on_demand_in_production: bool = False,
    system: dict | None = None,
) -> str:
    """Text of the shared ``app/etc/env.php``.

    ``system``: env.php's ``system`` section, e.g. ``{"default": {"web": {"unsecure":
    {"base_url": "https://shop.example/"}}}}``: it wins over ``core_config_data`` and over
    config.php's ``system`` (and, being in env.php, counts for ``app:config:status``).

    ``static_content_on_demand_in_production``: Magento's env.php flag that lets
    ``pub/static.php`` publish missing files in production mode (off by default, as in
    Magento: production then answers 404 for any static file not deployed).

    The cache backend is a directory (think Redis): ``<cache_dir>/cache`` and
    ``<cache_dir>/page_cache``, by default next to the database, i.e. shared by every
    release and host. ``id_prefix=None`` leaves Magento's default prefix, derived from the
    release path (each release then has its own cache keys).
    """
    cache_root = Path(cache_dir) if cache_dir is not None else Path(db_path).parent / "cache"

    def frontend(sub: str) -> dict:
        entry: dict[str, Any] = {}
        if id_prefix is not None:
            entry["id_prefix"] = id_prefix
        entry["backend"] = "Cm_Cache_Backend_File"
        entry["backend_options"] = {"cache_dir": str(cache_root / sub)}
        return entry

    env: dict[str, Any] = {
        "MAGE_MODE": mode,
        "install": {"date": "Thu, 01 Jan 2026 00:00:00 +0000"},
        "crypt": {"key": "00000000000000000000000000000000"},
        "db": {
            "table_prefix": "",
            "connection": {"default": {
                "host": "file", "dbname": str(db_path), "username": "magento",
                "password": "", "model": "mysql4", "engine": "innodb", "active": "1",
            }},
        },
        "cache": {"frontend": {"default": frontend("cache"), "page_cache": frontend("page_cache")}},
        "deployment": {"blue_green": {"enabled": bool(blue_green)}},
    }
    if static_content_on_demand_in_production:
        env["static_content_on_demand_in_production"] = 1
    if system is not None:
        env["system"] = system
    fake = {k: str(v) for k, v in (("command_log", command_log), ("faults", faults)) if v}
    if fake:
        env["fake"] = fake
    return php_export(env)


def install_db(
    db_path: Path | str,
    repo_or_tree: Path | str,
    *,
    base_url: str | None = DEFAULT_BASE_URL,
    secure_base_url: str | None = None,
    use_in_frontend: bool = False,
    redirect_to_base: int | None = 0,
) -> None:
    """Write the database ``setup:install`` would leave for this tree.

    Module versions, patches, declarative schema and config hashes all match the tree, so
    deploying it needs neither ``setup:upgrade`` nor ``app:config:import``. The file is
    made writable by everyone (the deploy user runs bin/magento, tests run as root), and
    the default cache directories of :func:`env_php` are created next to it.

    ``core_config_data`` gets what ``setup:install --base-url=... --use-rewrites=1`` writes:
    ``web/seo/use_rewrites`` 1, ``web/unsecure/base_url`` = ``base_url``,
    ``web/secure/base_url`` = ``secure_base_url`` (default: ``base_url``),
    ``web/secure/use_in_frontend`` and ``web/secure/use_in_adminhtml`` 0/1.
    ``base_url=None`` writes no base URLs (Magento's ``{{base_url}}``: any host name is
    the shop's). Then ``web/url/redirect_to_base`` = ``redirect_to_base``: 0 by default, so
    pages fetched by address (no shop host name) answer instead of redirecting; 1 (302)
    or 301 redirects like a shop left at Magento's default; ``None`` writes no row
    (Magento's default, 1, applies).
    """
    db_path = Path(db_path)
    state = tree_state(Path(repo_or_tree))
    rows: list[tuple[str, str]] = [("web/seo/use_rewrites", "1")]
    if base_url is not None:
        rows += [("web/unsecure/base_url", base_url),
                 ("web/secure/base_url", secure_base_url or base_url)]
    rows += [("web/secure/use_in_frontend", "1" if use_in_frontend else "0"),
             ("web/secure/use_in_adminhtml", "0")]
    if redirect_to_base is not None:
        rows.append(("web/url/redirect_to_base", str(int(redirect_to_base))))
    state["core_config_data"] = [
        {"config_id": i, "scope": "default", "scope_id": 0, "path": path, "value": value}
        for i, (path, value) in enumerate(rows, start=1)
    ]
    state["history"] = [{"t": time.time(), "event": "install", "bp": str(repo_or_tree),
                         "host": os.uname().nodename}]
    db_path.parent.mkdir(parents=True, exist_ok=True)
    db_path.write_text(json.dumps(state, indent=4) + "\n")
    db_path.chmod(0o666)
    for sub in ("cache", "page_cache"):
        cache = db_path.parent / "cache" / sub
        cache.mkdir(parents=True, exist_ok=True)
        for directory in (cache.parent, cache):
            directory.chmod(0o777)


def tree_state(tree: Path) -> dict[str, Any]:
    """What the database holds once this tree is installed (see the module docstring)."""
    config = read_config_php(tree)
    flags = config.get("modules") or {}
    setup_module: dict[str, dict[str, str]] = {}
    schema: dict[str, str] = {}
    patches: list[str] = []
    for name, path, version in _code_modules(tree):
        if int(flags.get(name, 0)) != 1:
            continue
        if version:
            setup_module[name] = {"schema_version": version, "data_version": version}
        if (path / "etc" / "db_schema.xml").is_file():
            schema[name] = hashlib.sha1((path / "etc" / "db_schema.xml").read_bytes()).hexdigest()
        for kind in ("Schema", "Data"):
            namespace = name.replace("_", "\\") + f"\\Setup\\Patch\\{kind}\\"
            patches += [namespace + f.stem
                        for f in sorted((path / "Setup" / "Patch" / kind).glob("*.php"))]
    return {
        "setup_module": setup_module,
        "patch_list": patches,
        "declarative_schema": schema,
        "flag": {"config_hash": config_hashes(config)},
    }


def _code_modules(tree: Path) -> list[tuple[str, Path, str | None]]:
    """(name, dir, setup_version) of modules with registration.php and etc/module.xml."""
    found = []
    for registration in sorted((tree / "app" / "code").glob("*/*/registration.php")):
        xml = registration.parent / "etc" / "module.xml"
        if not xml.is_file():
            continue
        tag = re.search(r"<module\b[^>]*>", xml.read_text(), re.S)
        name = re.search(r'\bname\s*=\s*"([^"]+)"', tag.group(0)) if tag else None
        version = re.search(r'\bsetup_version\s*=\s*"([^"]*)"', tag.group(0)) if tag else None
        if name:
            setup_version = version.group(1) if version else None
            found.append((name.group(1), registration.parent, setup_version))
    return found


def config_hashes(config: dict) -> dict[str, str]:
    """Per-section hashes of config.php as ``app:config:import`` stores them."""
    return {s: _hash(config[s]) for s in CONFIG_SECTIONS if config.get(s) is not None}


def _hash(data: Any) -> str:
    text = json.dumps(_canonical(data), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()


def _canonical(value: Any) -> Any:
    """Mirror of ConfigState::canonical() in PHP: lists stay lists, maps get sorted keys."""
    if isinstance(value, dict):
        if list(value) == list(range(len(value))):
            return [_canonical(v) for v in value.values()]
        return {str(k): _canonical(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def read_log(path: Path | str) -> list[dict]:
    """Command log lines (one per bin/magento run), oldest first; [] if there is none yet.

    Each: ``{"t": end, "t_start": start, "cmd": "setup:upgrade", "argv": [...],
    "bp": physical release dir, "exit": code, "pid": ..., "host": ..., "user": ...}``.
    """
    path = Path(path)
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line being written right now
    return entries


def read_db(path: Path | str) -> dict:
    return json.loads(Path(path).read_text())


def write_faults(path: Path | str, faults: dict) -> None:
    """``{"setup:upgrade": {"exit": 1, "message": "...", "sleep": 2.5}}``; ``{}`` clears.

    Also ``"when": "after"`` (fail after doing the work) and ``"stream": "stdout"|"stderr"``.
    The storefront (``pub/index.php``) reads ``"storefront"``: ``{"status": 500}`` (Magento's
    error report page, ``"message"`` in it), another status (that code, plain text),
    ``{"sleep": 30}`` (the request hangs that long first), ``"path": "/exact/path"`` to
    limit it to one request path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(faults, indent=2) + "\n")
    tmp.chmod(0o644)
    os.replace(tmp, path)


def set_config(db_path: Path | str, path: str, value: str | int | None, scope: str = "default",
               scope_id: int = 0, *, clean_cache: bool = True) -> None:
    """Set a ``core_config_data`` row of the fake database (``value=None`` deletes it).

    Like an ``UPDATE``/``INSERT`` in MySQL, under the database's lock: ``scope`` is
    ``default`` (``scope_id`` 0), ``websites`` or ``stores`` (``scope_id`` = the website or
    store id of config.php's ``scopes``: 1 is ``base`` / ``default``). ``config:show`` sees
    it at once; the storefront caches the configuration in the ``config`` cache type, so
    ``clean_cache`` (default) also removes that type's entries from the default cache
    directory of :func:`env_php` (``<db dir>/cache/cache``), as ``config:set`` cleans it.
    """
    if scope not in ("default", "websites", "stores"):
        raise ValueError(f"scope must be default, websites or stores, not {scope!r}")

    def change(data: dict) -> None:
        rows = [r for r in data.get("core_config_data", []) if isinstance(r, dict)]
        key = (scope, int(scope_id), path)
        found = [r for r in rows if _row_key(r) == key]
        if value is None:
            rows = [r for r in rows if r not in found]
        elif found:
            found[0]["value"] = str(value)
        else:
            next_id = max((int(r.get("config_id", 0)) for r in rows), default=0) + 1
            rows.append({"config_id": next_id, "scope": scope, "scope_id": int(scope_id),
                         "path": path, "value": str(value)})
        data["core_config_data"] = rows

    _update_db(Path(db_path), change)
    if clean_cache:
        cache = Path(db_path).parent / "cache" / "cache"
        for entry in cache.glob("*config--*") if cache.is_dir() else []:
            if re.search(r"(?<!compiled_)config--", entry.name):
                entry.unlink(missing_ok=True)


def get_config(db_path: Path | str, path: str, scope: str = "default",
               scope_id: int = 0) -> str | None:
    """The ``core_config_data`` value at ``path`` for that scope, ``None`` without a row."""
    for row in read_db(db_path).get("core_config_data", []):
        if _row_key(row) == (scope, int(scope_id), path):
            return row.get("value")
    return None


def _row_key(row: dict) -> tuple[str, int, str]:
    return (row.get("scope", "default"), int(row.get("scope_id", 0)), row.get("path", ""))


def _update_db(db_path: Path, change: Any) -> None:
    """Read-modify-write of the JSON database under the ``flock`` the PHP side takes."""
    with open(db_path, "r+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        text = handle.read()
        data = json.loads(text) if text.strip() else {}
        change(data)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(data, indent=4) + "\n")
        handle.flush()


# --------------------------------------------------------------------------- storefront


_HARNESS = r"""
[$script, $entry, $remote, $uri, $server] = $argv;
$_SERVER['REMOTE_ADDR'] = $remote;
$_SERVER['REQUEST_URI'] = $uri;
$_SERVER['SCRIPT_NAME'] = '/' . basename($entry);
$_SERVER['SCRIPT_FILENAME'] = $entry;
$_SERVER['REQUEST_METHOD'] = 'GET';
$_SERVER['HTTP_HOST'] = 'localhost';
$_SERVER = array_replace($_SERVER, (array)json_decode($server, true));
parse_str((string)parse_url($uri, PHP_URL_QUERY), $_GET);
register_shutdown_function(static function (): void {
    $code = http_response_code();  // false in the CLI until a script sets one
    fwrite(STDERR, "\n@@status=" . ($code === false ? 200 : $code) . "\n");
});
chdir(dirname($entry));
require $entry;
"""


def run_pub(release: Path | str, script: str = "index.php", *, uri: str = "/",
            remote_addr: str = "127.0.0.1", php: str = "php",
            server: dict[str, str] | None = None) -> tuple[int, str]:
    """Run ``<release>/pub/<script>`` with the PHP CLI as a web request for ``uri``;
    return (HTTP status, body). ``$_GET`` comes from ``uri``'s query string; ``server``
    adds or replaces ``$_SERVER`` entries (default ``HTTP_HOST`` is ``localhost``), e.g.
    ``{"HTTP_HOST": "shop.test", "HTTPS": "on"}``.

    For tests without a web server: through nginx + php-fpm the same answer comes back.
    The PHP CLI drops response headers: for them (a redirect's ``Location``) use
    :func:`serve_pub` and :func:`http_request`.
    """
    entry = Path(release) / "pub" / script
    proc = subprocess.run([php, "-r", _HARNESS, str(entry), remote_addr, uri,
                           json.dumps(server or {})],
                          capture_output=True, text=True, timeout=30)
    match = re.search(r"@@status=(\d+)", proc.stderr)
    if match is None:
        raise RuntimeError(f"{script} did not finish (exit {proc.returncode}): {proc.stderr}")
    return int(match.group(1)), proc.stdout


def storefront(release: Path | str, *, remote_addr: str = "127.0.0.1", uri: str = "/",
               php: str = "php", server: dict[str, str] | None = None) -> tuple[int, str]:
    """Run ``<release>/pub/index.php`` with the PHP CLI; return (HTTP status, body)."""
    return run_pub(release, "index.php", uri=uri, remote_addr=remote_addr, php=php,
                   server=server)


# The built-in web server's router, like Magento's nginx.conf.sample for pub/: an existing
# file is served as is (PHP scripts run), anything else goes to index.php.
_ROUTER = r"""<?php
if (getenv('FAKESHOP_HTTPS') === '1') {
    $_SERVER['HTTPS'] = 'on';
}
$path = (string)parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
if ($path !== '/' && is_file($_SERVER['DOCUMENT_ROOT'] . $path)) {
    return false;
}
$_SERVER['SCRIPT_NAME'] = $_SERVER['PHP_SELF'] = '/index.php';
$_SERVER['SCRIPT_FILENAME'] = $_SERVER['DOCUMENT_ROOT'] . '/index.php';
chdir($_SERVER['DOCUMENT_ROOT']);
require $_SERVER['SCRIPT_FILENAME'];
"""


@dataclass
class HttpAnswer:
    status: int
    headers: dict[str, str]  # names in lower case
    body: str


@contextmanager
def serve_pub(release: Path | str, *, https: bool = False, php: str = "php",
              workers: int = 4) -> Iterator[str]:
    """Serve ``<release>/pub`` over HTTP with PHP's built-in web server (the cli-server
    SAPI: real requests and response headers, standing in for nginx + php-fpm); yield
    its base URL ``http://127.0.0.1:<port>``.

    ``https=True``: a listener behind which TLS ended, as nginx tells PHP-FPM with
    ``fastcgi_param HTTPS on``: every request has ``$_SERVER['HTTPS'] = 'on'``.
    ``workers`` requests are served at once (``PHP_CLI_SERVER_WORKERS``).
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="fakeshop-router-") as tmp:
        router = Path(tmp) / "router.php"
        router.write_text(_ROUTER)
        env = {**os.environ, "FAKESHOP_HTTPS": "1" if https else "0",
               "PHP_CLI_SERVER_WORKERS": str(workers)}
        proc = subprocess.Popen(
            [php, "-S", f"127.0.0.1:{port}", "-t", str(Path(release) / "pub"), str(router)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)  # its own process group: the workers go with it
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"php -S did not start on port {port}") from None
                    time.sleep(0.05)
            yield f"http://127.0.0.1:{port}"
        finally:
            _kill_group(proc)


def _kill_group(proc: subprocess.Popen) -> None:
    """End ``php -S`` and its workers (a worker may be busy in a hung request)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            continue
        try:  # the parent is gone; are workers left?
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)


def http_request(base: str, path: str = "/", *, host: str | None = None,
                 headers: dict[str, str] | None = None, method: str = "GET",
                 timeout: float = 15.0) -> HttpAnswer:
    """One HTTP request to ``base`` (e.g. from :func:`serve_pub`) for ``path``, redirects
    not followed; ``host`` is the Host header (default: ``base``'s address and port).
    A request still unanswered after ``timeout`` seconds raises ``TimeoutError``."""
    target = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(target.hostname, target.port, timeout=timeout)
    try:
        all_headers = {"Host": host or target.netloc, **(headers or {})}
        conn.request(method, path, headers=all_headers)
        response = conn.getresponse()
        body = response.read().decode("utf-8", "replace")
        return HttpAnswer(response.status, {k.lower(): v for k, v in response.getheaders()},
                          body)
    except TimeoutError as exc:
        raise TimeoutError(f"no answer from {base}{path} within {timeout} s") from exc
    finally:
        conn.close()


def stylesheet_url(body: str) -> str | None:
    """The first ``/static/`` stylesheet a page links (what a browser fetches next)."""
    match = re.search(r'<link\b[^>]*\bhref="(/static/[^"]+)"', body)
    return html.unescape(match.group(1)) if match else None


def page_text(body: str) -> str:
    """Page text with HTML entities decoded (error pages escape the message, like Magento)."""
    return html.unescape(re.sub(r"<[^>]+>", "", body))


def page_fields(body: str) -> dict[str, str]:
    """``{"label": ..., "bp": ..., "static": ..., "mode": ...}`` of a successful page."""
    return dict(re.findall(r"^(label|bp|static|mode)=(.*)$", html.unescape(body), re.M))


# --------------------------------------------------------------------------- PHP arrays


def read_config_php(tree: Path) -> dict:
    data = parse_php_return((Path(tree) / CONFIG_FILE).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{tree / CONFIG_FILE} does not return an array")
    return data


def php_export(data: dict) -> str:
    """A PHP file returning ``data``, formatted exactly like Magento's PhpFormatter."""
    return "<?php\nreturn " + _export(data, 1) + ";\n"


def _export(value: Any, depth: int) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, (list, tuple)):
        items = list(enumerate(value))
    elif isinstance(value, dict):
        items = [(_php_key(k), v) for k, v in value.items()]
    else:
        raise TypeError(f"cannot export {type(value).__name__} to PHP")
    indexed = len(items) > 0 and [k for k, _ in items] == list(range(len(items)))
    lines = [
        "    " * depth + ("" if indexed else _export(k, 0) + " => ") + _export(v, depth + 1)
        for k, v in items
    ]
    return "[\n" + ",\n".join(lines) + "\n" + "    " * (depth - 1) + "]"


def _php_key(key: Any) -> Any:
    """PHP turns decimal-integer string keys into ints."""
    if isinstance(key, str) and re.fullmatch(r"-?[1-9][0-9]*|0", key):
        return int(key)
    return key


_TOKEN = re.compile(
    r"""(?P<skip>\s+|//[^\n]*|\#[^\n]*|/\*.*?\*/)
      | (?P<sq>'(?:[^'\\]|\\.)*')
      | (?P<dq>"(?:[^"\\]|\\.)*")
      | (?P<num>-?\d+(?:\.\d+)?)
      | (?P<arrow>=>)
      | (?P<punct>[\[\](),;])
      | (?P<word>[A-Za-z_][A-Za-z0-9_]*)""",
    re.X | re.S,
)


def parse_php_return(text: str) -> Any:
    """Value of ``<?php return <array literal>;`` (the subset config/env files use)."""
    text = re.sub(r"^\s*<\?php", "", text, count=1)
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ValueError(f"cannot parse PHP near {text[pos:pos + 30]!r}")
        pos = match.end()
        if match.lastgroup != "skip":
            tokens.append((match.lastgroup or "", match.group()))
    if not tokens or tokens[0] != ("word", "return"):
        raise ValueError("expected 'return'")
    return _parse_value(tokens, 1)[0]


def _parse_value(tokens: list[tuple[str, str]], i: int) -> tuple[Any, int]:
    kind, text = tokens[i]
    if kind == "sq":
        return re.sub(r"\\([\\'])", r"\1", text[1:-1]), i + 1
    if kind == "dq":
        return json.loads(text), i + 1
    if kind == "num":
        return (float(text) if "." in text else int(text)), i + 1
    if kind == "word" and text.lower() in ("true", "false", "null"):
        return {"true": True, "false": False, "null": None}[text.lower()], i + 1
    if text == "[":
        return _parse_array(tokens, i + 1, "]")
    if kind == "word" and text.lower() == "array" and tokens[i + 1][1] == "(":
        return _parse_array(tokens, i + 2, ")")
    raise ValueError(f"unexpected PHP token {text!r}")


def _parse_array(tokens: list[tuple[str, str]], i: int, close: str) -> tuple[Any, int]:
    result: dict[Any, Any] = {}
    next_index = 0
    while tokens[i][1] != close:
        value, i = _parse_value(tokens, i)
        if tokens[i][0] == "arrow":
            key = _php_key(value)
            value, i = _parse_value(tokens, i + 1)
        else:
            key = next_index
        result[key] = value
        if isinstance(key, int):
            next_index = max(next_index, key + 1)
        if tokens[i][1] == ",":
            i += 1
    if list(result) == list(range(len(result))) and result:
        return list(result.values()), i + 1
    return result, i + 1
