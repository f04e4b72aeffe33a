"""``app/etc/config.php`` and ``setup:upgrade``: one module list on every host.

Why: ``setup:upgrade`` enables modules that the code registers but ``config.php`` does
not list, and rewrites the file, in the release it runs in, on the primary only. The
other hosts would serve the committed list: a module enabled on one host and unknown on
the others (its plugins, its routes, its config). So:

* before the database moves, :func:`unlisted` asks the new release which modules the
  code has that ``config.php`` does not list (``module:status`` shows them among the
  disabled, and the file has no entry for them). A deploy stops there, nothing changed,
  naming them and the fix (run ``setup:upgrade`` locally, commit ``config.php``), unless
  ``DEPLOY_CONFIG_PHP=sync``;
* after ``setup:upgrade``, :func:`spread` copies the primary's ``config.php`` to every
  other host's new release when it changed, and checks every host has the same bytes
  before anyone switches.

Each is a command plus a pure parser (:func:`parse_unlisted`).
"""

from __future__ import annotations

import difflib
import hashlib
import re

from .build import in_release, magento
from .hosts import Host, on_all, q
from .settings import Settings

FILE = "app/etc/config.php"
_MARK = "@@config.php@@"
# An entry of config.php's 'modules' array as Magento's PhpFormatter writes it.
_ENTRY = re.compile(r"""['"]([A-Za-z0-9]+_[A-Za-z0-9]+)['"]\s*=>\s*[01]\s*[,\]\)]""")


class ConfigPhpError(RuntimeError):
    """``config.php`` does not list modules the code registers, or hosts differ."""


def unlisted_command(settings: Settings, release: str) -> str:
    """``module:status`` of the release, then its ``config.php`` (read as text: Magento
    writes it in one fixed format, and no second PHP boot is needed)."""
    return (f"{magento(settings, release, 'module:status')} && echo {q(_MARK)} && "
            + in_release(settings, release, f"cat {FILE}"))


def parse_unlisted(output: str) -> list[str]:
    """Modules ``module:status`` calls disabled that ``config.php`` has no entry for
    (pure). A module disabled in ``config.php`` (``'X' => 0``) is listed: not one of
    them."""
    status, _, config = output.partition(_MARK)
    names = set(_ENTRY.findall(config))
    disabled = status.partition("List of disabled modules:")[2]
    found = [line.strip() for line in disabled.splitlines()
             if re.fullmatch(r"[A-Za-z0-9]+_[A-Za-z0-9]+", line.strip())]
    return sorted(m for m in found if m not in names)


def unlisted(host: Host, settings: Settings, release: str) -> list[str]:
    """The modules of the new release that its ``config.php`` does not list."""
    out = host.output(unlisted_command(settings, release), step="config.php")
    return parse_unlisted(out)


def refusal(modules: list[str], host: str) -> str:
    return (f"[{host}] the code registers modules that app/etc/config.php does not list: "
            f"{', '.join(modules)}. setup:upgrade would enable them and rewrite config.php "
            "on this host only. Nothing was changed (no maintenance, the database untouched). "
            "Fix: run bin/magento setup:upgrade locally and commit app/etc/config.php; or set "
            "DEPLOY_CONFIG_PHP=sync to let the deploy copy the upgraded file to every host")


def _path(settings: Settings, release: str) -> str:
    return f"{settings.release_dir(release)}/{FILE}"


def spread(hosts: list[Host], primary: Host, settings: Settings, release: str) -> str:
    """After ``setup:upgrade`` on ``primary``: give every host the primary's
    ``config.php`` when theirs differs, then check the bytes are the same everywhere.
    Returns what changed (a unified diff) or ""; raises :class:`ConfigPhpError` naming
    the hosts that could not be given the file."""
    path = _path(settings, release)
    wanted = primary.run(f"cat {q(path)}", step="config.php", echo=False).stdout
    digest = hashlib.sha256(wanted.encode()).hexdigest()
    read = f"sha256sum {q(path)} | cut -d' ' -f1"
    others = [h for h in hosts if h is not primary]
    found = on_all(others, lambda h: h.output(read, step="config.php"))
    stale = [h for h in others if found[h.name] != digest]
    if not stale:
        return ""
    old = stale[0].run(f"cat {q(path)}", step="config.php", echo=False).stdout
    write = (f"t=$(mktemp {q(path + '.XXXXXX')}) && cat > \"$t\" && chmod 0644 \"$t\" && "
             f"mv -f \"$t\" {q(path)} && {read}")
    written = on_all(stale, lambda h: h.run(write, step="config.php", stdin=wanted,
                                            echo=False).stdout.strip())
    bad = [h.name for h in stale if written[h.name] != digest]
    if bad:
        raise ConfigPhpError(f"app/etc/config.php rewritten by setup:upgrade on {primary.name} "
                             f"could not be copied to {', '.join(bad)}: {written}")
    diff = difflib.unified_diff(old.splitlines(), wanted.splitlines(), "config.php (committed)",
                                f"config.php (after setup:upgrade on {primary.name})",
                                lineterm="", n=1)
    return (f"setup:upgrade rewrote app/etc/config.php on {primary.name}; copied to "
            f"{', '.join(h.name for h in stale)} (same bytes on every host now):\n"
            + "\n".join(diff))
