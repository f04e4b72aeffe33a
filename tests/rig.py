"""Several real "web hosts" on one machine, for deploy tests that must not be simulated.

Why real daemons: the failures a Magento deploy can cause (a release half-copied on one
host, a symlink switched on two hosts out of three, FPM workers serving the old release
from their realpath cache) only show with a real ``sshd``, a real ``php-fpm`` and a real
``nginx``. Mocks of Fabric would only test our assumptions about them.

Each :class:`WebHost` is:

* a private mount namespace, kept alive by a holder process (``unshare --mount
  --propagation private sleep infinity``), in which a per-host directory is bind-mounted
  over ``/srv``. Every host therefore has the *same* ``DEPLOY_PATH`` (``/srv/shop``) and
  the same FPM socket path, on separate filesystems: exactly the situation of a real
  cluster, where a command run on the wrong host, or on one host only, leaves a visible
  difference;
* its own loopback address (``127.X.Y.K``, ``X.Y`` random per rig so concurrent runs do
  not clash) with its own OpenSSH ``sshd`` started *inside* the namespace, so an SSH
  session sees that host's ``/srv``;
* optionally (:meth:`Rig.start_web`) its own ``php-fpm`` 8.2 (pool running as the deploy
  user, OPcache on, ``validate_timestamps=0``) and ``nginx`` configured with the rules of
  Magento 2.4.7's ``nginx.conf.sample`` (production mode): static signature stripped
  only when it is digits, missing static files sent to ``static.php``, missing media to
  ``get.php``, PHP run only for Magento's entry points, every other ``.php`` denied, 404
  and 403 answered by ``errors/404.php``, and the stale-prone ``$document_root``
  FastCGI path. That default server answers any name on the host's address (``url()``);
  ``start_web(shop_name=...)`` adds the shop's own vhost as production hosts have it:
  ``server_name <shop>`` on port 80, optionally TLS on 443 (a self-signed certificate, or
  one signed by the rig's CA, which the hosts then trust), a ``301`` to https, HTTP basic
  auth. The shop name never resolves: clients inside a host use ``curl --resolve``
  (:meth:`WebHost.curl_resolve`).

nginx listens on the host's own address only (never ``127.0.0.1`` or ``0.0.0.0``: see
:meth:`WebHost.listening`), on the same HTTP and HTTPS ports on every host of a rig
(:attr:`Rig.http_port`, :attr:`Rig.https_port`): 80 and 443 when they are free on all the
rig's addresses, else one free port common to all of them.

TLS files live in :attr:`Rig.tls_dir` (``<rig>/tls``), made with the ``openssl`` CLI when
first needed: the CA (:attr:`Rig.ca_cert`, once per rig) and one certificate per shop name
and variant. A host trusts the CA (:meth:`Rig.trust_ca`, done for every host by
``start_web(tls="ca")``) through a bind mount, in its own mount namespace, of the system
bundle plus the CA over ``/etc/ssl/certs/ca-certificates.crt``: curl, PHP's curl and
OpenSSL on the rig hosts trust it, the machine itself never does.

Everything outside ``/srv`` is the machine's own filesystem and is seen by every host,
including the deploy user's home (like an NFS ``/home``: ``git config --global`` made once
applies everywhere). :attr:`Rig.common` (``/var/tmp/magerig-<id>/common``) is where the
shared fake database and the git repositories live.

Cleanup: :meth:`Rig.stop` (also run at interpreter exit) kills every daemon, every process
still inside a host's namespace and the holders, then removes the rig directory. Each
daemon is started under ``setpriv --pdeathsig`` so that it dies with the test process even
when that one is SIGKILLed, and directories of rigs whose owner died are removed by the
next :func:`make_rig`.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import fcntl
import grp
import json
import os
import pwd
import random
import re
import secrets
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

import fabric

SSHD = "/usr/sbin/sshd"
PHP_FPM = "/usr/sbin/php-fpm8.2"
NGINX = "/usr/sbin/nginx"
UNSHARE = "/usr/bin/unshare"
NSENTER = "/usr/bin/nsenter"
SETPRIV = "/usr/bin/setpriv"
SSH_KEYGEN = "/usr/bin/ssh-keygen"
MOUNT = "/usr/bin/mount"
OPENSSL = "/usr/bin/openssl"
NGINX_FASTCGI_PARAMS = "/etc/nginx/fastcgi_params"
# The bundle curl, PHP (curl and OpenSSL streams) and Python read on Debian; a host that
# trusts the rig's CA sees its own copy of it (see Rig.trust_ca).
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
TLS_VARIANTS = ("self-signed", "ca")

DEPLOY_USER = "deployer"
DEPLOY_PATH = "/srv/shop"
FPM_SOCKET = "/srv/run/php-fpm.sock"
FPM_WORKERS = 4
RIG_PARENT = Path("/var/tmp")
RIG_PREFIX = "magerig-"
START_TIMEOUT = 10.0
_LOCK_FILE = RIG_PARENT / "magerig.lock"

# Ports every host would use on a real cluster; a host falls back to a free port when one
# is taken on its address (e.g. a system sshd listening on 0.0.0.0:22). HTTP and HTTPS
# fall back per rig instead, to one port free on every host's address (Rig.http_port).
SSH_PORT = 22
HTTP_PORT = 80
HTTPS_PORT = 443
FPM_TCP_PORT = 9000


class RigError(RuntimeError):
    """The rig could not be built or a daemon did not start; the message has its log tail."""


class ShError(subprocess.CalledProcessError):
    """A :meth:`WebHost.sh` command failed; ``str()`` names the host and shows its output."""

    def __init__(self, host: str, proc: subprocess.CompletedProcess[str]) -> None:
        super().__init__(proc.returncode, proc.args, proc.stdout, proc.stderr)
        self.host = host

    def __str__(self) -> str:
        command = self.cmd[-1] if isinstance(self.cmd, list) else self.cmd
        return (
            f"[{self.host}] exit {self.returncode}: {command}\n"
            f"--- stdout\n{_tail(self.stdout)}\n--- stderr\n{_tail(self.stderr)}"
        )


def _tail(text: str | None, lines: int = 25) -> str:
    return "\n".join((text or "").rstrip().splitlines()[-lines:])


IN_CI = os.environ.get("CI", "").lower() in ("true", "1")


def skip_or_fail(message: str) -> None:
    """Skip a test whose tools are missing; under ``CI=true`` fail it instead, because
    there a missing tool is a broken CI setup, never a reason to pass."""
    import pytest

    if IN_CI:
        pytest.fail(message + " (CI=true: refusing to skip)", pytrace=False)
    pytest.skip(message)


def missing_requirements(*, web: bool = False, tls: bool = False) -> list[str]:
    """Why a rig cannot run here (empty list = it can). Used by conftest to skip or fail.

    Checked up front so that a developer without root gets one precise skip reason instead
    of a confusing failure halfway through a fixture. ``tls=True`` also requires what
    ``start_web(tls=...)`` and ``basic_auth`` need: the ``openssl`` CLI and the system CA
    bundle (package ``ca-certificates``).
    """
    if not sys.platform.startswith("linux"):
        return [f"needs Linux mount namespaces, this is {sys.platform}"]
    reasons = []
    if os.geteuid() != 0:
        reasons.append("needs root (mount namespaces, sshd, useradd)")
    tools = [SSHD, UNSHARE, NSENTER, SETPRIV, SSH_KEYGEN, MOUNT]
    if web:
        tools += [PHP_FPM, NGINX]
    if tls:
        tools += [OPENSSL]
    reasons += [f"{tool} is missing" for tool in tools if not os.access(tool, os.X_OK)]
    if tls and not os.path.isfile(SYSTEM_CA_BUNDLE):
        reasons.append(f"{SYSTEM_CA_BUNDLE} is missing (package ca-certificates)")
    for tool in ("useradd", "usermod"):
        if shutil.which(tool, path="/usr/sbin:/sbin:/usr/bin:/bin") is None:
            reasons.append(f"{tool} is missing")
    if not reasons:
        probe = subprocess.run(
            [UNSHARE, "--mount", "--propagation", "private", "true"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode != 0:
            reasons.append(f"unshare --mount fails here: {probe.stderr.strip()}")
    return reasons


# --------------------------------------------------------------------------- processes


def _start_time(pid: int) -> str | None:
    """Kernel start time of a process, to tell a pid from a recycled one."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _mount_ns(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def _pids_in_namespace(ns: str, exclude: Iterable[int] = ()) -> list[int]:
    """Every process whose mount namespace is ``ns``: what a host's cleanup must kill."""
    skip = set(exclude)
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in skip and _mount_ns(entry) == ns:
            found.append(int(entry))
    return found


def _parents(pids: Iterable[int]) -> dict[int, int]:
    """pid -> parent pid, for the processes still there."""
    found = {}
    for pid in pids:
        try:
            found[pid] = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return found


def _descendants(root: int, parents: dict[int, int]) -> set[int]:
    """``root`` and every process below it in ``parents`` (see :func:`_parents`)."""
    found = {root}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in found and pid not in found:
                found.add(pid)
                grew = True
    return found


def _kill(pid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Wait until none of ``pids`` exists (zombies of other parents count as gone)."""
    pending = list(pids)
    deadline = time.monotonic() + timeout
    while pending:
        alive = []
        for pid in pending:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z":
                alive.append(pid)
        pending = alive
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.005)
    return pending


def _wait_for_log(
    log: Path, needle: str, proc: subprocess.Popen[bytes], what: str, offset: int = 0
) -> None:
    """Poll a daemon's log for its readiness line (the port may open before it is usable)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            with log.open("rb") as fh:
                fh.seek(offset)
                if needle.encode() in fh.read():
                    return
        except FileNotFoundError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.003)
    text = log.read_bytes()[offset:].decode(errors="replace") if log.exists() else "(no log)"
    state = f"exited {proc.returncode}" if proc.poll() is not None else "still not ready"
    raise RigError(f"{what} {state} after start; log {log}:\n{_tail(text)}")


def _free_port(address: str, preferred: int) -> int:
    """``preferred`` if nobody can be bound there, else a port the kernel picks."""
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind((address, port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RigError(f"no free TCP port on {address}")


def _bindable(address: str, port: int) -> bool:
    """Whether nginx could listen on ``address:port`` (it sets SO_REUSEADDR too, so a port
    left in TIME_WAIT counts as free; one somebody listens on does not)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


def _common_free_port(addresses: list[str], preferred: int, avoid: Iterable[int] = ()) -> int:
    """``preferred`` if it is free on every address, else one port free on all of them:
    the hosts of a cluster serve the shop on the same port."""
    skip = set(avoid)
    for attempt in range(50):
        port = preferred if attempt == 0 else _free_port(addresses[0], 0)
        if port not in skip and all(_bindable(address, port) for address in addresses):
            return port
    raise RigError(f"no TCP port free on all of {addresses}")


def _listening(pids: Iterable[int]) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state that one of ``pids`` holds,
    read from /proc (what ``ss -ltnp`` shows for them)."""
    inodes = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[len("socket:[") : -1])
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            addr_hex, port_hex = fields[1].split(":")
            raw = bytes.fromhex(addr_hex)  # host-order 32-bit words
            packed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add((socket.inet_ntop(family, packed), int(port_hex, 16)))
    return found


def _accepts(address: str, port: int) -> bool:
    """Whether something accepts TCP connections on ``address:port``."""
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((address, port)) == 0


def _reap(procs: list[subprocess.Popen[bytes]], timeout: float) -> None:
    """Wait for terminated processes, killing those still alive after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


# --------------------------------------------------------------------------- config files


def _sshd_config(host: WebHost, authorized_keys: Path) -> str:
    return f"""\
# sshd of rig host {host.name}: started inside the host's mount namespace.
ListenAddress {host.address}:{host.ssh_port}
HostKey {host._etc}/ssh_host_ed25519_key
PidFile /srv/run/sshd.pid
AuthorizedKeysFile {authorized_keys}
AllowUsers {DEPLOY_USER}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxStartups 100:30:200
MaxSessions 100
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
Subsystem sftp internal-sftp
LogLevel INFO
"""


def _php_ini(opcache: bool) -> str:
    return f"""\
; php.ini of the rig's php-fpm: production-like OPcache, so stale code shows as it would.
[PHP]
memory_limit = 512M
display_errors = Off
log_errors = On
error_reporting = E_ALL
expose_php = Off
date.timezone = UTC
; PHP's defaults, stated because the stale-release behaviour depends on them.
realpath_cache_size = 4096K
realpath_cache_ttl = 120

[opcache]
opcache.enable = {1 if opcache else 0}
opcache.enable_cli = 0
opcache.validate_timestamps = 0
; Cache files even when they were written a moment ago (tests deploy within seconds).
opcache.file_update_protection = 0
opcache.memory_consumption = 64
opcache.max_accelerated_files = 20000
"""


def _fpm_pool(name: str, listen: str, extra: str = "") -> str:
    return f"""\
[{name}]
user = {DEPLOY_USER}
group = {DEPLOY_USER}
listen = {listen}
{extra}pm = static
pm.max_children = {FPM_WORKERS}
catch_workers_output = yes
decorate_workers_output = no
"""


def _fpm_config(tcp: str | None) -> str:
    owner = f"listen.owner = {DEPLOY_USER}\nlisten.group = {DEPLOY_USER}\nlisten.mode = 0660\n"
    text = f"""\
[global]
pid = /srv/run/php-fpm.pid
error_log = /srv/log/php-fpm.log
log_level = notice
daemonize = no

{_fpm_pool("www", FPM_SOCKET, owner)}"""
    if tcp:
        # A second pool of the same master: it shares the OPcache memory with "www".
        text += "\n" + _fpm_pool("tcp", tcp)
    return text


# File types the storefront serves from pub/static and pub/media as long-lived assets, and
# the downloadable ones it must not let browsers cache (both lists as in Magento 2.4.7).
_ASSETS = (
    "ico|jpg|jpeg|png|gif|svg|svgz|webp|avif|avifs|js|css|eot|ttf|otf|woff|woff2|html|json"
    "|webmanifest"
)
_MEDIA_ASSETS = "ico|jpg|jpeg|png|gif|svg|svgz|webp|avif|avifs|js|css|eot|ttf|otf|woff|woff2"
_DOWNLOADS = "zip|gz|gzip|bz2|csv|xml"
# Entry points of a Magento 2.4 pub/: the only PHP files the web server may run.
ENTRY_POINTS = "index|get|static|errors/report|errors/404|errors/503|health_check"
# Where missing static files go: the path after /static/ (minus a digits-only signature)
# becomes static.php's "resource" parameter.
_TO_STATIC_PHP = r"rewrite ^/static/(version\d*/)?(.*)$ /static.php?resource=$2 last;"


def _nginx_config(host: WebHost, extra_locations: str = "") -> str:
    """nginx.conf of a host: the rules of Magento 2.4.7's ``nginx.conf.sample`` that a
    deploy can break, in production mode, behind the rig's own listen address.

    Why these rules and not simpler ones: visitors only see what the web server lets
    through. The static signature rule accepts digits only (``version\\d*``), so a
    ``--content-version`` with dots turns every versioned CSS/JS URL into a
    ``static.php`` request, which answers 404 in production; only entry points run PHP,
    so a one-time script in ``pub/`` needs its own ``location`` (``extra_locations``,
    placed before the final deny, as ``docs/opcache.md`` tells users). SCRIPT_FILENAME
    uses ``$document_root`` on purpose: with it FPM workers keep serving the old release
    after ``current`` moves (see FACTS.md, OPcache).

    Servers: the default one (``server_name <host name>``, any name or none on the host's
    address and HTTP port, as before shop vhosts existed) and, with ``host.shop_name``,
    the shop's own vhost: the same rules by name on the HTTP port (or a ``301`` to
    https), and on the HTTPS port with the shop's certificate and ``HTTPS on`` for PHP.
    Every ``listen`` names the host's own address.
    """
    rules = _magento_rules(extra_locations)
    servers = [
        _server(
            "The host's default server: any name (or none) on its address, no TLS, no auth.",
            [f"listen {host.address}:{host.http_port} default_server;",
             f"server_name {host.name};"],
            rules,
        )
    ]
    servers += _shop_servers(host, extra_locations)
    servers_text = "\n".join(servers)
    return f"""\
# nginx of rig host {host.name}, generated by tests/rig.py.
daemon off;
master_process on;
user {host.nginx_user};
worker_processes 2;
pid /srv/run/nginx.pid;
error_log /srv/log/nginx-error.log notice;

events {{
    worker_connections 512;
}}

http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log /srv/log/nginx-access.log;
    sendfile on;
    keepalive_timeout 5;
    client_body_temp_path /srv/run/nginx/body;
    proxy_temp_path /srv/run/nginx/proxy;
    fastcgi_temp_path /srv/run/nginx/fastcgi;
    uwsgi_temp_path /srv/run/nginx/uwsgi;
    scgi_temp_path /srv/run/nginx/scgi;

    # The name Magento's sample (and docs/opcache.md) pass PHP requests to.
    upstream fastcgi_backend {{
        server unix:{FPM_SOCKET};
    }}

{servers_text}}}
"""


def _server(comment: str, head: list[str], body: str) -> str:
    """One ``server`` block of nginx.conf: ``head`` directives, then ``body`` (indented)."""
    lines = "".join(f"        {line}\n" for line in head)
    return f"    # {comment}\n    server {{\n{lines}{body}\n    }}\n"


def _shop_servers(host: WebHost, extra_locations: str) -> list[str]:
    """The vhost of ``host.shop_name`` (none without one): port 80 serving the shop or
    redirecting to https, port 443 with the certificate, basic auth on what serves it."""
    if host.shop_name is None:
        return []
    name = host.shop_name
    auth = []
    if host.basic_auth is not None:
        auth = [f'auth_basic "{name}";', f"auth_basic_user_file {host._etc / 'htpasswd'};"]
    http_head = [f"listen {host.address}:{host.http_port};", f"server_name {name};"]
    if host.redirect_https:
        # Production's line; the port only appears when the rig could not get 443.
        port = "" if host.https_port == HTTPS_PORT else f":{host.https_port}"
        servers = [_server(f"{name} over http: sent to https, as production vhosts do.",
                           http_head, f"        return 301 https://$host{port}$request_uri;")]
    else:
        servers = [_server(f"{name} over http.", http_head + auth,
                           _magento_rules(extra_locations))]
    if host.tls is not None:
        head = [f"listen {host.address}:{host.https_port} ssl;", f"server_name {name};",
                f"ssl_certificate {host.tls_cert};", f"ssl_certificate_key {host._tls_key};"]
        servers.append(_server(f"{name} over https ({host.tls} certificate).", head + auth,
                               _magento_rules(extra_locations, https=True)))
    return servers


def _magento_rules(extra_locations: str, *, https: bool = False) -> str:
    """The body of a server that serves the shop: Magento 2.4.7's sample rules."""
    entry = _php_location(f"~ ^/({ENTRY_POINTS})\\.php$", https=https)
    extra = textwrap.indent(extra_locations.strip("\n"), " " * 8) + "\n" if extra_locations else ""
    return f"""\
        # The web root follows the "current" symlink: a switch changes what is served.
        root {DEPLOY_PATH}/current/pub;
        index index.php;
        autoindex off;
        charset UTF-8;
        # Anything missing or forbidden is answered by Magento's own 404 page.
        error_page 404 403 = /errors/404.php;

        location /.user.ini {{
            deny all;
        }}

        # Storefront URLs that are not files go to the front controller.
        location / {{
            try_files $uri $uri/ /index.php$is_args$args;
        }}

        location /static/ {{
            # Drop the deployment signature, digits only: /static/version123/x -> /static/x.
            location ~ ^/static/version\\d*/ {{
                rewrite ^/static/version\\d*/(.*)$ /static/$1 last;
            }}
            # Assets: served from disk when deployed, else Magento is asked to publish them.
            location ~* \\.({_ASSETS})$ {{
                add_header Cache-Control "public";
                add_header X-Frame-Options "SAMEORIGIN";
                expires +1y;
                if (!-f $request_filename) {{
                    {_TO_STATIC_PHP}
                }}
            }}
            location ~* \\.({_DOWNLOADS})$ {{
                add_header Cache-Control "no-store";
                add_header X-Frame-Options "SAMEORIGIN";
                expires off;
                if (!-f $request_filename) {{
                    {_TO_STATIC_PHP}
                }}
            }}
            # Any other file type: the same fallback.
            if (!-f $request_filename) {{
                {_TO_STATIC_PHP}
            }}
            add_header X-Frame-Options "SAMEORIGIN";
        }}

        # Media that is not on disk (resized images, database storage) comes from get.php.
        location /media/ {{
            try_files $uri $uri/ /get.php$is_args$args;
            location ~ ^/media/theme_customization/.*\\.xml {{
                deny all;
            }}
            location ~* \\.({_MEDIA_ASSETS})$ {{
                add_header Cache-Control "public";
                add_header X-Frame-Options "SAMEORIGIN";
                expires +1y;
                try_files $uri $uri/ /get.php$is_args$args;
            }}
            location ~* \\.({_DOWNLOADS})$ {{
                add_header Cache-Control "no-store";
                add_header X-Frame-Options "SAMEORIGIN";
                expires off;
                try_files $uri $uri/ /get.php$is_args$args;
            }}
            add_header X-Frame-Options "SAMEORIGIN";
        }}
        location /media/customer/ {{
            deny all;
        }}
        location /media/downloadable/ {{
            deny all;
        }}
        location /media/import/ {{
            deny all;
        }}
        location /media/custom_options/ {{
            deny all;
        }}
        location /errors/ {{
            location ~* \\.xml$ {{
                deny all;
            }}
        }}

        # The only PHP nginx runs: Magento's entry points.
{entry}
{extra}
        # Every other PHP file, templates, .htaccess and git data: refused. Regex
        # locations are tried in order, so this only catches what the ones above did not.
        location ~* (\\.php$|\\.phtml$|\\.htaccess$|\\.htpasswd$|\\.git) {{
            deny all;
        }}"""


OPCACHE_DOC = Path(__file__).resolve().parent.parent / "docs" / "opcache.md"


def documented_opcache_location(doc: Path = OPCACHE_DOC) -> str:
    """The nginx ``location`` block ``docs/opcache.md`` tells users to add for the ``url``
    strategy, read from the doc itself: tests run exactly what users are told to paste,
    so a wrong block in the doc fails them."""
    blocks = re.findall(r"```nginx\n(.*?)```", doc.read_text(), re.S)
    found = [textwrap.dedent(b) for b in blocks if "opcache-reset" in b and "location" in b]
    if len(found) != 1:
        raise RigError(f"{doc}: expected one nginx block with the opcache-reset location, "
                       f"found {len(found)}")
    return found[0]


def _php_location(match: str, *, https: bool = False) -> str:
    """The entry-point ``location``: FastCGI to the pool, ``$document_root`` path; on the
    TLS server ``HTTPS on`` (as Magento setups add: PHP's ``$_SERVER['HTTPS']``)."""
    tls = "\n            fastcgi_param HTTPS on;" if https else ""
    return f"""\
        location {match} {{
            try_files $uri =404;
            fastcgi_pass fastcgi_backend;
            fastcgi_buffers 16 16k;
            fastcgi_buffer_size 32k;
            fastcgi_param PHP_FLAG "session.auto_start=off \\n suhosin.session.cryptua=off";{tls}
            # The sample allows 600 s; a test must not hang that long on a stuck worker.
            fastcgi_read_timeout 60s;
            fastcgi_connect_timeout 60s;
            fastcgi_index index.php;
            fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
            include fastcgi_params;
        }}"""


# --------------------------------------------------------------------------- TLS, basic auth

# A minimal openssl config, so that the certificates do not depend on the machine's
# openssl.cnf: every extension comes from the -extfile below.
_REQ_CONFIG = "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\n"
_CA_EXTENSIONS = """\
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""
_SERVER_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:{name}
subjectKeyIdentifier = hash
"""
CERT_DAYS = 30
_SHOP_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")


def _openssl(*args: str | Path, input: str | None = None) -> str:
    proc = subprocess.run(
        [OPENSSL, *map(str, args)], input=input, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RigError(f"openssl {args[0]} failed (exit {proc.returncode}):\n"
                       f"{_tail(proc.stderr)}")
    return proc.stdout


def _make_cert(
    directory: Path, stem: str, subject: str, extensions: str, issuer: tuple[Path, Path] | None
) -> tuple[Path, Path]:
    """``directory/stem.crt`` and ``.key`` (EC P-256, ``CERT_DAYS`` days): signed by
    ``issuer`` (its cert and key) or, without one, by its own key (self-signed)."""
    key, csr, crt = (directory / f"{stem}.{ext}" for ext in ("key", "csr", "crt"))
    directory.mkdir(mode=0o755, exist_ok=True)
    config = directory / "req.cnf"
    if not config.exists():
        _write(config, _REQ_CONFIG)
    extfile = _write(directory / f"{stem}.ext", extensions)
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", key, "-subj", f"/CN={subject}", "-config", config,
             "-out", csr)
    key.chmod(0o600)
    if issuer is None:
        signer: list[str | Path] = ["-signkey", key]
    else:
        signer = ["-CA", issuer[0], "-CAkey", issuer[1], "-set_serial", str(secrets.randbits(63))]
    _openssl("x509", "-req", "-in", csr, *signer, "-days", str(CERT_DAYS),
             "-extfile", extfile, "-out", crt)
    csr.unlink()
    return crt, key


def _apr1(password: str) -> str:
    """``openssl passwd -apr1`` hash of ``password`` for an htpasswd file (the password
    goes through stdin, never the command line)."""
    return _openssl("passwd", "-apr1", "-stdin", input=password + "\n").strip()


@dataclasses.dataclass(frozen=True)
class _Vhost:
    """What :meth:`Rig.start_web` asked of the shop vhost, checked, with its files."""

    shop_name: str
    tls: str | None = None
    cert: Path | None = None
    key: Path | None = None
    redirect_https: bool = False
    basic_auth: tuple[str, str] | None = None


def _check_vhost(
    shop_name: str | None,
    tls: str | None,
    redirect_https: bool,
    basic_auth: tuple[str, str] | None,
) -> None:
    """Refuse a shape nginx would start with but that means nothing (ValueError)."""
    if shop_name is None:
        if tls or redirect_https or basic_auth:
            raise ValueError("tls, redirect_https and basic_auth need a shop_name vhost")
        return
    if not _SHOP_NAME.fullmatch(shop_name) or len(shop_name) > 253:
        raise ValueError(f"{shop_name!r} is not a lower-case host name")
    if tls is not None and tls not in TLS_VARIANTS:
        raise ValueError(f"tls={tls!r}: use one of {TLS_VARIANTS} or None")
    if redirect_https and tls is None:
        raise ValueError("redirect_https=True needs tls: nothing would answer the redirect")
    if basic_auth is not None:
        user, password = basic_auth
        if not user or re.search(r"[:\s]", user) or not password or "\n" in password:
            raise ValueError("basic_auth: a user without ':' or spaces, a one-line password")


# --------------------------------------------------------------------------- FastCGI


def _fcgi_record(kind: int, content: bytes, request_id: int = 1) -> bytes:
    return struct.pack("!BBHHBx", 1, kind, request_id, len(content), 0) + content


def _fcgi_pair(name: str, value: str) -> bytes:
    out = b""
    for item in (name.encode(), value.encode()):
        n = len(item)
        out += struct.pack("!B", n) if n < 128 else struct.pack("!I", n | 0x80000000)
    return out + name.encode() + value.encode()


def fastcgi_request(
    target: str | Path, script: str, *, query: str = "", timeout: float = 10.0
) -> tuple[int, str, str]:
    """Run ``script`` (a path as FPM sees it) in an FPM pool; return (status, body, stderr).

    Why: a test must be able to ask the *pool* (not the CLI, whose OPcache is separate) for
    ``opcache_get_status()``, and to do so without nginx. ``target`` is a host-side unix
    socket path or ``"host:port"``.
    """
    params = {
        "GATEWAY_INTERFACE": "CGI/1.1",
        "REQUEST_METHOD": "GET",
        "SCRIPT_FILENAME": script,
        "SCRIPT_NAME": "/" + os.path.basename(script),
        "REQUEST_URI": "/" + os.path.basename(script) + (f"?{query}" if query else ""),
        "QUERY_STRING": query,
        "DOCUMENT_ROOT": os.path.dirname(script),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_LENGTH": "0",
    }
    target = str(target)
    if target.startswith("/"):
        sock = socket.socket(socket.AF_UNIX)
        address: str | tuple[str, int] = target
    else:
        host, _, port = target.rpartition(":")
        sock = socket.socket()
        address = (host, int(port))
    stdout, stderr = b"", b""
    with sock:
        sock.settimeout(timeout)
        sock.connect(address)
        body = b"".join(_fcgi_pair(k, v) for k, v in params.items())
        sock.sendall(
            _fcgi_record(1, struct.pack("!HB5x", 1, 0))
            + _fcgi_record(4, body)
            + _fcgi_record(4, b"")
            + _fcgi_record(5, b"")
        )
        buf = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
        while len(buf) >= 8:
            _, kind, _, length, padding = struct.unpack("!BBHHBx", buf[:8])
            content, buf = buf[8 : 8 + length], buf[8 + length + padding :]
            if kind == 6:
                stdout += content
            elif kind == 7:
                stderr += content
    head, _, payload = stdout.partition(b"\r\n\r\n")
    status = 200
    for line in head.decode(errors="replace").splitlines():
        if line.lower().startswith("status:"):
            status = int(line.split(":", 1)[1].split()[0])
    return status, payload.decode(errors="replace"), stderr.decode(errors="replace")


# --------------------------------------------------------------------------- hosts


class WebHost:
    """One web host: a mount namespace with its own /srv, sshd and optionally nginx + FPM."""

    fpm_socket: str = FPM_SOCKET
    nginx_user: str = DEPLOY_USER  # who nginx's workers run as (Rig.start_web)

    def __init__(self, rig: Rig, name: str, address: str, hostdir: Path) -> None:
        self.name = name
        self.address = address
        self.ssh_port = _free_port(address, SSH_PORT)
        # While nginx runs: the rig's ports (Rig.http_port; https_port only with TLS).
        self.http_port: int | None = None
        self.https_port: int | None = None
        self.fpm_tcp: str | None = None
        self.extra_locations = ""
        # The shop vhost nginx serves (see Rig.start_web); None/False/None without one.
        self.shop_name: str | None = None
        self.tls: str | None = None  # "self-signed" or "ca"
        self.tls_cert: Path | None = None  # the certificate nginx presents on https_port
        self._tls_key: Path | None = None
        self.redirect_https = False
        self.basic_auth: tuple[str, str] | None = None
        # Whether this host's /etc/ssl/certs/ca-certificates.crt includes the rig's CA.
        self.trusts_rig_ca = False
        self.root = hostdir / "srv"  # host-side view of this host's /srv
        self._rig = rig
        self._etc = hostdir / "etc"
        self._holder: subprocess.Popen[bytes] | None = None
        self._ns: str | None = None
        self._daemons: dict[str, subprocess.Popen[bytes]] = {}

    def __repr__(self) -> str:
        return f"<WebHost {self.name} {self.address}:{self.ssh_port} root={self.root}>"

    # ---- paths and commands

    def inside(self, path: str) -> Path:
        """Host-side path of ``path`` as this host sees it: ``/srv/shop/x`` -> ``root/shop/x``.

        Purely lexical: an absolute symlink found under the result (``current`` ->
        ``/srv/shop/releases/2``) points into the *machine's* /srv when followed from
        the test process; use :meth:`realpath` to resolve links the way the host does.
        Paths outside /srv are shared by all hosts and returned as they are.
        """
        norm = os.path.normpath(path)
        if not norm.startswith("/"):
            raise ValueError(f"{path!r}: give an absolute path as the host sees it")
        if norm == "/srv" or norm.startswith("/srv/"):
            return self.root / norm[len("/srv") :].lstrip("/")
        return Path(norm)

    def realpath(self, path: str) -> str:
        """``readlink -f`` inside the host: where ``/srv/shop/current`` really points."""
        return self.sh(f"readlink -f -- {shlex.quote(path)}").stdout.strip()

    def sh(
        self,
        command: str,
        *,
        user: str = "root",
        check: bool = True,
        timeout: float = 120,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` with bash inside this host's mount namespace, as ``user``.

        A test's back door to the host (setting up fixtures, checking the result) that
        does not go through the SSH path under test. Starts in the user's home directory
        with a clean login-like environment; raises :class:`ShError` when ``check``.
        """
        home = pwd.getpwnam(user).pw_dir
        argv = [NSENTER, f"--target={self._holder_pid}", "--mount"]
        argv += [f"--wdns={home if os.path.isdir(home) else '/'}", "--", SETPRIV]
        if user != "root":
            argv += [f"--reuid={user}", f"--regid={user}", "--init-groups"]
        argv += ["--reset-env", "/bin/bash", "-c", command]
        proc = subprocess.run(
            argv,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise ShError(self.name, proc)
        return proc

    def url(self, path: str = "/") -> str:
        """``http://address:port/path`` of this host's nginx (after :meth:`Rig.start_web`)."""
        if self.http_port is None:
            raise RigError(f"{self.name}: nginx is not running, call rig.start_web() first")
        return f"http://{self.address}:{self.http_port}/{path.lstrip('/')}"

    def shop_url(self, path: str = "/", *, https: bool | None = None) -> str:
        """``https://<shop name>/path`` (``http://`` without TLS, or with ``https=False``),
        with the port only when the rig could not get 80/443. The name does not resolve:
        give curl :meth:`curl_resolve`."""
        if self.shop_name is None or self.http_port is None:
            raise RigError(f"{self.name}: no shop vhost, call rig.start_web(shop_name=...)")
        https = self.tls is not None if https is None else https
        if https and self.https_port is None:
            raise RigError(f"{self.name}: {self.shop_name} has no TLS (start_web(tls=...))")
        port, default = (self.https_port, HTTPS_PORT) if https else (self.http_port, HTTP_PORT)
        netloc = self.shop_name if port == default else f"{self.shop_name}:{port}"
        return f"{'https' if https else 'http'}://{netloc}/{path.lstrip('/')}"

    def curl_resolve(self) -> list[str]:
        """curl options that send :meth:`shop_url` requests to this host's own address
        (keeping the Host header and TLS SNI): ``--resolve NAME:PORT:ADDRESS`` per port."""
        if self.shop_name is None:
            raise RigError(f"{self.name}: no shop vhost, call rig.start_web(shop_name=...)")
        ports = [port for port in (self.http_port, self.https_port) if port]
        return [arg for port in ports
                for arg in ("--resolve", f"{self.shop_name}:{port}:{self.address}")]

    def listening(self, daemon: str = "nginx") -> set[tuple[str, int]]:
        """(address, port) of every TCP socket ``daemon`` (and its workers) listens on."""
        pid = self.daemon_pid(daemon)
        if pid is None:
            return set()
        return _listening(_descendants(pid, _parents(self.pids())))

    def fastcgi(self, script: str, *, tcp: bool = False, query: str = "") -> tuple[int, str]:
        """Execute ``script`` (path inside the host) in this host's FPM pool: (status, body)."""
        if "fpm" not in self._daemons:
            raise RigError(f"{self.name}: php-fpm is not running, call rig.start_web() first")
        if tcp and not self.fpm_tcp:
            raise RigError(f"{self.name}: php-fpm has no TCP listener (start_web(tcp=True))")
        target = self.fpm_tcp if tcp else self.inside(self.fpm_socket)
        status, body, _ = fastcgi_request(target, script, query=query)
        return status, body

    def pids(self) -> list[int]:
        """Every process now inside this host (daemons, SSH sessions, their commands)."""
        if self._ns is None:
            return []
        return _pids_in_namespace(self._ns, exclude=[self._holder_pid])

    def daemon_pid(self, name: str) -> int | None:
        """Pid of ``"sshd"``, ``"fpm"`` or ``"nginx"`` (the master process), if running."""
        proc = self._daemons.get(name)
        return proc.pid if proc is not None and proc.poll() is None else None

    # ---- life cycle

    @property
    def _holder_pid(self) -> int:
        if self._holder is None or self._holder.poll() is not None:
            raise RigError(f"{self.name}: host is not running")
        return self._holder.pid

    def _prepare(self, uid: int, gid: int) -> None:
        for sub in ("shop", "log"):
            (self.root / sub).mkdir(parents=True)
            os.chown(self.root / sub, uid, gid)
        (self.root / "run" / "nginx").mkdir(parents=True)
        self._etc.mkdir()
        self.root.chmod(0o755)
        subprocess.run(
            [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", f"rig-{self.name}"]
            + ["-f", str(self._etc / "ssh_host_ed25519_key")],
            check=True,
            stdin=subprocess.DEVNULL,
        )

    def _spawn(self, argv: list[str], pdeathsig: str = "TERM") -> subprocess.Popen[bytes]:
        # setpriv --pdeathsig: the process dies with the test process even on SIGKILL.
        # Caveat: Linux sends it when the *thread* that started it exits, so start rigs
        # from a thread that lives as long as the rig (pytest's main thread does).
        proc = subprocess.Popen(
            [SETPRIV, f"--pdeathsig={pdeathsig}", *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._rig._record(proc.pid)
        return proc

    def _enter(self, argv: list[str]) -> subprocess.Popen[bytes]:
        return self._spawn([NSENTER, f"--target={self._holder_pid}", "--mount", "--", *argv])

    def _start(self) -> None:
        holder = self._spawn(
            [UNSHARE, "--mount", "--propagation", "private", "--", "sleep", "infinity"], "KILL"
        )
        self._holder = holder
        # Wait for the exec of sleep: only then is the namespace's propagation private, so
        # our bind mounts cannot leak into the machine's namespace.
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                comm = Path(f"/proc/{holder.pid}/comm").read_text().strip()
            except OSError:
                comm = ""
            if comm == "sleep" and _mount_ns(holder.pid) != _mount_ns("self"):
                break
            if holder.poll() is not None or time.monotonic() > deadline:
                raise RigError(f"{self.name}: namespace holder exited ({holder.returncode})")
            time.sleep(0.001)
        self._ns = _mount_ns(holder.pid)
        subprocess.run(
            [NSENTER, f"--target={holder.pid}", "--mount", "--", MOUNT, "--bind"]
            + [str(self.root), "/srv"],
            check=True,
            stdin=subprocess.DEVNULL,
        )
        self.start_sshd()

    def start_sshd(self) -> None:
        """Start this host's sshd (again, after :meth:`kill_ssh`); return once it listens."""
        if self.daemon_pid("sshd"):
            raise RigError(f"{self.name}: sshd is already running")
        conf = _write(self._etc / "sshd_config", _sshd_config(self, self._rig._authorized_keys))
        log = self.root / "log" / "sshd.log"
        offset = log.stat().st_size if log.exists() else 0
        sshd = self._enter([SSHD, "-D", "-f", str(conf), "-E", "/srv/log/sshd.log"])
        self._daemons["sshd"] = sshd
        _wait_for_log(log, "Server listening", sshd, f"{self.name}: sshd", offset)

    def kill_ssh(self) -> list[int]:
        """The host dies for SSH: SIGKILL its sshd, every SSH session and every command
        those sessions run, at once (what a crash or a pulled cable looks like from the
        deploy's side). nginx and php-fpm (and their workers) keep serving, so visitors
        still get answers from this host. Returns the pids killed.
        """
        keep: set[int] = set()
        parents = _parents(self.pids())
        for name in ("fpm", "nginx"):
            pid = self.daemon_pid(name)
            if pid is not None:
                keep |= _descendants(pid, parents)
        sshd = self._daemons.pop("sshd", None)
        victims = [pid for pid in self.pids() if pid not in keep]
        for pid in victims:
            _kill(pid)
        if sshd is not None:
            sshd.wait()
        for pid in _wait_gone(victims, 5.0):
            raise RigError(f"{self.name}: process {pid} survived SIGKILL")
        return victims

    def own_crontabs(self) -> None:
        """Give the host its own cron spool (a bind mount in its namespace): crontabs live
        under /var, which the rig's hosts otherwise share with each other and the machine."""
        self.sh("mkdir -p /srv/run/crontabs && chown root:crontab /srv/run/crontabs"
                " && chmod 1730 /srv/run/crontabs"
                " && mount --bind /srv/run/crontabs /var/spool/cron/crontabs")

    def mount_tmpfs(self, path: str, size: str) -> None:
        """Put a ``size`` tmpfs (``"64m"``) over ``path`` inside this host, with the files
        ``path`` holds copied in and the owner kept: a small filesystem that can be
        filled (``fallocate``) to make writes there fail with ENOSPC. Only this host sees
        it; the test process sees the directory underneath (use :meth:`sh` to look)."""
        quoted = shlex.quote(path)
        stage = shlex.quote(f"/srv/run/tmpfs-{os.path.basename(path)}")
        self.sh(f"set -e; mkdir -p {stage}; owner=$(stat -c %u:%g {quoted});"
                f" mount -t tmpfs -o size={shlex.quote(size)},mode=0755 tmpfs {stage};"
                f" cp -a {quoted}/. {stage}/; chown \"$owner\" {stage};"
                f" mount --bind {stage} {quoted}; umount -l {stage}; rmdir {stage}")

    def unmount(self, path: str) -> None:
        """Undo :meth:`mount_tmpfs` (lazily: a worker may still hold a file there)."""
        self.sh(f"umount -l {shlex.quote(path)}")

    def _start_web(
        self,
        *,
        tcp: bool,
        opcache: bool,
        extra_locations: str = "",
        vhost: _Vhost | None = None,
    ) -> int:
        """Start php-fpm and nginx without waiting; return the FPM log offset to wait from."""
        self._stop_daemons(["nginx", "fpm"])
        self.extra_locations = extra_locations
        if tcp:
            port = self.fpm_tcp.rsplit(":", 1)[1] if self.fpm_tcp else None
            self.fpm_tcp = f"{self.address}:{port or _free_port(self.address, FPM_TCP_PORT)}"
        else:
            self.fpm_tcp = None
        self._forget_vhost()
        self.http_port = self._rig.http_port
        if vhost is not None:
            self.shop_name = vhost.shop_name
            self.redirect_https = vhost.redirect_https
            self.basic_auth = vhost.basic_auth
            if vhost.tls is not None:
                self.tls, self.https_port = vhost.tls, self._rig.https_port
                self.tls_cert, self._tls_key = vhost.cert, vhost.key
            if vhost.basic_auth is not None:
                user, password = vhost.basic_auth
                _write(self._etc / "htpasswd", f"{user}:{_apr1(password)}\n")
        ini = _write(self._etc / "php.ini", _php_ini(opcache))
        fpm_conf = _write(self._etc / "php-fpm.conf", _fpm_config(self.fpm_tcp))
        # The sample's "include fastcgi_params" is relative to nginx.conf's directory.
        shutil.copyfile(NGINX_FASTCGI_PARAMS, self._etc / "fastcgi_params")
        nginx_conf = _write(self._etc / "nginx.conf", _nginx_config(self, extra_locations))
        fpm_log = self.root / "log" / "php-fpm.log"
        offset = fpm_log.stat().st_size if fpm_log.exists() else 0
        self._daemons["fpm"] = self._enter([PHP_FPM, "-F", "-y", str(fpm_conf), "-c", str(ini)])
        self._daemons["nginx"] = self._enter(
            [NGINX, "-p", "/srv/run/nginx/", "-e", "/srv/log/nginx-error.log"]
            + ["-c", str(nginx_conf)]
        )
        return offset

    def _wait_web(self, fpm_log_offset: int) -> None:
        _wait_for_log(
            self.root / "log" / "php-fpm.log",
            "ready to handle connections",
            self._daemons["fpm"],
            f"{self.name}: php-fpm",
            fpm_log_offset,
        )
        nginx = self._daemons["nginx"]
        deadline = time.monotonic() + START_TIMEOUT
        ports = [port for port in (self.http_port, self.https_port) if port]
        while True:
            if all(_accepts(self.address, port) for port in ports):
                return
            if nginx.poll() is not None or time.monotonic() > deadline:
                text = (self.root / "log" / "nginx-error.log").read_text(errors="replace")
                raise RigError(f"{self.name}: nginx did not start:\n{_tail(text)}")
            time.sleep(0.003)

    def fpm_reload(self) -> None:
        """``SIGUSR2`` the FPM master (what ``systemctl reload php-fpm`` does, as root).

        Clears OPcache and every worker's realpath cache; the reference a non-root OPcache
        flush is compared against. Returns once FPM is ready again.
        """
        proc = self._daemons.get("fpm")
        if proc is None or proc.poll() is not None:
            raise RigError(f"{self.name}: php-fpm is not running")
        log = self.root / "log" / "php-fpm.log"
        offset = log.stat().st_size
        proc.send_signal(signal.SIGUSR2)
        _wait_for_log(log, "ready to handle connections", proc, f"{self.name}: php-fpm", offset)

    def stop_web(self) -> None:
        """Stop nginx and php-fpm on this host (sshd keeps running)."""
        self._stop_daemons(["nginx", "fpm"])
        self._forget_vhost()
        self.fpm_tcp = None

    def _forget_vhost(self) -> None:
        """Nothing served any more: no ports, no shop vhost (the CA trust stays)."""
        self.http_port = self.https_port = None
        self.shop_name = self.tls = self.tls_cert = self._tls_key = self.basic_auth = None
        self.redirect_https = False

    def _trust(self, bundle: Path) -> None:
        """Bind-mount ``bundle`` over the system CA bundle, in this host's namespace only."""
        if self.trusts_rig_ca:
            return
        subprocess.run(
            [NSENTER, f"--target={self._holder_pid}", "--mount", "--", MOUNT, "--bind"]
            + [str(bundle), SYSTEM_CA_BUNDLE],
            check=True,
            stdin=subprocess.DEVNULL,
        )
        self.trusts_rig_ca = True

    def _stop_daemons(self, names: Iterable[str], timeout: float = 5.0) -> None:
        procs = [self._daemons.pop(name) for name in names if name in self._daemons]
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        _reap(procs, timeout)

    def _terminate(self) -> list[subprocess.Popen[bytes]]:
        """First stage of stop: SIGTERM the daemons, return them to be reaped."""
        procs = list(self._daemons.values())
        self._daemons.clear()
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        return procs

    def _destroy(self) -> None:
        """Last stage of stop: kill whatever is left in the namespace, then the holder."""
        if self._ns is not None:
            for _ in range(3):  # a dying sshd session may fork once more
                leftover = self.pids()
                if not leftover:
                    break
                for pid in leftover:
                    _kill(pid)
                _wait_gone(leftover, 2.0)
        if self._holder is not None:
            if self._holder.poll() is None:
                self._holder.kill()
            self._holder.wait()
        self._forget_vhost()
        self.fpm_tcp = None
        self.trusts_rig_ca = False


# --------------------------------------------------------------------------- the rig


class Rig:
    """A set of web hosts, the deploy user's key, an ssh_config naming them, a common dir."""

    user: str = DEPLOY_USER
    deploy_path: str = DEPLOY_PATH

    def __init__(self, base: Path, n_hosts: int) -> None:
        self.base = base
        self.common = base / "common"
        self.ssh_config = base / "ssh" / "ssh_config"
        self.key = base / "ssh" / "id_ed25519"
        self._authorized_keys = base / "ssh" / "authorized_keys"
        # CA, certificates and the hosts' trust bundle, made when first needed.
        self.tls_dir = base / "tls"
        # nginx's ports on every host, chosen by the first start_web (see _common_free_port).
        self.http_port: int | None = None
        self.https_port: int | None = None
        self._state_file = base / "state.json"
        self._state: dict[str, list] = {"owner": [os.getpid(), _start_time(os.getpid())]}
        self._state["procs"] = []
        self._connections: list[fabric.Connection] = []
        self._lock = threading.Lock()
        self._stopped = False
        subnet = _pick_subnet(n_hosts)
        self.hosts = [
            WebHost(self, f"web{k}", f"{subnet}.{k}", base / "hosts" / f"web{k}")
            for k in range(1, n_hosts + 1)
        ]

    def __repr__(self) -> str:
        return f"<Rig {self.base} hosts={[h.name for h in self.hosts]}>"

    def __enter__(self) -> Rig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def host(self, name: str) -> WebHost:
        """The host called ``name`` (``"web1"``...)."""
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(f"no host {name!r} in this rig: {[h.name for h in self.hosts]}")

    # ---- clients

    def fabric_config(self) -> fabric.Config:
        """Fabric config that resolves ``web1``... through :attr:`ssh_config`, no prompts.

        ``run.in_stream=False`` because under pytest a Fabric ``run`` that mirrors stdin
        raises; the key is given explicitly and the agent ignored, so a developer's own keys
        never change what the test sees.
        """
        return fabric.Config(
            overrides={
                "ssh_config_path": str(self.ssh_config),
                "run": {"in_stream": False},
                "connect_kwargs": {
                    "key_filename": [str(self.key)],
                    "allow_agent": False,
                    "look_for_keys": False,
                },
                "timeouts": {"connect": 10},
            }
        )

    def connection(self, name: str) -> fabric.Connection:
        """An (unopened) Fabric connection to host ``name``; closed by :meth:`stop`."""
        self.host(name)
        conn = fabric.Connection(name, config=self.fabric_config())
        self._connections.append(conn)
        return conn

    def env(self, **settings: str | None) -> dict[str, str]:
        """Environment for ``fab -S rig.ssh_config ...`` run as a subprocess against this rig.

        A copy of ``os.environ`` without the developer's own ``DEPLOY_*`` values and SSH
        agent, plus ``DEPLOY_PATH``, ``DEPLOY_HOSTS`` (every host), ``DEPLOY_FPM_SOCKET``
        (only while php-fpm runs on some host) and ``MAGERIG_SSH_CONFIG``. ``settings``
        override: ``repo="..."`` or ``DEPLOY_REPO="..."`` set ``DEPLOY_REPO``; ``None``
        removes a key.
        """
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOY_")}
        env.pop("SSH_AUTH_SOCK", None)
        env["DEPLOY_PATH"] = self.deploy_path
        env["DEPLOY_HOSTS"] = ",".join(h.name for h in self.hosts)
        if any(h.daemon_pid("fpm") for h in self.hosts):
            env["DEPLOY_FPM_SOCKET"] = FPM_SOCKET
        # The health check finds each host's nginx by itself (the shop's base URL, where
        # the host listens), as on production hosts; without web servers there is nothing
        # to check. A window of 0 (every path until it answered once) keeps tests quick.
        if any(h.http_port and h.daemon_pid("nginx") for h in self.hosts):
            env["DEPLOY_HEALTH_WINDOW"] = "0"
        else:
            env["DEPLOY_HEALTH_PATHS"] = "none"
        env["MAGERIG_SSH_CONFIG"] = str(self.ssh_config)
        for key, value in settings.items():
            name = key if key.isupper() else f"DEPLOY_{key.upper()}"
            if value is None:
                env.pop(name, None)
            else:
                env[name] = str(value)
        return env

    def ssh_argv(self, name: str, command: str) -> list[str]:
        """``ssh -F rig.ssh_config NAME COMMAND`` as an argv (OpenSSH client, not paramiko)."""
        return ["ssh", "-F", str(self.ssh_config), "-o", "BatchMode=yes", name, command]

    # ---- web

    def start_web(
        self,
        hosts: Iterable[str | WebHost] | None = None,
        *,
        tcp: bool = False,
        opcache: bool = True,
        extra_locations: str = "",
        shop_name: str | None = None,
        tls: Literal["self-signed", "ca"] | None = None,
        redirect_https: bool = False,
        basic_auth: tuple[str, str] | None = None,
        nginx_user: str = DEPLOY_USER,
    ) -> None:
        """Start (or restart) php-fpm and nginx on ``hosts`` (default: all).

        ``nginx_user``: who nginx's workers run as (``www-data``: another user than the
        deploy user, who may then not inspect them, as on Debian's own nginx).

        ``tcp`` adds an FPM pool listening on ``address:port`` (see ``fpm_tcp``) next to the
        unix socket; ``opcache=False`` runs FPM without OPcache, for comparison.
        ``extra_locations``: nginx ``location`` blocks an operator adds to Magento's sample
        (e.g. the one ``docs/opcache.md`` documents for the ``url`` strategy), placed
        before the final deny of other PHP files; a restart without it removes them.

        The default server always answers on ``url()`` (any name, no TLS, no auth).
        ``shop_name`` (e.g. ``"shop.test"``) adds the production-shaped vhost
        ``server_name <shop_name>`` on :attr:`http_port`, with the same rules and
        ``extra_locations``; then:

        * ``tls="self-signed"``: also ``listen <address>:<https_port> ssl`` with a
          self-signed certificate for the name (``host.tls_cert``), which no client trusts;
        * ``tls="ca"``: the same with a certificate signed by the rig's CA
          (:attr:`ca_cert`), and every host of the rig trusts that CA (:meth:`trust_ca`);
        * PHP on the https server gets ``fastcgi_param HTTPS on``;
        * ``redirect_https=True`` (needs ``tls``): the http server of the name only answers
          ``301`` to ``https://$host$request_uri`` (with ``:<https_port>`` when not 443);
        * ``basic_auth=("user", "password")``: ``auth_basic`` on the servers of the name
          that serve the shop (htpasswd made with ``openssl passwd -apr1``).

        A restart without ``shop_name`` removes the vhost. Bad combinations raise
        ValueError before anything is (re)started.
        """
        tls = tls or None  # tls=False reads as "no TLS"
        _check_vhost(shop_name, tls, redirect_https, basic_auth)
        chosen = [
            h if isinstance(h, WebHost) else self.host(h)
            for h in (self.hosts if hosts is None else hosts)
        ]
        self._choose_web_ports()
        vhost = None
        if shop_name is not None:
            cert, key = self._shop_cert(shop_name, tls) if tls is not None else (None, None)
            vhost = _Vhost(shop_name, tls, cert, key, redirect_https, basic_auth)
        if tls == "ca":
            self.trust_ca()
        for host in chosen:
            host.nginx_user = nginx_user
        pending = [
            (host, host._start_web(tcp=tcp, opcache=opcache, extra_locations=extra_locations,
                                   vhost=vhost))
            for host in chosen
        ]
        for host, offset in pending:
            host._wait_web(offset)

    def _choose_web_ports(self) -> None:
        """Once per rig: 80 and 443 if free on every host's address, else common ports."""
        if self.http_port is None or self.https_port is None:
            addresses = [h.address for h in self.hosts]
            self.http_port = _common_free_port(addresses, HTTP_PORT)
            self.https_port = _common_free_port(addresses, HTTPS_PORT, avoid=[self.http_port])

    # ---- TLS

    @property
    def ca_cert(self) -> Path:
        """The rig's CA certificate (PEM, ``<rig>/tls/ca.crt``), made on first use: pass it
        to a client outside the hosts (``curl --cacert``, ``ssl.create_default_context
        (cafile=...)``) that must trust the ``tls="ca"`` certificates."""
        return self._ca()[0]

    def _ca(self) -> tuple[Path, Path]:
        crt, key = self.tls_dir / "ca.crt", self.tls_dir / "ca.key"
        if not crt.exists():
            made = _make_cert(self.tls_dir, "ca", f"magerig CA {self.base.name}",
                              _CA_EXTENSIONS, None)
            assert made == (crt, key)
        return crt, key

    def _shop_cert(self, shop_name: str, variant: str) -> tuple[Path, Path]:
        """Certificate and key for ``shop_name`` (``<rig>/tls/<name>.<variant>.crt``)."""
        stem = f"{shop_name}.{variant}"
        crt, key = self.tls_dir / f"{stem}.crt", self.tls_dir / f"{stem}.key"
        if not crt.exists():
            issuer = self._ca() if variant == "ca" else None
            _make_cert(self.tls_dir, stem, shop_name,
                       _SERVER_EXTENSIONS.format(name=shop_name), issuer)
        return crt, key

    def trust_ca(self, hosts: Iterable[str | WebHost] | None = None) -> None:
        """Make ``hosts`` (default: all) trust the rig's CA, and only them: inside each
        host's mount namespace, ``/etc/ssl/certs/ca-certificates.crt`` becomes the system
        bundle plus the CA (``<rig>/tls/ca-certificates.crt``). Idempotent; lasts until
        the rig stops."""
        bundle = self.tls_dir / "ca-certificates.crt"
        if not bundle.exists():
            system = Path(SYSTEM_CA_BUNDLE)
            if not system.is_file():
                raise RigError(f"{system} is missing: install the ca-certificates package")
            text = system.read_text()
            tmp = _write(bundle.with_suffix(".tmp"),
                         text + ("" if text.endswith("\n") else "\n") + self.ca_cert.read_text())
            tmp.replace(bundle)
        for host in self.hosts if hosts is None else hosts:
            (host if isinstance(host, WebHost) else self.host(host))._trust(bundle)

    # ---- life cycle

    def _record(self, pid: int) -> None:
        with self._lock:
            self._state["procs"].append([pid, _start_time(pid)])
            tmp = self._state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(self._state))
            tmp.replace(self._state_file)

    def stop(self) -> None:
        """Kill every process of the rig and remove its directory. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        for conn in self._connections:
            with contextlib.suppress(Exception):
                conn.close()
        _reap([proc for host in self.hosts for proc in host._terminate()], 5.0)
        for host in self.hosts:
            host._destroy()
        shutil.rmtree(self.base, ignore_errors=True)
        _LIVE.discard(self)


_LIVE: set[Rig] = set()


@atexit.register
def _stop_all() -> None:
    """Interpreter exit: stop rigs a test forgot (or that a crash left) behind."""
    for rig in list(_LIVE):
        with contextlib.suppress(Exception):
            rig.stop()


def _pick_subnet(n_hosts: int) -> str:
    """A random ``127.X.Y`` for the rig's hosts, preferring one where port 22 is free.

    Two concurrent rigs drawing the same subnet would still work (ports fall back to free
    ones, see :func:`_free_port`); the probe only keeps the usual ports when it can.
    """
    subnet = ""
    for _ in range(20):
        subnet = f"127.{random.randint(100, 250)}.{random.randint(1, 254)}"
        try:
            for k in range(1, n_hosts + 1):
                with socket.socket() as sock:
                    sock.bind((f"{subnet}.{k}", SSH_PORT))
        except OSError:
            continue
        return subnet
    return subnet


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    """Serialise user creation and stale-rig reaping between concurrent test runs."""
    with open(_LOCK_FILE, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _ensure_user() -> pwd.struct_passwd:
    """Create the deploy user once; unlock it (``UsePAM no`` sshd refuses locked accounts)."""
    try:
        entry = pwd.getpwnam(DEPLOY_USER)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/bash", DEPLOY_USER], check=True)
        entry = pwd.getpwnam(DEPLOY_USER)
    subprocess.run(["usermod", "-p", "*", DEPLOY_USER], check=True)
    # The test's repos belong to root; git refuses other users' repos by default. Written
    # once here, under the machine lock: parallel rigs writing ~/.gitconfig would race.
    trusted = subprocess.run(["su", DEPLOY_USER, "-c", "git config --global --get-all "
                              "safe.directory"], capture_output=True, text=True).stdout
    if "*" not in trusted.split():
        subprocess.run(["su", DEPLOY_USER, "-c", "git config --global --add "
                        "safe.directory '*'"], check=True)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    Path("/srv").mkdir(mode=0o755, exist_ok=True)
    return entry


def add_deploy_user_to_group(group: str) -> None:
    """Put the deploy user in ``group`` (once per machine, like the user; never removed:
    another run may rely on it). sshd reads the groups at each login."""
    with _machine_lock():
        if DEPLOY_USER not in grp.getgrnam(group).gr_mem:
            subprocess.run(["usermod", "-aG", group, DEPLOY_USER], check=True)


def reap_stale_rigs(parent: Path = RIG_PARENT) -> list[Path]:
    """Kill the processes and remove the directories of rigs whose test process died.

    Why: a SIGKILLed pytest runs no finaliser. ``--pdeathsig`` already killed the daemons;
    what is left is the directory and, rarely, a process that outlived them.
    """
    removed = []
    for base in parent.glob(f"{RIG_PREFIX}*"):
        try:
            state = json.loads((base / "state.json").read_text())
        except (OSError, ValueError):
            if time.time() - base.stat().st_mtime < 600:
                continue  # being created right now by someone else
            state = {"owner": [None, None], "procs": []}
        owner, owner_start = state["owner"]
        if owner is not None and _start_time(owner) == owner_start:
            continue
        for pid, start in state.get("procs", []):
            if _start_time(pid) == start:
                ns = _mount_ns(pid)
                if ns is not None and ns != _mount_ns("self"):
                    for inner in _pids_in_namespace(ns, exclude=[pid]):
                        _kill(inner)
                _kill(pid)
        shutil.rmtree(base, ignore_errors=True)
        removed.append(base)
    return removed


def make_rig(n_hosts: int, base: Path | None = None) -> Rig:
    """Start ``n_hosts`` web hosts (sshd only; see :meth:`Rig.start_web`) and return the rig.

    ``base``: parent directory of the rig directory (default ``/var/tmp``). Every directory
    above the rig must be traversable by the deploy user, because sshd reads the authorized
    keys file as that user: pytest's ``tmp_path`` (0700) is not. Create rigs from a thread
    that outlives them (see ``WebHost._spawn``).
    """
    if n_hosts < 1:
        raise ValueError("a rig needs at least one host")
    missing = missing_requirements()
    if missing:
        raise RigError("cannot build a rig here: " + "; ".join(missing))
    parent = Path(base) if base is not None else RIG_PARENT
    with _machine_lock():
        entry = _ensure_user()
        reap_stale_rigs(parent)
    root = Path(tempfile.mkdtemp(prefix=RIG_PREFIX, dir=parent))
    root.chmod(0o755)
    rig = Rig(root, n_hosts)
    _LIVE.add(rig)
    try:
        _build(rig, entry)
    except BaseException:
        rig.stop()
        raise
    return rig


def _build(rig: Rig, entry: pwd.struct_passwd) -> None:
    uid, gid = entry.pw_uid, entry.pw_gid
    rig._record(os.getpid())
    ssh = rig.ssh_config.parent
    ssh.mkdir(mode=0o755)
    rig.common.mkdir()
    os.chown(rig.common, uid, gid)
    rig.common.chmod(0o777)
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", "magerig", "-f", str(rig.key)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    _write(rig._authorized_keys, Path(f"{rig.key}.pub").read_text())
    readable = subprocess.run(
        [SETPRIV, f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
        + ["test", "-r", str(rig._authorized_keys)],
        check=False,
    )
    if readable.returncode != 0:
        raise RigError(
            f"{rig._authorized_keys} is not readable by {DEPLOY_USER}: sshd reads it as the "
            "login user; put the rig under a directory every user can traverse"
        )
    blocks = []
    for host in rig.hosts:
        blocks.append(
            f"Host {host.name}\n"
            f"    HostName {host.address}\n"
            f"    Port {host.ssh_port}\n"
            f"    User {DEPLOY_USER}\n"
            f"    IdentityFile {rig.key}\n"
            "    IdentitiesOnly yes\n"
            "    StrictHostKeyChecking no\n"
            "    UserKnownHostsFile /dev/null\n"
            "    LogLevel ERROR\n"
            "    ConnectTimeout 10\n"
        )
    _write(rig.ssh_config, "\n".join(blocks))
    for host in rig.hosts:
        host._prepare(uid, gid)
    for host in rig.hosts:
        host._start()


def nginx_php_path(host: WebHost, variable: str) -> None:
    """Make ``host``'s running nginx hand PHP ``SCRIPT_FILENAME`` from ``variable``
    (``"$realpath_root"``: the fix docs/opcache.md gives; ``"$document_root"``: Magento's
    sample, the rig's default) and reload it; returns once new workers run. A later
    :meth:`Rig.start_web` writes the default config again."""
    conf = host._etc / "nginx.conf"
    text = re.sub(r"SCRIPT_FILENAME \$\w+\$fastcgi_script_name",
                  f"SCRIPT_FILENAME {variable}$fastcgi_script_name", conf.read_text())
    conf.write_text(text)
    log = host.root / "log" / "nginx-error.log"
    offset = log.stat().st_size if log.exists() else 0
    proc = host._daemons["nginx"]
    proc.send_signal(signal.SIGHUP)
    _wait_for_log(log, "start worker process", proc, f"{host.name}: nginx reload", offset)
