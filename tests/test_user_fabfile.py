"""The library used from an agency's own fabfile: a task wrapping ``deploy`` deploys,
once, coordinated over all hosts, and a failure in it fails the wrapping task."""

from __future__ import annotations

import pytest
from scenario import Shop

pytestmark = [pytest.mark.real_hosts, pytest.mark.slow]

FABFILE = '''\
from fabric import Group, task
from fabric_magento_deploy import (
    build_release, deploy, maintenance_off, maybe_upgrade, prepare_release, rollback,
    switch_symlink,
)


@task
def ship(c):
    """Checks, the deploy, then a Varnish purge: the agency's own steps around ours."""
    print("checks passed")
    deploy(c, quiet=True)
    print("varnish purged")


@task
def ship_two(c):
    deploy(Group("web1", "web2", config=c.config), quiet=True, partial=True)


@task
def undo(c):
    rollback(c)


@task
def by_steps(c):
    """The deploy's steps from code, on a Group: twice, so two releases."""
    for _ in range(2):
        web = Group("web1", "web2", "web3", config=c.config)
        prepare_release(web)
        build_release(web)
        maybe_upgrade(web)
        switch_symlink(web)
        maintenance_off(web)
'''


@pytest.fixture
def project(rig3):
    shop = Shop(rig3)
    path = rig3.base / "agency"
    path.mkdir()
    (path / "fabfile.py").write_text(FABFILE)
    return shop, path


def test_a_task_wrapping_deploy_deploys_once_to_every_host(project) -> None:
    shop, path = project
    result = shop.fab("ship", project=path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert out.index("checks passed") < out.index("is live on") < out.index("varnish purged")
    assert out.count("deploy: release") == 1 and "switch spread across hosts" in out
    lives = {shop.live(h) for h in shop.rig.hosts}
    assert len(lives) == 1 and None not in lives
    assert sum(shop.commands(h).count("setup:db:status") for h in shop.rig.hosts) == 1

    shop.commit(label="v2")
    two = shop.fab("ship-two", project=path)
    assert two.returncode == 0, two.stdout + two.stderr
    web1, web2, web3 = shop.rig.hosts
    assert shop.live(web1) == shop.live(web2) != shop.live(web3)
    assert "partial: web3" in two.stdout

    back = shop.fab("undo", project=path)  # a plain Context: all of DEPLOY_HOSTS, at once
    assert back.returncode == 1, back.stdout + back.stderr
    assert "[web3] no earlier release to roll back to" in back.stderr
    assert shop.live(web1) == shop.live(web2) != shop.live(web3), "all or none"


def test_a_failing_wrapped_deploy_fails_the_wrapping_task(project) -> None:
    shop, path = project
    shop.faults(shop.rig.host("web2"), {"setup:di:compile": {"exit": 1, "message": "boom"}})
    result = shop.fab("ship", project=path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "checks passed" in result.stdout and "varnish purged" not in result.stdout
    assert "[web2] di:compile failed" in result.stderr
    assert all(shop.live(h) is None for h in shop.rig.hosts)


def test_step_tasks_called_from_code_with_a_group(project) -> None:
    shop, path = project
    result = shop.fab("by-steps", project=path)
    assert result.returncode == 0, result.stdout + result.stderr
    per_host = [shop.releases(h) for h in shop.rig.hosts]
    assert len(per_host[0]) == 2 and per_host.count(per_host[0]) == 3, \
        "each prepare-release call from code makes one new release, the same on every host"
    assert {shop.live(h) for h in shop.rig.hosts} == {per_host[0][-1]}
    assert result.stdout.count("prepared release") == 6
