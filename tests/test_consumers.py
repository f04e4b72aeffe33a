"""tasks/consumers.py on real hosts: after deploying B, no message is handled by A's code.

A consumer is started from release A the way an operator or supervisor would (``cd
current && php bin/magento queue:consumers:start ...``); B is deployed; ``restart`` puts
the poison pill from ``current`` and lists the consumers by release. The old consumer,
idle, only notices at its next message (it puts it back and exits); the crontab line
(run by the test, as cron would) then starts the consumer again from B, which handles
the message.
"""

from __future__ import annotations

import fcntl
import json
import shlex

import pytest
from scenario import Shop, eventually, running

from fabric_magento_deploy import consumers, cron

pytestmark = pytest.mark.real_hosts()
NAME = "shop.label.update"
SPOOL = "/var/spool/cron/crontabs"


def add_message(shop: Shop, body: str) -> None:
    """Append a message under the fake database's lock (consumers write it meanwhile)."""
    with open(shop.db, "r+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        data = json.loads(handle.read())
        data.setdefault("queue_message", {}).setdefault(NAME, []).append({"id": body,
                                                                          "body": body})
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(data))


def processed(shop: Shop) -> list[dict]:
    """Messages handled so far, read under the database's lock (it is rewritten in place)."""
    with open(shop.db) as handle:
        fcntl.flock(handle, fcntl.LOCK_SH)
        return json.loads(handle.read()).get("queue_processed", [])


def start_consumer(shop: Shop, host, *options: str) -> int:
    before = set(running(host, "queue:consumers:start"))
    host.sh("cd /srv/shop/current || exit 1; setsid php bin/magento queue:consumers:start "
            f"{NAME} {' '.join(options)} </dev/null >/dev/null 2>&1 &", user=shop.rig.user)
    pids = eventually(lambda: set(running(host, "queue:consumers:start")) - before,
                      "consumer started")
    return pids.pop()


@pytest.fixture
def two_releases(rig1):
    """Release A live with a consumer started from it, then B deployed."""
    shop = Shop(rig1)
    host = rig1.hosts[0]
    host.sh("mkdir -p /srv/cronspool && chown root:crontab /srv/cronspool && "
            f"chmod 1730 /srv/cronspool && mount --bind /srv/cronspool {SPOOL}")
    shop.deploy()
    a = shop.live(host)
    yield shop, host, a


def test_consumer_from_a_runs_b_after_deploy_and_restart(two_releases) -> None:
    shop, host, a = two_releases
    old_pid = start_consumer(shop, host, "--max-messages=100")
    shop.commit(label="v2")
    summary = shop.deploy()  # the deploy restarts consumers itself, after the switch
    b = shop.live(host)
    assert b != a
    [h] = shop.hosts()
    settings = shop.settings()
    notes = "\n".join(summary.notes)
    assert f"[{h.name}] queue:consumers:restart: poison pill changed" in notes, notes
    assert f"consumer pid {old_pid}" in notes or str(old_pid) in notes, notes
    assert "will exit at its next message" in notes
    assert not [w for w in summary.warnings if "consumer" in w], summary.warnings

    before = consumers.check(h, settings)  # idle: alive until its next message
    assert [(c.pid, c.release, c.old) for c in before.old] == [(old_pid, a, True)]

    add_message(shop, "m1")
    eventually(lambda: old_pid not in running(host, "queue:consumers:start"),
               "the old consumer exited at its next message")
    assert processed(shop) == []  # A's code did not handle it

    cron.install(h, settings)
    line = [ln for ln in host.sh("crontab -l", user=shop.rig.user).stdout.splitlines()
            if "cron:run" in ln][0].split(None, 5)[5]
    host.sh(f"sh -c {shlex.quote(line)}", user=shop.rig.user, check=False)  # cron's minute
    done = eventually(lambda: processed(shop), "the message was handled")
    assert [(m["body"], m["bp"], m["label"]) for m in done] == [
        ("m1", f"/srv/shop/releases/{b}", "v2")]

    after = consumers.check(h, settings)
    assert after.old == [] and after.unknown == []
    assert [c.release for c in after.new] == [b]


def test_consumer_ignoring_the_pill_is_named_and_stopped_on_request(two_releases) -> None:
    shop, host, a = two_releases
    pid = start_consumer(shop, host)  # no --max-messages: Magento's subscribe() loop
    shop.commit(label="v2")
    shop.deploy()
    [h] = shop.hosts()
    settings = shop.settings()

    report = consumers.restart(h, [h], settings)[h.name]
    assert [(c.pid, c.release, c.honours_pill) for c in report.old] == [(pid, a, False)]
    assert not report.ok
    assert "IGNORES the poison pill" in "\n".join(report.lines())
    assert running(host, "queue:consumers:start") == [pid]

    stopped = consumers.restart(h, [h], settings, stop_old=True)[h.name]
    assert stopped.stopped == [pid] and stopped.ok
    eventually(lambda: not running(host, "queue:consumers:start"), "old consumer stopped")


def test_consumer_started_through_current_before_the_switch_is_old(two_releases) -> None:
    """``php /srv/shop/current/bin/magento ...`` from elsewhere: the path names no release;
    it started before ``current`` was replaced, so it runs the old one."""
    shop, host, a = two_releases
    host.sh("cd /; setsid php /srv/shop/current/bin/magento queue:consumers:start "
            f"{NAME} --max-messages=5 </dev/null >/dev/null 2>&1 &", user=shop.rig.user)
    pid = eventually(lambda: running(host, "queue:consumers:start"), "consumer started")[0]
    [h] = shop.hosts()
    settings = shop.settings()
    assert [(c.pid, c.old, c.via_current) for c in consumers.check(h, settings).new] == [
        (pid, False, True)]
    shop.commit(label="v2")
    shop.deploy()
    report = consumers.check(h, settings)
    assert [(c.pid, c.old, c.via_current) for c in report.old] == [(pid, True, True)]
