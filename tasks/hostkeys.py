"""Host keys checked the way OpenSSH checks them, which Fabric does not do at all.

Fabric 3 always accepts any host key (``AutoAddPolicy``) and never reads ``known_hosts``
(fabric#1804): a man-in-the-middle, or a reinstalled host, would be handed the
repository URL and run the deploy. Here every connection loads the ``known_hosts``
files OpenSSH would (``UserKnownHostsFile`` and ``GlobalKnownHostsFile`` from the SSH
config, else ``~/.ssh/known_hosts`` and ``/etc/ssh/ssh_known_hosts``) and decides about an
unknown key like OpenSSH's ``StrictHostKeyChecking``:

* ``strict`` (OpenSSH's ``yes``/``ask``, the default): refuse, with the command to add it;
* ``accept-new``: learn it, appending one line to the user's known_hosts file;
* ``off`` (``no``): accept it without recording it.

``DEPLOY_HOST_KEYS`` sets the mode for every host; without it each host's SSH config
decides. A key that differs from a known one is refused in every mode.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import paramiko
from fabric import Connection

_FROM_SSH_CONFIG = {"no": "off", "off": "off", "accept-new": "accept-new"}
DEFAULT_USER_FILES = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
DEFAULT_GLOBAL_FILES = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")


class HostKeyRefused(paramiko.SSHException):
    """The host's key is unknown (strict mode) or differs from the known one."""


def fingerprint(key: paramiko.PKey) -> str:
    """``SHA256:...`` as ``ssh-keygen -l`` and OpenSSH's prompts print it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _files(conn: Connection, option: str, default: tuple[str, ...]) -> list[str]:
    value = conn.ssh_config.get(option)
    paths = value.split() if isinstance(value, str) else list(value or default)
    return [os.path.expanduser(p) for p in paths]


def mode_for(conn: Connection, override: str = "") -> str:
    """``override`` (``DEPLOY_HOST_KEYS``) or what ``StrictHostKeyChecking`` says."""
    if override:
        return override
    value = str(conn.ssh_config.get("stricthostkeychecking", "ask")).lower()
    return _FROM_SSH_CONFIG.get(value, "strict")


class _Refuse(paramiko.MissingHostKeyPolicy):
    def __init__(self, files: list[str]):
        self.files = files

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        host, _, port = hostname.strip("[").partition("]:")
        raise HostKeyRefused(
            f"the host key of {hostname} is not known ({key.get_name()} {fingerprint(key)}; "
            f"looked in {', '.join(self.files)}). Check that fingerprint with whoever runs "
            f"the host, then add it: ssh-keyscan {'-p ' + port + ' ' if port else ''}"
            f"-t {key.get_name()} {host} >> ~/.ssh/known_hosts (or connect once with ssh). "
            "For a CI runner that pins keys in a file, DEPLOY_HOST_KEYS=accept-new learns "
            "unknown keys.")


class _AcceptNew(paramiko.MissingHostKeyPolicy):
    """Append the key to the user's known_hosts, as OpenSSH does: never rewrite the file."""

    def __init__(self, path: str):
        self.path = Path(path)

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self.path.open("a") as fh:
            fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        client.get_host_keys().add(hostname, key.get_name(), key)


def guard(conn: Connection, override: str = "") -> str:
    """Load the known host keys into ``conn`` and set the policy for unknown ones.

    Call before ``conn.open()``. Returns the mode used.
    """
    user_files = _files(conn, "userknownhostsfile", DEFAULT_USER_FILES)
    files = user_files + _files(conn, "globalknownhostsfile", DEFAULT_GLOBAL_FILES)
    client = conn.client
    for path in files:
        if os.path.isfile(path):
            client.load_system_host_keys(path)  # system keys: read, never written back
    mode = mode_for(conn, override)
    policy: paramiko.MissingHostKeyPolicy
    if mode == "strict":
        policy = _Refuse([f for f in files if f != os.devnull] or ["no file"])
    elif mode == "accept-new":
        policy = _AcceptNew(user_files[0])
    else:
        policy = paramiko.AutoAddPolicy()  # accepted for this connection, not recorded
    client.set_missing_host_key_policy(policy)
    return mode


def describe_changed(host: str, exc: paramiko.BadHostKeyException) -> str:
    """The message for a key that differs from the known one: always an error."""
    return (f"HOST KEY CHANGED for {host}: it offered {exc.key.get_name()} "
            f"{fingerprint(exc.key)}, known_hosts has {fingerprint(exc.expected_key)}. "
            "Someone may be intercepting the connection. If the host was reinstalled, "
            f"verify the new fingerprint, then remove the old key with ssh-keygen -R {host}")
