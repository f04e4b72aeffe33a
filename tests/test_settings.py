"""Settings: defaults, .env vs environment, and one clear error per bad value."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fabric_magento_deploy.settings import SettingsError, load

BASE = {"DEPLOY_PATH": "/srv/shop", "DEPLOY_REPO": "git@example.invalid:shop.git"}


def test_defaults(tmp_path: Path) -> None:
    s = load(BASE, tmp_path)
    assert s.branch == "main" and s.keep_releases == 3 and s.php == "php"
    assert s.locales == ("en_US",) and s.themes == () and s.static_jobs is None
    assert s.shared_files == ("app/etc/env.php",)
    assert "pub/media" in s.shared_dirs and "var/log" in s.shared_dirs
    assert s.current == "/srv/shop/current" and s.release_dir("r1") == "/srv/shop/releases/r1"


def test_environment_wins_over_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DEPLOY_BRANCH=develop\nDEPLOY_KEEP_RELEASES=5\n"
                                   "DEPLOY_LOCALES=en_US, nl_NL de_DE\n")
    s = load({**BASE, "DEPLOY_BRANCH": "release"}, tmp_path)
    assert s.branch == "release"
    assert s.keep_releases == 5
    assert s.locales == ("en_US", "nl_NL", "de_DE")


def test_dotenv_is_not_leaked_into_os_environ(tmp_path: Path, monkeypatch) -> None:
    import os
    monkeypatch.delenv("DEPLOY_THEMES", raising=False)
    (tmp_path / ".env").write_text("DEPLOY_THEMES=Magento/luma\n")
    assert load(BASE, tmp_path).themes == ("Magento/luma",)
    assert "DEPLOY_THEMES" not in os.environ


@pytest.mark.parametrize(("changes", "key", "bad"), [
    ({"DEPLOY_PATH": ""}, "DEPLOY_PATH", ""),
    ({"DEPLOY_PATH": "srv/shop"}, "DEPLOY_PATH", "srv/shop"),
    ({"DEPLOY_PATH": "/"}, "DEPLOY_PATH", "/"),
    ({"DEPLOY_PATH": "/srv/my shop"}, "DEPLOY_PATH", "/srv/my shop"),
    ({"DEPLOY_KEEP_RELEASES": "0"}, "DEPLOY_KEEP_RELEASES", "0"),
    ({"DEPLOY_KEEP_RELEASES": "three"}, "DEPLOY_KEEP_RELEASES", "three"),
    ({"DEPLOY_OPCACHE": "apcu"}, "DEPLOY_OPCACHE", "apcu"),
    ({"DEPLOY_OPCACHE": "url"}, "DEPLOY_OPCACHE_URL", ""),
    ({"DEPLOY_OPCACHE": "url", "DEPLOY_OPCACHE_URL": "shop.test"}, "DEPLOY_OPCACHE_URL",
     "shop.test"),
    ({"DEPLOY_OPCACHE": "command"}, "DEPLOY_OPCACHE_COMMAND", ""),
    ({"DEPLOY_FPM_SOCKET": "php.sock"}, "DEPLOY_FPM_SOCKET", "php.sock"),
    ({"DEPLOY_STATIC_JOBS": "-2"}, "DEPLOY_STATIC_JOBS", "-2"),
    ({"DEPLOY_LOCALES": "english"}, "DEPLOY_LOCALES", "english"),
    ({"DEPLOY_SHARED_DIRS": "pub/media /etc"}, "DEPLOY_SHARED_DIRS", "/etc"),
    ({"DEPLOY_SHARED_FILES": "../env.php"}, "DEPLOY_SHARED_FILES", "../env.php"),
    ({"DEPLOY_HOSTS": "web1 web2", "DEPLOY_PRIMARY": "web3"}, "DEPLOY_PRIMARY", "web3"),
    ({"DEPLOY_BRANCH": "--upload-pack=evil"}, "DEPLOY_BRANCH", "--upload-pack=evil"),
    ({"DEPLOY_REPO": ""}, "DEPLOY_REPO", ""),
    ({"DEPLOY_PATH": "//var"}, "DEPLOY_PATH", "//var"),
    ({"DEPLOY_PATH": "/var/www/"}, "DEPLOY_PATH", "/var/www/"),
    ({"DEPLOY_HOSTS": "web1 web2,web1"}, "DEPLOY_HOSTS", "web1"),
    ({"DEPLOY_LOCALES": "en_us"}, "DEPLOY_LOCALES", "en_us"),
    ({"DEPLOY_LOCALES": "adminhtml:en_US"}, "DEPLOY_LOCALES", "adminhtml:en_US"),
    ({"DEPLOY_LOCALES": "backend:en_US en_US"}, "DEPLOY_LOCALES", "backend"),
    ({"DEPLOY_THEMES": "Hyva"}, "DEPLOY_THEMES", "Hyva"),
    ({"DEPLOY_THEMES": "frontend:none"}, "DEPLOY_THEMES", "none"),
    ({"DEPLOY_STATIC_ARGS": "--theme=Magento/luma"}, "DEPLOY_STATIC_ARGS", "--theme"),
    ({"DEPLOY_STATIC_ARGS": "--content-version 1"}, "DEPLOY_STATIC_ARGS", "--content-version"),
    ({"DEPLOY_STATIC_ARGS": "--strategy 'compact"}, "DEPLOY_STATIC_ARGS", "compact"),
    ({"DEPLOY_HOST_KEYS": "yes"}, "DEPLOY_HOST_KEYS", "yes"),
    ({"DEPLOY_TIMEOUT_UPGRADE": "1h"}, "DEPLOY_TIMEOUT_UPGRADE", "1h"),
    ({"DEPLOY_ALLOW_ROOT": "true"}, "DEPLOY_ALLOW_ROOT", "true"),
])
def test_bad_values_name_key_and_value(tmp_path: Path, changes: dict, key: str, bad: str) -> None:
    with pytest.raises(SettingsError) as err:
        load({**BASE, **changes}, tmp_path)
    message = str(err.value)
    assert key in message
    if bad:
        assert bad in message
    else:  # "" is in every string: an empty value must be called missing instead
        assert re.search(r"\b(is not|must be) set\b", message), message


def test_valid_sockets_and_opcache(tmp_path: Path) -> None:
    s = load({**BASE, "DEPLOY_FPM_SOCKET": "/run/php/a.sock,127.0.0.1:9000",
              "DEPLOY_OPCACHE": "fcgi"}, tmp_path)
    assert s.fpm_sockets == ("/run/php/a.sock", "127.0.0.1:9000")
    assert s.opcache == "fcgi"


def test_env_example_lists_every_setting() -> None:
    from fabric_magento_deploy.settings import DEFAULTS
    example = (Path(__file__).parent.parent / ".env.example").read_text()
    for key in DEFAULTS:
        assert f"{key}=" in example, f"{key} missing from .env.example"


@pytest.mark.parametrize(("changes", "named"), [
    ({"DEPLOY_SHARED_DIRS": "app/etc"}, ["DEPLOY_SHARED_DIRS: 'app/etc'",
                                         "DEPLOY_SHARED_FILES: 'app/etc/env.php'"]),
    ({"DEPLOY_SHARED_DIRS": "pub/media pub/media/catalog"},
     ["'pub/media'", "'pub/media/catalog'"]),
    ({"DEPLOY_SHARED_DIRS": "pub/media pub//media/"}, ["'pub/media'"]),
    ({"DEPLOY_SHARED_DIRS": "var"}, ["'var'", "var/.maintenance.flag"]),
    ({"DEPLOY_SHARED_DIRS": "pub/static"}, ["'pub/static'"]),
    ({"DEPLOY_SHARED_FILES": "app/etc/env.php app/etc/config.php"}, ["app/etc/config.php"]),
])
def test_overlapping_or_per_release_shared_paths_are_refused(
        tmp_path: Path, changes: dict, named: list[str]) -> None:
    with pytest.raises(SettingsError) as err:
        load({**BASE, **changes}, tmp_path)
    for part in named:
        assert part in str(err.value)


def test_real_locales_themes_and_static_args_are_accepted(tmp_path: Path) -> None:
    s = load({**BASE, "DEPLOY_LOCALES": "zh_Hans_CN sr_Latn_RS es_419 adminhtml:en_US",
              "DEPLOY_THEMES": "frontend:Hyva/default adminhtml:none",
              "DEPLOY_STATIC_ARGS": "--strategy=compact --no-html-minify",
              "DEPLOY_PATH": "/var//www/shop/"}, tmp_path)
    assert s.locales == ("zh_Hans_CN", "sr_Latn_RS", "es_419", "adminhtml:en_US")
    assert s.themes == ("frontend:Hyva/default", "adminhtml:none")
    assert s.static_args == ("--strategy=compact", "--no-html-minify")
    assert s.deploy_path == "/var/www/shop"
