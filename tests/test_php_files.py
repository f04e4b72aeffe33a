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
    from fabric_magento_deploy import opcache, verify
    assert opcache.CLIENT == (PHP_DIR / "opcache_client.php").read_text()
    assert "@TOKEN@" in opcache.RESET_SCRIPT
    assert verify.CLIENT == (PHP_DIR / "fcgi_request.php").read_text()
    assert sorted(p.name for p in PHP_DIR.glob("*.php")) == [
        "fcgi_request.php", "opcache_client.php", "opcache_reset.php"]
