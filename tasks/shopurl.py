"""Where the shop is: its base URL (asked from Magento) and, per host, where that host's
own web server listens for it.

Why ask instead of assuming ``http://127.0.0.1``: production web servers listen on the
host's own address (``listen 10.0.0.5:443 ssl``), answer only for the shop's name, and
redirect anything else to the base URL. A request that is not the one a customer makes
tests the wrong thing, and a check that tests the wrong thing reverts healthy releases.

So, in pyinfra's shape (a command plus a pure parser for each fact):

* :data:`LISTENERS` + :func:`parse_listeners`: the TCP sockets listening on the host
  (``/proc/net/tcp*``, readable by any user, no ``ss`` or root needed) and the address
  the SSH session arrived at (``$SSH_CONNECTION``);
* :func:`config_command` + :func:`parse_config` + :func:`base_url`: Magento's stored
  settings (``bin/magento config:show``, one boot) and the URL customers use (secure
  when ``web/secure/use_in_frontend``);
* :func:`connect_address`: which local address reaches the web server on a port;
* :func:`plan`: the request a host makes, ``curl --resolve NAME:PORT:ADDR`` style, so
  the ``Host`` header, TLS SNI and the certificate check all use the shop's real name.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from .hosts import q
from .procs import normal

# The listening sockets of the host, then the address our SSH session arrived at.
LISTENERS = ('cat /proc/net/tcp /proc/net/tcp6 2>/dev/null; '
             'printf "S %s\\n" "${SSH_CONNECTION:-}"')
LISTEN_STATE = "0A"
WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1"}
OFFLOAD_HEADER = "X-Forwarded-Proto: https"


class ShopUrlError(ValueError):
    """The shop's URL or a host's web server could not be found; says which setting fixes
    it."""


@dataclass(frozen=True)
class Listeners:
    """What :data:`LISTENERS` found on one host."""

    sockets: frozenset[tuple[str, int]]  # (address, port) in LISTEN state
    arrived_at: str = ""  # the host's address our SSH connection reached

    def addresses(self, port: int) -> set[str]:
        return {addr for addr, p in self.sockets if p == port}


def _address(hex_addr: str) -> str:
    """``0100007F`` -> ``127.0.0.1``; 32 hex digits -> IPv6 (each 32-bit word is stored
    in the host's byte order, little-endian on every platform Magento runs on)."""
    raw = bytes.fromhex(hex_addr)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    ip = ipaddress.ip_address(words)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        return str(ip.ipv4_mapped)
    return str(ip)


def parse_listeners(text: str) -> Listeners:
    """The output of :data:`LISTENERS` (pure). Unparsable lines are ignored: the rows
    of ``/proc/net/tcp`` are fixed by the kernel, anything else is a header."""
    sockets, arrived = set(), ""
    for line in text.splitlines():
        fields = line.split()
        if fields[:1] == ["S"]:
            arrived = normal(fields[3]) if len(fields) >= 4 else ""
            continue
        if len(fields) < 4 or fields[3] != LISTEN_STATE or ":" not in fields[1]:
            continue
        addr, _, port = fields[1].rpartition(":")
        try:
            sockets.add((_address(addr), int(port, 16)))
        except ValueError:
            continue
    return Listeners(frozenset(sockets), arrived)


def connect_address(found: Listeners, port: int, *, own_only: bool = False) -> str | None:
    """The address to reach the host's web server on ``port`` from the host itself, or
    None when nothing listens there.

    The address the SSH session arrived at comes first when the server is bound to it
    (hosts sharing one network namespace, and a server bound to one address, which does
    not answer on 127.0.0.1); then loopback, which a wildcard listener also answers on;
    then, unless ``own_only``, any other bound address (the probe before the build
    proves it answers). Another address may be another server's: a second shop's nginx
    on the same machine, or another host where hosts share a network namespace.
    """
    bound = found.addresses(port)
    if not bound:
        return None
    if found.arrived_at in bound:
        return found.arrived_at
    for addr in ("127.0.0.1", "0.0.0.0", "::1", "::"):
        if addr in bound:
            return WILDCARDS.get(addr, addr)
    if own_only:
        return None
    return sorted(bound, key=lambda a: (ipaddress.ip_address(a).is_loopback is False, a))[0]


def config_command(php: str, release_dir: str) -> str:
    """Magento's stored settings, asked in ``release_dir`` (one boot of bin/magento).

    Without a path: 2.4's ``config:show`` refuses a section such as ``web`` ("The "web"
    path doesn't exist"), and three field paths would cost three boots. The listing has
    the database, ``config.php`` and ``env.php`` values, never Magento's built-in
    defaults: a missing line means the default."""
    return f"cd {q(release_dir)} && {php} bin/magento config:show --no-interaction"


def parse_config(text: str) -> dict[str, str]:
    """``config:show`` output (``path - value`` lines) -> ``{path: value}`` (pure)."""
    values = {}
    for line in text.splitlines():
        path, sep, value = line.partition(" - ")
        if sep and re.fullmatch(r"[a-z0-9_]+(/[a-z0-9_]+)+", path.strip()):
            values[path.strip()] = value.strip()
    return values


def base_url(config: dict[str, str]) -> str:
    """The storefront's base URL as customers use it (pure): the secure one when
    ``web/secure/use_in_frontend`` is 1, else the unsecure one; Magento's placeholders
    ``{{unsecure_base_url}}`` resolved. Raises :class:`ShopUrlError` when none is set."""
    unsecure = config.get("web/unsecure/base_url", "")
    secure = config.get("web/secure/base_url", "") or unsecure
    url = secure if config.get("web/secure/use_in_frontend", "0") == "1" else unsecure
    url = url.replace("{{unsecure_base_url}}", unsecure)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or "{{" in url:
        raise ShopUrlError(f"Magento's base URL is {url!r} (web/unsecure/base_url "
                           f"{unsecure!r}, web/secure/base_url {secure!r}): not an http(s) "
                           "URL with a host name")
    return url


@dataclass(frozen=True)
class Target:
    """How one host requests the shop: ``url`` (with the shop's name), ``resolve``
    (``NAME:PORT:ADDR``, curl's ``--resolve``: connect to ADDR, keep the name for Host,
    SNI and the certificate) and headers to add. ``note`` says what was decided.
    ``source``: sending from the very address asked makes the web server see that
    address (on a shared loopback range it would otherwise see 127.0.0.1)."""

    url: str
    resolve: str = ""
    headers: tuple[str, ...] = ()
    note: str = ""
    moved: tuple[tuple[str, str], ...] = ()  # (path, URL): a path the shop redirects
    source: str = ""  # the local address to send from (the one the web server sees)

    def join(self, path: str) -> str:
        """The base URL (which may have a path, a shop in a subfolder) plus ``path``."""
        for moved, url in self.moved:
            if moved == path:
                return url
        return self.url.rstrip("/") + "/" + path.lstrip("/")

    @property
    def address(self) -> str:
        return self.resolve.rsplit(":", 1)[-1].strip("[]") if self.resolve else ""


def port_of(parts: object) -> int:
    """A split URL's port, or its scheme's default."""
    port = parts.port  # type: ignore[attr-defined]
    return port or (443 if parts.scheme == "https" else 80)  # type: ignore[attr-defined]


def resolve_entry(name: str, port: int, addr: str) -> str:
    """curl's ``--resolve`` entry: ``NAME:PORT:ADDR`` (an IPv6 address in brackets)."""
    return f"{name}:{port}:{f'[{addr}]' if ':' in addr else addr}"


def plan(url: str, found: Listeners, host: str) -> Target:
    """The request ``host`` makes for the shop at ``url``, against its own web server
    (pure). https with nothing listening on the https port but something on 80: TLS ends
    in front of the host (a load balancer), so plain http on 80 with
    ``X-Forwarded-Proto: https``, as the offloader sends it. Both are looked for on the
    host's own addresses (where SSH arrived, loopback, wildcards) before any other: an
    https port bound on another address is not this shop's when its own serves http.
    Nothing at all: an error naming the settings that fix it."""
    parts = urlsplit(url)
    name, port = parts.hostname or "", port_of(parts)
    for own_only in (True, False):  # this host's own addresses first, direct or offloaded
        addr = connect_address(found, port, own_only=own_only)
        if addr:
            return Target(url, resolve_entry(name, port, addr),
                          note=f"{name}:{port} -> {addr}", source=addr)
        if parts.scheme == "https" and (offload := connect_address(found, 80,
                                                                   own_only=own_only)):
            http = parts._replace(scheme="http", netloc=name).geturl()
            return Target(http, resolve_entry(name, 80, offload), (OFFLOAD_HEADER,),
                          note=f"nothing listens on :{port}, TLS ends before this host: "
                               f"http://{name}:80 -> {offload} with {OFFLOAD_HEADER}",
                          source=offload)
    listening = sorted({p for _, p in found.sockets})
    raise ShopUrlError(
        f"[{host}] nothing listens on port {port} for {url} (listening ports: "
        f"{', '.join(map(str, listening)) or 'none found'}): set DEPLOY_HEALTH_BASE_URL to "
        f"where this host's web server answers, e.g. {host}=http://ADDRESS:PORT, with "
        "DEPLOY_HEALTH_HOST=<shop name>")


def explicit(base: str, name: str, headers: tuple[str, ...] = ()) -> Target:
    """A target from ``DEPLOY_HEALTH_BASE_URL``: its host is where to connect; with a
    shop name (``DEPLOY_HEALTH_HOST``) the URL carries the name and ``resolve`` the
    address, so Host, SNI and the certificate use the name."""
    parts = urlsplit(base)
    if not name:
        return Target(base, headers=headers)
    shop, _, port_text = name.partition(":")
    port = port_of(parts)
    url = parts._replace(netloc=f"{shop}:{port}" if port_text or parts.port else shop).geturl()
    return Target(url, resolve_entry(shop, port, parts.hostname or ""), headers)


def same_shop(target: Target, location: str) -> bool:
    """Is a redirect to ``location`` the same shop (http -> https, a missing slash, the
    canonical form of the name), which the check may follow once?"""
    here, there = urlsplit(target.url), urlsplit(location)
    return bool(there.hostname) and there.hostname == here.hostname \
        and there.scheme in ("http", "https")


__all__ = ["LISTENERS", "Listeners", "ShopUrlError", "Target", "base_url", "config_command",
           "connect_address", "explicit", "parse_config", "parse_listeners", "plan",
           "same_shop"]
