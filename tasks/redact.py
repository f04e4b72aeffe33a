"""Credentials in settings never printed, never stored on a host.

A repository URL like ``https://deploy:glpat-XXXX@git.example.com/shop.git`` carries a
token; so may a hook (``curl -fsS https://ci:TOKEN@ci.example/hook``), the consumers or
OPcache command, or the OPcache URL. They would otherwise show up in every error naming
the command, in ``--dry``, in the failed-release note written to ``history/`` on every
host, in the mirror's ``config`` and in ``ps`` on the host. So:

* :func:`split` separates the URL git may store from the credentials;
* the repository's credentials travel to git on the command's stdin, as an
  ``http.extraHeader`` through ``GIT_CONFIG_*`` variables (see ``source.update_mirror``):
  never in an argument, a file or the environment of the SSH session;
* when the settings load, :func:`register_urls` remembers the credentials of every URL
  in every setting's value, and :func:`secret` the values of the variables named in
  ``DEPLOY_SECRETS``;
* :func:`redact` masks them, in every form we may print them in (URL-encoded, JSON,
  shell-quoted, Basic auth), in every line we print, raise or write.

What counts as a credential is principled, not guessed: the password of any URL
(``scheme://user:password@host``), the user of an http(s) URL without a password
(``https://TOKEN@host``: GitHub and GitLab take a token as the user name), and what the
user names. A token in a query string (``?token=...``) is not recognised: name its
variable in ``DEPLOY_SECRETS``. Values shorter than :data:`MIN_LENGTH` are never masked
(``***`` for every ``a`` would hide the output, not the secret).
"""

from __future__ import annotations

import base64
import json
import re
import threading
from urllib.parse import quote, quote_plus, unquote, urlsplit, urlunsplit

MASK = "***"
MIN_LENGTH = 4
_secrets: set[str] = set()
_lock = threading.Lock()

# scheme://userinfo@host inside any text (a shell command, a list of URLs): the userinfo
# runs to the last "@" before the host ends; whitespace, quotes and / ? # end a URL.
_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://"
                  r"(?P<userinfo>[^\s/?#'\"`<>\\]*)@[^\s/?#@'\"`<>\\]*")
# ``https://user:$TOKEN@host`` in a hook: the host's shell expands it; the name is no secret.
_SHELL_VARIABLE = re.compile(r"\$(\w+|\{\w+\})")
_PERCENT = re.compile(r"%[0-9A-F]{2}")


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


def _credentials(scheme: str, userinfo: str) -> list[str]:
    """The secret parts of a URL's userinfo, and its Basic auth encoding for http(s)."""
    user, colon, password = userinfo.partition(":")
    http = scheme.lower() in ("http", "https")
    if colon and password:
        found = [password]
    elif http and user:  # a token as the user name
        found = [user]
    else:  # ssh://git@host: a user name, no secret
        return []
    if http:
        pair = f"{unquote(user)}:{unquote(password)}"
        found.append(base64.b64encode(pair.encode()).decode())
    return [s for s in found if not _SHELL_VARIABLE.fullmatch(s)]


def register(url: str) -> None:
    """Remember the secret parts of ``url`` (and their encodings) for :func:`redact`."""
    if "://" not in url:
        return
    try:
        parts = urlsplit(url.strip())
    except ValueError:  # not a URL after all (an invalid IPv6 host): maybe embedded ones
        register_urls(url)
        return
    if "@" not in parts.netloc:
        return
    for value in _credentials(parts.scheme, parts.netloc.rpartition("@")[0]):
        secret(value)


def register_urls(text: str) -> None:
    """Remember the credentials of every URL inside ``text`` (e.g. a hook's command)."""
    for match in _URL.finditer(text):
        for value in _credentials(match["scheme"], match["userinfo"]):
            secret(value)


def forms(value: str) -> set[str]:
    """``value`` as it may appear in what we print or write: itself, URL-decoded and
    -encoded (either case of hex digits, ``+`` for spaces), inside a JSON string,
    inside a shell single-quoted word, and each line of a value of several lines."""
    plain = unquote(value)
    found = {value, plain}
    for text in (value, plain):
        for encoded in (quote(text, safe=""), quote(text), quote_plus(text)):
            found |= {encoded, _PERCENT.sub(lambda m: m[0].lower(), encoded)}
    for text in list(found):
        found |= {json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1],
                  text.replace("'", "'\"'\"'")}
    if "\n" in value:
        found |= {line.strip() for line in value.splitlines()}
    return {f for f in found if len(f) >= MIN_LENGTH}


def secret(value: str) -> None:
    """Remember a plain secret (a password given in a setting, the value of a variable
    named in ``DEPLOY_SECRETS``) and its encodings for :func:`redact`."""
    if len(value) >= MIN_LENGTH:
        found = forms(value)
        with _lock:
            _secrets.update(found)


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text
