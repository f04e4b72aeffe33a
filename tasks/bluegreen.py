"""Magento's blue/green mode for schema releases (``DEPLOY_UPGRADE_MODE=blue-green``).

Since Magento 2.4.4, ``'deployment' => ['blue_green' => ['enabled' => true]]`` in
``env.php`` makes the storefront skip the two checks that refuse to run code against a
database it does not expect (``DbStatusValidator``, ``ConfigChangeDetector``). The live
release then keeps serving while ``setup:upgrade`` moves the database for the new one:
safe when the changes are additive (see docs/blue-green.md), no maintenance window.

``env.php`` is PHP, cached by OPcache: after setting the flag every pool must be flushed,
or the old release keeps reading the file it compiled before.
"""

from __future__ import annotations

import re

from .build import in_release
from .hosts import Host, q
from .settings import Settings, SettingsError

#: The first Magento version whose storefront honours the flag.
SINCE = (2, 4, 4)
ENV_PHP = "app/etc/env.php"

# Set the flag in env.php (argv[1], links resolved) unless it is set: the file is
# rewritten from its own array (var_export), written aside and renamed over it, keeping
# its mode. Prints "changed" or "unchanged".
_SET_FLAG = r"""
$f = realpath($argv[1]);
if ($f === false) { fwrite(STDERR, "$argv[1] does not exist\n"); exit(1); }
$c = include $f;
if (!is_array($c)) { fwrite(STDERR, "$f does not return an array\n"); exit(1); }
if (($c['deployment']['blue_green']['enabled'] ?? null) === true) { echo "unchanged"; exit(0); }
$c['deployment']['blue_green']['enabled'] = true;
$tmp = $f . '.blue-green-' . getmypid();
if (file_put_contents($tmp, "<?php\nreturn " . var_export($c, true) . ";\n") === false
    || !chmod($tmp, fileperms($f) & 07777) || !rename($tmp, $f)) {
    @unlink($tmp); fwrite(STDERR, "cannot rewrite $f\n"); exit(1);
}
echo "changed";
"""


def parse_version(output: str) -> tuple[int, ...] | None:
    """``Magento CLI 2.4.7-p3`` -> ``(2, 4, 7)``; None when there is no version."""
    match = re.search(r"\b(\d+)\.(\d+)\.(\d+)", output)
    return tuple(int(part) for part in match.groups()) if match else None


def check_version(host: Host, settings: Settings, release: str) -> str:
    """Refuse blue/green when ``release`` (the code that must keep serving) predates it."""
    out = host.run(in_release(settings, release, f"{settings.php} bin/magento --version"),
                   step="magento version", echo=False).stdout.strip()
    version = parse_version(out)
    if version is None or version < SINCE:
        raise SettingsError(
            f"DEPLOY_UPGRADE_MODE=blue-green: [{host.name}] release {release} is {out!r}; "
            f"Magento honours deployment/blue_green only from "
            f"{'.'.join(map(str, SINCE))}: use the maintenance mode for this release")
    return out


def env_php(settings: Settings) -> str:
    """The shared ``env.php`` every release links to."""
    if ENV_PHP not in settings.shared_files:
        raise SettingsError(f"DEPLOY_UPGRADE_MODE=blue-green sets the flag in the shared "
                            f"{ENV_PHP}: add it to DEPLOY_SHARED_FILES")
    return f"{settings.shared_dir}/{ENV_PHP}"


def enable(host: Host, settings: Settings) -> bool:
    """Set the flag in the host's shared ``env.php``; True when the file changed."""
    out = host.run(f"{settings.php} -r {q(_SET_FLAG)} -- {q(env_php(settings))}",
                   step="blue-green flag", echo=False).stdout.strip()
    return out == "changed"
