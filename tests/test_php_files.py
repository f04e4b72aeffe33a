"""The PHP the library runs on the hosts is real PHP files, linted by the real php CLI."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from rig import skip_or_fail

PHP_DIR = Path(__file__).resolve().parent.parent / "tasks" / "php"


@pytest.mark.parametrize("path", sorted(PHP_DIR.glob("*.php")), ids=lambda p: p.name)
def test_the_php_shipped_with_the_library_parses(path: Path) -> None:
    if shutil.which("php") is None:
        skip_or_fail("php CLI missing")
    result = subprocess.run(["php", "-l", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_library_uses_those_files() -> None:
    from fabric_magento_deploy import health, opcache, verify
    shared = (PHP_DIR / "fastcgi.php").read_text()
    for client, name in ((opcache.CLIENT, "opcache_client.php"),
                         (verify.CLIENT, "fcgi_request.php")):
        own = (PHP_DIR / name).read_text()
        assert client == shared + own.removeprefix("<?php\n"), name
    assert "@TOKEN@" in opcache.RESET_SCRIPT
    assert health.PROBE == (PHP_DIR / "health_probe.php").read_text().removeprefix("<?php\n")
    assert sorted(p.name for p in PHP_DIR.glob("*.php")) == [
        "fastcgi.php", "fcgi_request.php", "health_probe.php", "opcache_client.php",
        "opcache_reset.php"]


@pytest.mark.parametrize("name", ["opcache_client.php", "fcgi_request.php"])
def test_each_client_as_sent_parses(name: str, tmp_path: Path) -> None:
    """What goes to the hosts is the shared primitives plus the client: lint that whole."""
    if shutil.which("php") is None:
        skip_or_fail("php CLI missing")
    from fabric_magento_deploy.opcache import fastcgi_client
    sent = tmp_path / name
    sent.write_text(fastcgi_client(name))
    result = subprocess.run(["php", "-l", str(sent)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
