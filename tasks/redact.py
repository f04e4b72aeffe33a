"""Credentials in ``DEPLOY_REPO`` never printed, never stored on a host.

A repository URL like ``https://deploy:glpat-XXXX@git.example.com/shop.git`` carries a
token. It would otherwise show up in every error naming the fetch command, in ``--dry``,
in the failed-release note written to ``history/`` on every host, in the mirror's
``config`` and in ``ps`` on the host. So:

* :func:`split` separates the URL git may store from the credentials;
* the credentials travel to git on the command's stdin, as an ``http.extraHeader``
  through ``GIT_CONFIG_*`` variables (see ``source.update_mirror``): never in an argument,
  a file or the environment of the SSH session;
* :func:`redact` masks them in every line we print, raise or write.
"""

from __future__ import annotations

import base64
import threading
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "***"
_secrets: set[str] = set()
_lock = threading.Lock()


def split(url: str) -> tuple[str, str]:
    """``(url without credentials, Authorization header value or "")`` for http(s) URLs.

    ``https://user:token@host/x`` and ``https://token@host/x`` (GitHub, GitLab accept a
    token as the user name) both become Basic credentials; ssh and file URLs are kept.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or "@" not in parts.netloc:
        return url, ""
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    pair = f"{unquote(user)}:{unquote(password)}"
    header = "Basic " + base64.b64encode(pair.encode()).decode()
    return urlunsplit(parts._replace(netloc=hostport)), header


def register(url: str) -> None:
    """Remember the secret parts of ``url`` (and their encodings) for :func:`redact`."""
    parts = urlsplit(url)
    if "@" not in parts.netloc or "://" not in url:
        return
    userinfo = parts.netloc.rpartition("@")[0]
    user, _, password = userinfo.partition(":")
    found = {password, unquote(password)} if password else {user, unquote(user)}
    _, header = split(url)
    if header:
        found.add(header.split()[1])
    with _lock:
        _secrets.update(s for s in found if len(s) >= 4)


def secret(value: str) -> None:
    """Remember a plain secret (a password given in a setting) for :func:`redact`."""
    if len(value) >= 4:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text
