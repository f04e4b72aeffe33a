"""A shop's own steps at named points: settings hooks (every host or the primary),
Python hooks from a user's fabfile, and what a failing hook does before and after the
switch."""

from __future__ import annotations

import pytest
from scenario import Shop

pytestmark = [pytest.mark.real_hosts, pytest.mark.slow]

FABFILE = '''\
from fabric import task
from fabric_magento_deploy import deploy
from fabric_magento_deploy.hooks import hook


@hook("before_switch")
def smoke_test(ctx):
    """A request-free smoke test: the new release boots bin/magento on every host."""
    ctx.run("php bin/magento --version >/dev/null")
    print(f"smoke test passed for {ctx.release} on {len(ctx.hosts)} hosts")


@hook("on_failure")
def tell_the_team(ctx):
    print(f"DEPLOY FAILED: {type(ctx.error).__name__}")


@task
def ship(c):
    deploy(c, quiet=True)
'''


def test_settings_hooks_run_where_and_when_they_say(rig3) -> None:
    shop = Shop(rig3)
    hyva = ("test -f vendor/autoload.php && test -d generated/metadata"
            " && test ! -e pub/static/deployed_version.txt && echo css > var/tailwind-built")
    rel = shop.deploy(hook_before_static_content=hyva,
                      hook_after_switch="primary:readlink ../../current >> /srv/log/purged"
                      ).release
    for host in rig3.hosts:
        assert shop.release_path(host, rel, "var/tailwind-built").read_text() == "css\n"
    purged = [h.name for h in rig3.hosts if h.inside("/srv/log/purged").exists()]
    assert purged == ["web1"], "primary: runs on the primary only"
    assert rig3.host("web1").inside("/srv/log/purged").read_text() == f"releases/{rel}\n"


def test_a_failing_hook_before_the_switch_stops_like_a_failed_build(rig3) -> None:
    shop = Shop(rig3)
    live = shop.deploy().release
    shop.commit(label="v2")
    result = shop.fab("deploy", hook_before_switch="test -e /srv/log/ready-to-go")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "hook before_switch failed" in result.stderr and "nothing was switched" in result.stderr
    for host in rig3.hosts:
        assert shop.live(host) == live and shop.releases(host) == [live]
    after = shop.fab("deploy", hook_after_switch="false")
    assert after.returncode == 1 and "THE RELEASE IS LIVE, BUT" in after.stderr
    assert "hook after_switch failed" in after.stderr
    assert len({shop.live(h) for h in rig3.hosts} - {live}) == 1


def test_python_hooks_from_a_users_fabfile(rig3) -> None:
    shop = Shop(rig3)
    project = rig3.base / "agency"
    project.mkdir()
    (project / "fabfile.py").write_text(FABFILE)
    ok = shop.fab("ship", project=project)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    rel = shop.live(rig3.host("web1"))
    assert f"smoke test passed for {rel} on 3 hosts" in ok.stdout
    shop.faults(rig3.host("web3"), {"setup:di:compile": {"exit": 1, "message": "boom"}})
    shop.commit(label="v2")
    failed = shop.fab("ship", project=project)
    assert failed.returncode == 1 and "DEPLOY FAILED: DeployError" in failed.stdout
    assert "smoke test passed" not in failed.stdout
