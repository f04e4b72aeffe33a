"""Pre-switch verification (``tasks/verify.py``) on three real web hosts.

One rig for the module: the fake shop deployed once (release A live), php-fpm + nginx on
every host. Each test then prepares and builds its OWN new release with the library's
``prepare_on``/``build_on`` (nothing switches), breaks it on one host the way it breaks in
the field, and verifies it. A release of its own per test matters: FPM runs with
``opcache.validate_timestamps=0``, so a file it compiled once would hide a later edit.

The breakages touch only the new release (its ``env.php`` replaced by a file including
the shared one with one change, a file added or removed): the live release and the other
hosts stay as they were, which is what the checks must tell apart.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator

import pytest
from rig import make_rig, missing_requirements, skip_or_fail
from scenario import Shop

from fabric_magento_deploy import release, verify
from fabric_magento_deploy.deploy import build_on, prepare_on
from fabric_magento_deploy.hosts import Host, failures, on_all
from fabric_magento_deploy.report import Timeline
from fabric_magento_deploy.settings import Settings, SettingsError
from fabric_magento_deploy.verify import Check, VerificationFailed, raise_for

pytestmark = pytest.mark.real_hosts(web=True)
PER_HOST = ["boot", "mode", "generated", "static version", "fastcgi"]
ACROSS = ["generated identical", "static version identical"]


@pytest.fixture(scope="module")
def live() -> Iterator[Shop]:
    """Three web hosts with the shop deployed once (``current`` -> release A)."""
    reasons = missing_requirements(web=True)
    if reasons:
        skip_or_fail("real-host rig unavailable: " + "; ".join(reasons))
    rig = make_rig(3)
    try:
        rig.start_web()
        shop = Shop(rig)
        shop.deploy()
        yield shop
    finally:
        rig.stop()


def built(shop: Shop, settings: Settings) -> str:
    """A new release prepared and built on every host by the library, not switched."""
    rel, timeline = release.new_release_id(), Timeline(quiet=True)
    hosts = shop.hosts()

    def no_hook(point: str, hosts: list[Host]) -> None:
        pass

    def one(host: Host) -> None:
        prepare_on(host, settings, rel, shop.commits[-1], timeline, no_hook)
        build_on(host, settings, rel, timeline, no_hook)

    assert not failures(on_all(hosts, one))
    return rel


def in_release(shop: Shop, host: str, rel: str, command: str) -> None:
    """Run ``command`` in the release folder on ``host``, as the deploy user."""
    path = f"{shop.rig.deploy_path}/releases/{rel}"
    shop.rig.host(host).sh(f"cd {shlex.quote(path)} && {command}", user=shop.rig.user)


def own_env_php(shop: Shop, host: str, rel: str, change: str) -> None:
    """Give the release on ``host`` its own ``app/etc/env.php``: the shared one + ``change``
    (PHP operating on ``$c``). Only this release on this host sees it."""
    php = ("<?php\n$c = include '/srv/shop/shared/app/etc/env.php';\n"
           f"{change}\nreturn $c;\n")
    in_release(shop, host, rel, f"rm app/etc/env.php && printf '%s' {shlex.quote(php)} "
                                "> app/etc/env.php")


def failed(checks: list[Check]) -> list[tuple[str, str]]:
    return sorted((c.host, c.name) for c in checks if not c.ok)


def detail(checks: list[Check], host: str, name: str) -> str:
    return next(c.detail for c in checks if (c.host, c.name) == (host, name))


def message(checks: list[Check], rel: str) -> str:
    with pytest.raises(VerificationFailed) as info:
        raise_for(checks, rel)
    return str(info.value)


# --------------------------------------------------------------------------- pure parts


def test_the_hosts_that_differ_from_the_majority_are_named_or_all_without_one() -> None:
    assert verify.odd_ones({"web1": "a", "web2": "b", "web3": "a"}) == {
        "web2": "b here, a on web1, web3"}
    assert set(verify.odd_ones({"web1": "a", "web2": "b"})) == {"web1", "web2"}
    assert verify.odd_ones({"web1": "a", "web2": "a"}) == {}
    assert verify.odd_ones({"web1": "a"}) == {}


def test_output_cannot_fake_a_section() -> None:
    token = "f00d"
    out = ("@@f00d begin boot\nMagento CLI 2.4.7\n@@beef end boot 0\n@@f00d end boot 0\n"
           "@@f00d begin mode\nCurrent application mode: production.\n")
    assert verify.sections(out, token) == {"boot": (0, "Magento CLI 2.4.7\n@@beef end boot 0")}
    checks = verify.parse("web1", out, token, {"script": "/x", "globs": []})
    assert failed(checks) == [("web1", n) for n in sorted(PER_HOST) if n != "boot"]


@pytest.mark.parametrize("path", ["/srv/shop/current/pub/health_check.php", "../x.php",
                                  "pub/health_check.txt", ""])
def test_a_path_outside_the_release_or_not_php_is_refused(path: str) -> None:
    with pytest.raises(SettingsError, match="DEPLOY_VERIFY_PATH"):
        verify.check_path(path)


# --------------------------------------------------------------------------- on the rig


def test_a_good_release_and_the_live_one_pass_every_check_on_every_host(live: Shop) -> None:
    settings = live.settings()
    rel = built(live, settings)
    checks = verify.verify(live.hosts(), settings, rel)
    assert failed(checks) == []
    assert sorted((c.host, c.name) for c in checks) == sorted(
        (h, n) for h in ("web1", "web2", "web3") for n in PER_HOST + ACROSS)
    assert detail(checks, "web2", "static version") == rel.replace(".", "")
    assert detail(checks, "web1", "fastcgi") == (
        f"/srv/run/php-fpm.sock: /srv/shop/releases/{rel}/pub/health_check.php answered 200 OK")
    raise_for(checks)  # nothing to raise
    a = live.live(live.rig.host("web1"))
    assert failed(verify.verify(live.hosts(), settings, a)) == []


def test_generated_code_that_differs_on_one_host_names_that_host(live: Shop) -> None:
    settings = live.settings()
    rel = built(live, settings)
    in_release(live, "web2", rel, "echo '<?php // stray' > generated/code/Stray.php")
    checks = verify.verify(live.hosts(), settings, rel)
    assert failed(checks) == [("web2", "generated identical")]
    assert "[web2] generated identical: " in message(checks, rel)
    assert "on web1, web3" in detail(checks, "web2", "generated identical")


def test_a_static_version_that_differs_on_one_host_names_that_host(live: Shop) -> None:
    settings = live.settings()
    rel = built(live, settings)
    in_release(live, "web3", rel, "echo 1700000000 > pub/static/deployed_version.txt")
    checks = verify.verify(live.hosts(), settings, rel)
    assert failed(checks) == [("web3", "static version identical")]
    assert detail(checks, "web3", "static version identical").startswith("1700000000 here, ")


def test_developer_mode_in_the_release_is_named(live: Shop) -> None:
    settings = live.settings()
    rel = built(live, settings)
    own_env_php(live, "web3", rel, "$c['MAGE_MODE'] = 'developer';")
    checks = verify.verify(live.hosts(), settings, rel)
    assert failed(checks) == [("web3", "mode")]
    assert "[web3] mode: application mode is developer, not production" in message(checks, rel)


def test_a_health_check_answering_500_is_named_with_the_status(live: Shop) -> None:
    settings = live.settings()
    rel = built(live, settings)
    own_env_php(live, "web2", rel,
                "$c['db']['connection']['default']['dbname'] = '/srv/nowhere/shop.json';")
    checks = verify.verify(live.hosts(), settings, rel)
    assert failed(checks) == [("web2", "fastcgi")]
    text = message(checks, rel)
    assert f"[web2] fastcgi: /srv/run/php-fpm.sock: /srv/shop/releases/{rel}/pub/" \
           "health_check.php answered 500 Internal Server Error" in text
    # Magento's health check answers with an empty body and logs why.
    log = live.rig.host("web2").inside("/srv/shop/shared/var/log/system.log").read_text()
    assert "main.ERROR: MySQL connection failed: SQLSTATE[HY000] [2002]" in log


def test_an_unusable_cache_configuration_fails_the_health_check(live: Shop) -> None:
    settings = live.settings()
    rel = built(live, settings)
    own_env_php(live, "web1", rel,
                "unset($c['cache']['frontend']['page_cache']['backend_options']);")
    checks = verify.verify(live.hosts(), settings, rel)
    assert failed(checks) == [("web1", "fastcgi")]
    assert "answered 500" in detail(checks, "web1", "fastcgi")


def test_bin_magento_that_cannot_boot_is_named(live: Shop) -> None:
    settings = live.settings()
    rel = built(live, settings)
    in_release(live, "web1", rel, "rm vendor/autoload.php")
    checks = verify.verify(live.hosts(), settings, rel)
    assert failed(checks) == [("web1", "boot"), ("web1", "fastcgi"), ("web1", "mode")]
    assert "Autoload error" in detail(checks, "web1", "boot")
    assert "[web1] boot: bin/magento --version failed (exit 1)" in message(checks, rel)
    # The rig's FPM has PHP's default output_buffering=0: bootstrap.php's error page goes
    # out before its http_response_code(500), so the answer is 200 with that page.
    assert "answered 200 OK; body: " in detail(checks, "web1", "fastcgi")
    assert "Autoload error" in detail(checks, "web1", "fastcgi")


def test_no_fpm_socket_is_an_error_unless_fcgi_is_optional(live: Shop) -> None:
    settings = live.settings(fpm_socket="/srv/run/none.sock")
    rel = built(live, settings)
    checks = verify.verify(live.hosts(), settings, rel)
    assert failed(checks) == [(h, "fastcgi") for h in ("web1", "web2", "web3")]
    assert "no such socket" in detail(checks, "web3", "fastcgi")
    optional = verify.verify(live.hosts(), settings, rel, fcgi=False)
    assert failed(optional) == []
    assert "not checked (fcgi=False)" in detail(optional, "web3", "fastcgi")


def test_a_missing_release_folder_is_named_once_per_host(live: Shop) -> None:
    checks = verify.verify(live.hosts(), live.settings(), "20000101.000000.000")
    assert failed(checks) == [(h, "release") for h in ("web1", "web2", "web3")]
    assert "no such folder: /srv/shop/releases/20000101.000000.000" in message(checks, "x")
