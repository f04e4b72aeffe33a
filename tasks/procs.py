"""Which running daemons (nginx, PHP-FPM masters) belong to the host a probe runs on.

Why this is not obvious: one machine may run several "hosts" side by side, each in its own
mount namespace (containers, test rigs) and often on its own address, sharing one process
table. ``/proc`` lists them all, so a probe that reads "the" nginx configuration of every
running master reports other hosts' ``server`` blocks as this one's.

Two tests, both without privileges (the deploy user is not root):

* the mount namespace (:data:`NGINX_PS`, :data:`FPM_PS`, :func:`parse_ps`): the usual
  test, ``readlink /proc/PID/ns/mnt``, needs ptrace access, which the deploy user lacks
  for root's masters and for workers that changed user (PHP-FPM's, ``www-data``'s):
  it answers nothing exactly where it matters. ``/proc/PID/mountinfo`` is readable by
  any user and lists the mounts of the process's namespace by mount ID, and a mount ID
  belongs to one namespace only: a process whose first mount ID is not among our own
  mounts lives in another namespace. Unreadable (``hidepid``) means unknown, and an
  unknown master is kept, as before;
* the address (:data:`ADDRESSES`, :func:`parse_addresses`, :func:`is_local`): of the
  masters left, a web server whose every ``listen`` names an address that is neither a
  wildcard, loopback, the address our SSH session arrived at nor one of the host's
  interface addresses does not serve this host (:mod:`.doctor` parses the ``listen``
  directives).

Commands and pure parsers in pyinfra's shape, shared by :mod:`.doctor` and :mod:`.init`.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from dataclasses import dataclass

#: The address every host calls its own: a server bound there serves local clients.
LOOPBACK = frozenset({"127.0.0.1", "::1"})
#: ``listen`` addresses that bind every address of the host.
WILDCARD = frozenset({"*", "0.0.0.0", "::"})


def ps_command(comm: str) -> str:
    """The processes whose ``comm`` matches the shell pattern ``comm`` (``nginx``,
    ``php-fpm*``), one line each: ``P pid<TAB>ppid<TAB>user<TAB>mount<TAB>comm<TAB>args``,
    ``mount`` being the first mount ID of its ``/proc/PID/mountinfo`` (``-`` if not
    readable); first a line ``me <mount IDs>`` of the probe's own namespace.

    ``comm`` is one of our constants, never user input, and is left unquoted on purpose:
    a quoted ``case`` pattern would not glob. Builtins (``read``) instead of ``cat`` and
    ``head`` because the loop visits every process of the machine.
    """
    if not re.fullmatch(r"[A-Za-z0-9_.-]+\*?", comm):
        raise ValueError(f"not a process name pattern: {comm!r}")
    return (
        "printf 'me'; while read -r m _; do printf ' %s' \"$m\"; done < /proc/self/mountinfo;"
        " echo; for d in /proc/[0-9]*; do"
        " { read -r c < \"$d/comm\"; } 2>/dev/null || continue;"
        f" case \"$c\" in {comm}) ;; *) continue;; esac;"
        " { read -r m _ < \"$d/mountinfo\"; } 2>/dev/null || m=-;"
        " a=$(tr '\\0' ' ' < \"$d/cmdline\" 2>/dev/null);"
        " pp=$(awk '/^PPid:/ {print $2}' \"$d/status\" 2>/dev/null);"
        " printf 'P %s\\t%s\\t%s\\t%s\\t%s\\t%s\\n' \"${d#/proc/}\" \"$pp\""
        " \"$(stat -c %U \"$d\" 2>/dev/null)\" \"${m:--}\" \"$c\" \"$a\"; done; true"
    )


NGINX_PS = ps_command("nginx")
FPM_PS = ps_command("php-fpm*")

#: The address our SSH session arrived at (``S``), then the host's interface addresses
#: (``A``, ``hostname -I``, else ``ip``): where a web server of this host may listen.
ADDRESSES = (
    "printf 'S %s\\n' \"${SSH_CONNECTION:-}\"; for a in $(hostname -I 2>/dev/null"
    " || PATH=\"$PATH:/usr/sbin:/sbin\" ip -o addr show 2>/dev/null | awk '{print $4}');"
    " do printf 'A %s\\n' \"$a\"; done; true"
)


@dataclass(frozen=True)
class Proc:
    """One line of :func:`ps_command`."""

    pid: str
    ppid: str
    user: str
    mount: str  # first mount ID of its namespace, "-" if unknown
    comm: str
    args: str


@dataclass(frozen=True)
class Listing:
    """What :func:`ps_command` found: our own mount IDs and the matching processes."""

    mounts: frozenset[str]
    procs: tuple[Proc, ...]

    def here(self, proc: Proc) -> bool | None:
        """Is ``proc`` in our mount namespace? None when its mountinfo was not readable."""
        if proc.mount == "-" or not self.mounts:
            return None
        return proc.mount in self.mounts

    def ours(self, master: Proc) -> bool:
        """Does ``master`` run on this host: in our namespace, or (its own mountinfo
        unreadable) with a child that is; unknown counts as ours, as nothing says not."""
        verdict = self.here(master)
        if verdict is None:
            verdict = next((v for p in self.procs if p.ppid == master.pid
                            and (v := self.here(p)) is not None), None)
        return verdict is not False

    def masters(self, marker: str) -> list[Proc]:
        """The processes whose arguments start with ``marker`` (``nginx: master process``)."""
        return [p for p in self.procs if p.args.strip().startswith(marker)]


def parse_ps(text: str) -> Listing:
    """The output of :func:`ps_command` (pure); lines of other probes are ignored."""
    mounts: frozenset[str] = frozenset()
    procs = []
    for line in text.splitlines():
        if line.startswith("me"):
            mounts = frozenset(line[2:].split())
        elif line.startswith("P "):
            parts = line[2:].split("\t")
            if len(parts) >= 6:
                procs.append(Proc(*parts[:5], "\t".join(parts[5:])))
    return Listing(mounts, tuple(procs))


NGINX_MASTER = "nginx: master process"


def nginx_conf(args: str) -> str:
    """The configuration file of an nginx master, from its command line (pure): ``-c``
    (relative to ``-p``), else Debian's ``/etc/nginx/nginx.conf``."""
    conf = re.search(r"\s-c\s+(\S+)", args)
    path = conf[1] if conf else "/etc/nginx/nginx.conf"
    if not path.startswith("/"):
        prefix = re.search(r"\s-p\s+(\S+)", args)
        path = posixpath.join(prefix[1] if prefix else "/etc/nginx", path)
    return path


def nginx_masters(listing: Listing) -> tuple[list[str], list[str]]:
    """The configuration files of the nginx masters of this host, and of those of other
    mount namespaces (left out), each once, in process order (pure)."""
    ours: list[str] = []
    others: list[str] = []
    for master in listing.masters(NGINX_MASTER):
        into = ours if listing.ours(master) else others
        conf = nginx_conf(master.args)
        if conf not in into:
            into.append(conf)
    return ours, others


@dataclass(frozen=True)
class Addresses:
    """The host's own addresses (:data:`ADDRESSES`), loopback included."""

    local: frozenset[str]
    arrived_at: str = ""


def normal(address: str) -> str:
    """``[::FFFF:10.0.0.5]`` -> ``10.0.0.5``; a name stays as it is (lowercase)."""
    address = address.strip().strip("[]").lower()
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        return str(ip.ipv4_mapped)
    return str(ip)


def parse_addresses(text: str) -> Addresses:
    """The output of :data:`ADDRESSES` (pure); lines of other probes are ignored."""
    local, arrived = set(LOOPBACK), ""
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "S" and len(rest.split()) >= 3:
            arrived = normal(rest.split()[2])
            local.add(arrived)
        elif kind == "A" and rest.strip():
            local.add(normal(rest.strip().split("/")[0]))
    return Addresses(frozenset(local), arrived)


def is_local(address: str, found: Addresses) -> bool | None:
    """Does a server bound to ``address`` (as :func:`normal` gives it) serve this host?
    A wildcard, a unix socket (``unix:``) and our own addresses do; any other IP address
    does not; a host name cannot be told without resolving it (None)."""
    if address in WILDCARD or address.startswith("unix:") or address in found.local:
        return True
    if address == "localhost":
        return True
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return None
    return False


__all__ = ["ADDRESSES", "FPM_PS", "NGINX_PS", "Addresses", "Listing", "Proc", "is_local",
           "nginx_conf", "nginx_masters", "normal", "parse_addresses", "parse_ps",
           "ps_command"]
