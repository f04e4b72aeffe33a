"""Many hosts, one release: three real sshd hosts with separate filesystems."""

from __future__ import annotations

import os
import signal

import pytest
from rig import WebHost
from scenario import (
    Gate,
    Shop,
    eventually,
    running,
    stop_with,
)

from fabric_magento_deploy.deploy import DeployError

pytestmark = [pytest.mark.real_hosts, pytest.mark.slow]


@pytest.fixture
def fleet(rig3):
    return Shop(rig3)


def test_one_release_everywhere_switched_after_every_build(fleet: Shop) -> None:
    result = fleet.fab("deploy", "--hosts=web1,web2,web3", "--quiet")
    assert result.returncode == 0, result.stdout + result.stderr
    hosts = fleet.rig.hosts
    lives = {fleet.live(h) for h in hosts}
    assert len(lives) == 1 and None not in lives
    rel = lives.pop()
    for host in hosts:
        static = fleet.release_path(host, rel, "pub/static/deployed_version.txt")
        assert static.read_text().strip() == rel.replace(".", ""), "same version on every host"
    last_build = max(e["t"] for h in hosts for e in fleet.log(h)
                     if e["cmd"] == "setup:static-content:deploy")
    first_switch = min(h.inside("/srv/shop/current").lstat().st_mtime for h in hosts)
    assert first_switch >= last_build, "a host switched before every host had built"
    assert "switch spread across hosts" in result.stdout
    for name in ("web1", "web2", "web3"):
        assert name in result.stdout


def test_schema_release_upgrades_once_on_the_primary_with_every_host_in_maintenance(
        fleet: Shop) -> None:
    live = fleet.deploy().release
    fleet.commit(modules={"Shop_Checkout": "2.1.0"})
    web2 = fleet.rig.host("web2")
    gate = Gate(fleet.rig, held=["web2"], program="php", arg="setup:upgrade")

    def flags() -> dict[str, tuple[bool, bool]]:
        """Per host: maintenance flag in the live release, in the new release."""
        state = {}
        for host in fleet.rig.hosts:
            new = [r for r in fleet.releases(host) if r != live]
            state[host.name] = (
                fleet.release_path(host, live, "var/.maintenance.flag").exists(),
                len(new) == 1
                and fleet.release_path(host, new[0], "var/.maintenance.flag").exists())
        return state

    with gate.look_when_held(web2, flags) as seen:
        summary = fleet.deploy(primary="web2", php=gate.command)
    assert summary.path == "maintenance"
    assert seen, "setup:upgrade never started on web2"
    assert seen[0] == {name: (True, True) for name in ("web1", "web2", "web3")}, \
        "(live, new) release flags during setup:upgrade"
    counts = {h.name: fleet.commands(h).count("setup:upgrade") for h in fleet.rig.hosts}
    assert counts == {"web1": 0, "web2": 1, "web3": 0}
    for host in fleet.rig.hosts:
        assert fleet.live(host) == summary.release
        assert not fleet.release_path(host, summary.release, "var/.maintenance.flag").exists()
        assert not fleet.release_path(host, live, "var/.maintenance.flag").exists()


@pytest.mark.parametrize("change", [{"label": "v2"}, {"modules": {"Shop_Checkout": "2.1.0"}}],
                         ids=["code-only", "schema"])
def test_cache_is_flushed_once_on_the_primary_after_every_host_switched(
        fleet: Shop, change: dict) -> None:
    fleet.deploy()
    fleet.commit(**change)
    hosts = fleet.rig.hosts
    before = {h.name: len(fleet.log(h)) for h in hosts}
    summary = fleet.deploy(primary="web3")
    flushes = {h.name: [e for e in fleet.log(h)[before[h.name]:] if e["cmd"] == "cache:flush"]
               for h in hosts}
    assert {name: len(f) for name, f in flushes.items()} == {"web1": 0, "web2": 0, "web3": 1}
    flush = flushes["web3"][0]
    assert flush["exit"] == 0
    assert flush["bp"].endswith(f"/releases/{summary.release}")
    # `current` is a new link renamed into place: its mtime is when that host switched
    switched = {h.name: h.inside("/srv/shop/current").lstat().st_mtime for h in hosts}
    assert all(fleet.live(h) == summary.release for h in hosts)
    late = {name: t for name, t in switched.items() if t > flush["t_start"]}
    assert not late, f"cache:flush started before the switch on {sorted(late)}"
    if change.get("modules"):
        upgrade = next(e for e in fleet.log(hosts[2])[before["web3"]:]
                       if e["cmd"] == "setup:upgrade")
        assert upgrade["t"] <= flush["t_start"]


def test_build_failure_on_one_host_switches_nobody(fleet: Shop) -> None:
    live = fleet.deploy().release
    fleet.commit(label="v2")
    web2 = fleet.rig.host("web2")
    fleet.faults(web2, {"setup:static-content:deploy": {"exit": 1,
                                                        "message": "Theme not found"}})
    with pytest.raises(DeployError) as err:
        fleet.deploy()
    assert "web2" in str(err.value) and "Theme not found" in str(err.value)
    assert "web1" not in str(err.value).split("failed on")[1].splitlines()[0]
    for host in fleet.rig.hosts:
        assert fleet.live(host) == live
        assert fleet.releases(host) == [live], f"{host.name} kept the failed release"
        assert not fleet.lock_exists(host)
    assert all("setup:db:status" not in fleet.commands(h)[-2:] for h in fleet.rig.hosts)


def test_switch_failure_on_one_host_puts_every_host_back(fleet: Shop) -> None:
    live = fleet.deploy().release
    fleet.commit(label="v2")
    web3 = fleet.rig.host("web3")
    gate = Gate(fleet.rig, held=["web3"])  # web3's build waits: lock and preflight are done

    def break_web3() -> None:
        web3.sh("chmod 0555 /srv/shop")  # deployer can no longer create the link

    try:
        with gate.look_when_held(web3, break_web3) as broken, pytest.raises(
                DeployError, match=r"(?s)switch failed on web3.*back on its previous"):
            fleet.deploy(composer=gate.command)
    finally:
        web3.sh("chmod 0755 /srv/shop")
    assert broken, "web3's build never reached the gate"
    for host in fleet.rig.hosts:
        assert fleet.live(host) == live, f"{host.name} not back on {live}"


def test_lock_on_one_host_refuses_the_whole_deploy(fleet: Shop) -> None:
    web3 = fleet.rig.host("web3")
    web3.inside("/srv/shop/deploy.lock").write_text(
        '{"who": "alice@laptop", "pid": 1, "since": "2020-01-01T00:00:00+00:00", '
        '"action": "deploy", "release": "x"}\n')
    result = fleet.fab("deploy")
    assert result.returncode == 1
    assert "alice@laptop" in result.stderr and "probably stale" in result.stderr
    assert "fab unlock --hosts=web3" in result.stderr
    for host in fleet.rig.hosts:
        assert fleet.releases(host) == []
        if host is not web3:
            assert not fleet.lock_exists(host)
    unlocked = fleet.fab("unlock", "--hosts=web3")
    assert unlocked.returncode == 0 and "alice@laptop" in unlocked.stdout
    assert fleet.fab("deploy").returncode == 0


def test_ad_hoc_tasks_run_once_per_host(fleet: Shop) -> None:
    fleet.deploy()
    result = fleet.fab("-H", "web1,web3", "db-status")
    assert result.returncode == 0, result.stderr
    assert [line.split("]")[0] for line in result.stdout.splitlines()] == ["[web1", "[web3"]
    assert "setup:db:status" not in fleet.commands(fleet.rig.host("web2"))[-2:]


def test_tasks_imported_into_a_users_own_fabfile(fleet: Shop) -> None:
    project = fleet.rig.base / "agency-project"
    project.mkdir()
    (project / "fabfile.py").write_text(
        "from fabric import task\n"
        "from fabric_magento_deploy import deploy, releases\n\n\n"
        "@task\n"
        "def warm_cache(c):\n"
        "    \"\"\"The agency's own task.\"\"\"\n"
        "    print('warming')\n"
    )
    listed = fleet.fab("--list", project=project)
    assert {"deploy", "releases", "warm-cache"} <= set(listed.stdout.split())
    result = fleet.fab("deploy", "--hosts=web1,web2", "--partial", "--quiet", project=project)
    assert result.returncode == 0, result.stdout + result.stderr
    web1, web2, web3 = fleet.rig.hosts
    assert fleet.live(web1) == fleet.live(web2) is not None
    assert fleet.releases(web3) == []
    assert result.stdout.count("switch spread across hosts") == 1


def test_ctrl_c_during_a_three_host_build_leaves_every_host_as_it_was(fleet: Shop) -> None:
    live = fleet.deploy().release
    fleet.commit(label="v2")
    for host in fleet.rig.hosts:
        fleet.faults(host, {"setup:di:compile": {"sleep": 30.0}})
    proc = fleet.fab_background("deploy")
    try:
        eventually(lambda: all(running(h, "setup:di:compile") for h in fleet.rig.hosts),
                   "the three builds in di:compile")
    except AssertionError:
        proc.kill()
        raise
    out = stop_with(proc, signal.SIGINT)
    assert proc.returncode == 130, out
    for host in fleet.rig.hosts:
        assert fleet.live(host) == live
        assert fleet.releases(host) == [live]
        assert not fleet.lock_exists(host)
        eventually(lambda h=host: not running(h, "setup:di:compile"),
                   f"the interrupted build stopped on {host.name}")


def test_releases_table_is_shared_and_disagreement_is_loud(fleet: Shop) -> None:
    first = fleet.deploy().release
    fleet.commit(label="v2")
    second = fleet.deploy().release
    agreed = fleet.fab("releases")
    assert agreed.returncode == 0, agreed.stderr
    assert agreed.stdout.startswith("releases on web1, web2, web3:")
    assert agreed.stdout.count(second) == 1 and "DISAGREE" not in agreed.stdout
    given = fleet.fab("--hosts=web1,web2,web3", "releases")  # fab calls it per host
    assert given.returncode == 0, given.stderr
    assert given.stdout.count("releases on ") == 1, "one table under --hosts too"
    assert given.stdout.splitlines()[0] == agreed.stdout.splitlines()[0]
    fleet.rig.host("web2").sh(f"ln -sfn releases/{first} /srv/shop/current", user="deployer")
    split = fleet.fab("releases")
    assert split.stdout.count("releases on ") == 3
    assert "HOSTS DISAGREE" in split.stdout and first in split.stdout.splitlines()[-1]


def test_unreachable_host_is_named_and_no_host_is_touched(fleet: Shop) -> None:
    web1 = fleet.rig.host("web1")
    web3 = fleet.rig.host("web3")
    os.kill(web3.daemon_pid("sshd"), signal.SIGTERM)  # web3's sshd is down
    eventually(lambda: web3.daemon_pid("sshd") is None, "web3's sshd gone")
    result = fleet.fab("deploy", "--hosts=web1,web3", "--partial", timeout=60)
    assert result.returncode == 1
    assert "[web3] connect failed" in result.stderr, result.stderr
    assert fleet.releases(web1) == [] and not fleet.lock_exists(web1)


def test_opcache_flush_failing_on_one_host_keeps_the_old_release_in_maintenance_there(
        fleet: Shop) -> None:
    live = fleet.deploy().release
    fleet.commit(modules={"Shop_Catalog": "1.1.0"})
    web2 = fleet.rig.host("web2")
    web2.inside("/srv/log/opcache-broken").touch()
    result = fleet.fab("deploy", "--quiet", opcache="command",
                       opcache_command="test ! -e /srv/log/opcache-broken")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    verdict = [line for line in result.stderr.splitlines() if "not flushed on" in line]
    assert len(verdict) == 1 and verdict[0].split("not flushed on")[1].split(":")[0].strip() \
        == "web2", result.stderr
    new = fleet.live(web2)
    assert new not in (None, live)
    for host in fleet.rig.hosts:
        assert fleet.live(host) == new, "the release is live everywhere"
        assert not fleet.release_path(host, new, "var/.maintenance.flag").exists()
        old_flag = fleet.release_path(host, live, "var/.maintenance.flag").exists()
        assert old_flag == (host is web2), f"{host.name}: old release flag {old_flag}"
        assert not fleet.lock_exists(host)


def php_wrapper(host: WebHost, after_static_content: str = "") -> str:
    """``DEPLOY_PHP`` for a host: the real php, then (after static content) a sabotage."""
    wrapper = host.inside("/srv/log/php")
    sabotage = after_static_content or ":"
    wrapper.write_text('#!/bin/sh\nphp "$@" || exit $?\n'
                       f'case "$*" in *setup:static-content:deploy*) {sabotage};; esac\n')
    wrapper.chmod(0o755)
    return "/srv/log/php"


@pytest.mark.parametrize("sabotage", [
    "echo 20000101000000000 > pub/static/deployed_version.txt",
    "rm -rf generated/metadata",
], ids=["wrong-static-version", "generated-missing"])
def test_build_that_finishes_but_fails_verification_on_one_host_switches_nobody(
        fleet: Shop, sabotage: str) -> None:
    live = fleet.deploy().release
    fleet.commit(label="v2", modules={"Shop_Catalog": "1.1.0"})
    web2 = fleet.rig.host("web2")
    for host in fleet.rig.hosts:
        php = php_wrapper(host, sabotage if host is web2 else "")
    before = {h.name: len(fleet.log(h)) for h in fleet.rig.hosts}
    with pytest.raises(DeployError) as err:
        fleet.deploy(php=php)
    message = str(err.value)
    assert "web2" in message and "web1" not in message and "web3" not in message, message
    for host in fleet.rig.hosts:
        commands = [e["cmd"] for e in fleet.log(host)[before[host.name]:]]
        assert "setup:static-content:deploy" in commands, f"{host.name} did not build"
        # The database status may be read in verification's round trip; nothing acts on it.
        assert "setup:upgrade" not in commands and "maintenance:enable" not in commands
        assert fleet.live(host) == live
        assert fleet.releases(host) == [live], f"{host.name} kept the unverified release"
        assert not fleet.release_path(host, live, "var/.maintenance.flag").exists()
        assert not fleet.lock_exists(host)


def test_current_as_a_real_directory_is_refused_before_anything_changes(fleet: Shop) -> None:
    live = fleet.deploy().release
    web2 = fleet.rig.host("web2")
    web2.sh(f"cd /srv/shop && rm current && cp -a releases/{live} current", user="deployer")
    new_commit = fleet.commit(label="v2")

    def state(host: WebHost) -> tuple:
        return (fleet.releases(host), sorted(p.name for p in host.inside("/srv/shop/history")
                                            .iterdir()), len(fleet.log(host)))

    before = {h.name: state(h) for h in fleet.rig.hosts}
    result = fleet.fab("deploy", "--quiet")
    assert result.returncode == 1, result.stdout
    assert "[web2] /srv/shop/current is a real directory" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    for host in fleet.rig.hosts:
        assert state(host) == before[host.name], f"{host.name} changed"
        assert not fleet.lock_exists(host)
        fetched = host.sh(f"git -C /srv/shop/repo.git cat-file -e {new_commit}", user="deployer",
                          check=False)
        assert fetched.returncode != 0, f"{host.name} fetched the new commit"
        if host is not web2:
            assert fleet.live(host) == live
    current = web2.inside("/srv/shop/current")
    assert current.is_dir() and not current.is_symlink()
