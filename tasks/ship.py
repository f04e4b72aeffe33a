"""Build once, ship everywhere (``DEPLOY_BUILD=local``).

The release is built once, on the machine running ``fab`` (a CI runner), in a build
folder laid out like a host's ``DEPLOY_PATH`` (its own mirror and ``releases/<id>``),
without shared links: Magento's pipeline build needs no database and no ``env.php``
(``app/etc/config.php`` must carry the scopes and themes, see :func:`config_check`).
Then each host receives it with rsync over OpenSSH:

- ``--link-dest`` against the host's live release, compared by checksum: an unchanged
  file becomes a hard link, so a code-only release sends only what changed;
- no ``-t``: a file that did not change keeps the live release's inode (and its mtime, so
  nginx's ETag for an unchanged asset stays the same);
- the tree's digest is computed on the host and compared with the builder's before the
  shared links are made: a release that did not arrive whole never goes live.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import posixpath
import shlex

from fabric import Connection

from .hosts import Host, q
from .plan import Step
from .settings import Settings

#: Prints one line per file and link of a release: path and content hash, or link target.
#: The same GNU find/sha256sum command on the builder and on every host.
TREE = ("find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum"
        " && find . -type l -printf '%p -> %l\\n' | LC_ALL=C sort")


def build_dir(settings: Settings) -> str:
    """Where the builder keeps its mirror and builds: ``DEPLOY_BUILD_DIR``, else a folder
    per repository and deploy path under ``~/.cache``."""
    if settings.build_dir:
        return settings.build_dir
    key = hashlib.sha256(f"{settings.repo}\0{settings.deploy_path}".encode()).hexdigest()[:16]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return f"{base}/fabric-magento-deploy/{key}"


def builder_settings(settings: Settings) -> Settings:
    """The settings of the build folder: the same shop, another ``DEPLOY_PATH``."""
    return dataclasses.replace(settings, deploy_path=build_dir(settings))


def clean(settings: Settings) -> Step:
    """Remove earlier builds (the mirror stays: the next fetch is incremental)."""
    releases = q(settings.releases_dir)
    return Step("clean builds", f"mkdir -p {releases} && find {releases} -mindepth 1"
                " -maxdepth 1 -exec chmod -R u+w {} + -exec rm -rf {} +")


def config_check(settings: Settings, release: str) -> Step:
    """Refuse to build without a database unless ``config.php`` has scopes and themes.

    Without them ``setup:static-content:deploy`` cannot know the websites and themes and
    Magento fails ("The default website isn't defined") after the slow part of the build.
    """
    php = ("$c = include 'app/etc/config.php'; $m = [];"
           " foreach (['scopes', 'themes'] as $k) { if (empty($c[$k])) { $m[] = $k; } }"
           " if ($m) { fwrite(STDERR, 'app/etc/config.php has no ' . implode(' and ', $m)"
           " . ': a build without a database cannot deploy static content. On a system with"
           " the database run: bin/magento app:config:dump scopes themes i18n, and commit"
           " app/etc/config.php' . PHP_EOL); exit(1); }")
    return Step("check config.php",
                f"cd {q(settings.release_dir(release))} && {settings.php} -r {q(php)}")


def digest(settings: Settings, release: str) -> Step:
    """The sha256 of the release's file list (:data:`TREE`), one line."""
    return Step("digest", f"cd {q(settings.release_dir(release))} && {{ {TREE}; }} | sha256sum"
                " | cut -d' ' -f1")


def ssh_command(host: Host, settings: Settings) -> str:
    """The OpenSSH command rsync uses to reach ``host`` as Fabric does: the same ssh_config
    file (``fab -S``), user, port and keys; host keys as ``DEPLOY_HOST_KEYS`` says (the
    default follows ssh_config, which OpenSSH applies itself)."""
    conn = host.runner
    assert isinstance(conn, Connection)
    argv = ["ssh", "-o", "BatchMode=yes", "-l", conn.user, "-p", str(conn.port)]
    config_path = getattr(conn.config, "_runtime_ssh_path", None) or conn.config.ssh_config_path
    if config_path:
        argv += ["-F", config_path]
    keys = conn.connect_kwargs.get("key_filename") or []
    for key in dict.fromkeys([keys] if isinstance(keys, str) else keys):
        argv += ["-i", key]
    argv += {"strict": ["-o", "StrictHostKeyChecking=yes"],
             "accept-new": ["-o", "StrictHostKeyChecking=accept-new"],
             "off": ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"],
             }.get(settings.host_keys, [])
    return shlex.join(argv)


def rsync(host: Host, settings: Settings, local: Settings, release: str,
          live: str | None) -> Step:
    """Send ``release`` from the build folder to ``host`` (run on the builder)."""
    conn = host.runner
    assert isinstance(conn, Connection)
    source = local.release_dir(release) + "/"
    target = posixpath.join(settings.release_dir(release), "")
    argv = ["rsync", "-rlpc", "--protect-args", "--stats", "-e", ssh_command(host, settings)]
    if live:
        argv.append(f"--link-dest={settings.release_dir(live)}")
    argv += ["--", source, f"{conn.original_host}:{target}"]
    return Step("ship", shlex.join(argv))


def sent_bytes(stats: str) -> int:
    """``Total bytes sent: 1,234`` from ``rsync --stats`` (0 if absent)."""
    for line in stats.splitlines():
        if line.startswith("Total bytes sent:"):
            return int(line.split(":", 1)[1].strip().replace(",", "") or 0)
    return 0
