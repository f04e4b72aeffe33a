"""Cron during a deploy: a schema release pauses every crontab line of this shop's
``cron:run`` on every host before maintenance goes on, and resumes it after maintenance
is lifted, also when it fails; not while the upgrade's outcome is unknown. A line it
cannot pause refuses the deploy before anything changed; a failed resume is an error.
The crontab lines are run by the test every 0.1 s (a faster cron daemon), each host with
its own crontab spool (``WebHost.own_crontabs``)."""

from __future__ import annotations

import calendar
import re
import shlex
import threading
import time

import pytest
from scenario import Shop, aborted_upgrade, eventually, running

from fabric_magento_deploy import cron
from fabric_magento_deploy.deploy import DeployError

pytestmark = [pytest.mark.real_hosts, pytest.mark.slow]

STOP = "/srv/log/cron-loop.stop"
SEEN = "/srv/log/cron-loop"


def cron_loop(shop: Shop) -> threading.Thread:
    """Run our crontab line on web1 until told to stop; per run, one line: maintenance on
    before it, cron:run started by it (0/1), maintenance on after it."""
    line = cron.cron_line(shop.settings()).split(None, 5)[5]
    flag = "[ -e /srv/shop/current/var/.maintenance.flag ] && echo 1 || echo 0"
    runs = "grep -c '\"cron:run\"' /srv/log/magento.jsonl 2>/dev/null || true"
    web1 = shop.rig.host("web1")
    # As cron does: `sh -c LINE` per run. The loop itself must not name cron:run in its
    # arguments, or the deploy's pause would take it for a cron:run still running.
    web1.inside("/srv/log/cron-line").write_text(line)
    script = (f"end=$((SECONDS+120)); while [ $SECONDS -lt $end ] && [ ! -e {STOP} ]; do "
              f"before=$({flag}); n=$({runs}); sh -c \"$(cat /srv/log/cron-line)\" "
              f">/dev/null 2>&1; m=$({runs}); "
              f"echo \"$before $((m-n)) $({flag})\" >> {SEEN}; sleep 0.1; done")
    thread = threading.Thread(target=web1.sh, args=(script,), kwargs={"user": "deployer"})
    thread.start()
    return thread


def runs(shop: Shop) -> list[tuple[int, int, int]]:
    text = shop.rig.host("web1").inside(SEEN).read_text()
    return [tuple(int(x) for x in line.split()) for line in text.splitlines()]  # type: ignore


def stop(shop: Shop, thread: threading.Thread) -> None:
    shop.rig.host("web1").sh(f"touch {STOP}", user="deployer")
    thread.join(timeout=60)


@pytest.mark.parametrize("upgrade_fails", [False, True], ids=["upgrade", "failed-upgrade"])
def test_no_cron_run_starts_during_the_maintenance_window(rig3, upgrade_fails: bool) -> None:
    shop = Shop(rig3)
    shop.deploy()
    shop.commit(label="v2", modules={"Shop_Catalog": "1.1.0"})  # a schema release
    web1 = rig3.host("web1")
    shop.faults(web1, {"setup:upgrade": {"sleep": 1.5, **({"exit": 1, "message": "boom"}
                                                           if upgrade_fails else {})}})
    thread = cron_loop(shop)
    try:
        # wait until the loop has run cron at least once before the deploy
        for _ in range(200):
            if web1.inside(SEEN).exists() and any(r[1] for r in runs(shop)):
                break
            threading.Event().wait(0.05)
        if upgrade_fails:
            with pytest.raises(DeployError):
                shop.deploy()
        else:
            summary = shop.deploy()
            assert summary.path == "maintenance"
        before = len(runs(shop))
        for _ in range(200):  # resumed: cron runs again
            if any(r[1] for r in runs(shop)[before:]):
                break
            threading.Event().wait(0.05)
    finally:
        stop(shop, thread)
    seen = runs(shop)
    inside = [r for r in seen[:before] if r[0] == 1 and r[2] == 1]  # while the deploy ran
    assert inside, f"the loop never ran inside the maintenance window: {seen}"
    assert not [r for r in inside if r[1]], f"cron:run started during maintenance: {seen}"
    assert any(r[1] for r in seen[before:]), "cron did not resume after the deploy"
    # after a failed setup:upgrade maintenance stays on, but cron is resumed all the same
    for host in rig3.hosts:
        assert not host.inside("/srv/shop/cron.pause").exists(), host.name


# --------------------------------------------------------------------------- every line

SCHEMA = {"Shop_Catalog": "1.1.0"}
PLAIN = ("* * * * * php /srv/shop/current/bin/magento cron:run 2>&1 | grep -v \"Ran jobs by "
         "schedule\" >> /srv/log/plain-cron.log\n")
LOOP = "/srv/log/cron-loop.sh"
OTHER_LOG = "/srv/log/other-shop.log"


def crontab(host) -> str:
    proc = host.sh("crontab -l", user="deployer", check=False)
    return proc.stdout if proc.returncode == 0 else ""


def set_crontab(host, text: str) -> None:
    host.sh("crontab -", user="deployer", input=text)


def guarded(shop: Shop, text: str, *lines: str) -> str:
    """``text`` with the pause's guard in front of the command of each of ``lines``."""
    for line in lines:
        head = re.match(r"(\s*(?:\S+\s+){5})", line).group(1)  # type: ignore[union-attr]
        assert text.count(line + "\n") == 1, line
        text = text.replace(line + "\n", head + cron.guard(shop.settings()) + line[len(head):]
                            + "\n")
    return text


def fire_all(shop: Shop, host) -> int:
    """Run every ``cron:run`` line of the deploy user's crontab once, as cron does
    (``sh -c COMMAND`` in its home); how many ``cron:run`` the shop's log gained."""
    def count() -> int:
        return len([e for e in shop.log(host) if e["cmd"] == "cron:run"])

    before = count()
    for line in crontab(host).splitlines():
        if "cron:run" in line and not line.lstrip().startswith("#"):
            command = line.split(None, 5)[5]
            host.sh(f"sh -c {shlex.quote(command)}", user="deployer", check=False)
    return count() - before


def every_line_loop(host) -> threading.Thread:
    """Like :func:`cron_loop`, for every ``cron:run`` line of the crontab as it is at each
    run (a deploy guards lines meanwhile): per run, maintenance before, the ``cron:run``
    each line started (this shop's log plus the other shop's), maintenance after. The
    script is a file, so no process of the loop names cron:run and this shop's path."""
    flag = "[ -e /srv/shop/current/var/.maintenance.flag ] && echo 1 || echo 0"
    runs = (f"$(( $(grep -c '\"cron:run\"' /srv/log/magento.jsonl 2>/dev/null || true) + "
            f"$(cat {OTHER_LOG} 2>/dev/null | wc -l) ))")
    host.inside(LOOP).write_text(
        f"end=$((SECONDS+180)); while [ $SECONDS -lt $end ] && [ ! -e {STOP} ]; do\n"
        f"  before=$({flag}); counts=''\n"
        "  crontab -l 2>/dev/null | grep -v '^[[:space:]]*#' | grep -F 'cron:run' |"
        " sed -E 's/^[[:space:]]*([^[:space:]]+[[:space:]]+){5}//' > /srv/log/cron-lines\n"
        "  while IFS= read -r cmd; do\n"
        f"    n={runs}; sh -c \"$cmd\" </dev/null >/dev/null 2>&1; m={runs}\n"
        "    counts=\"$counts $((m-n))\"\n"
        "  done < /srv/log/cron-lines\n"
        f"  echo \"$before$counts $({flag})\" >> {SEEN}; sleep 0.1\n"
        "done\n")
    thread = threading.Thread(target=host.sh, args=(f"bash {LOOP}",),
                              kwargs={"user": "deployer", "timeout": 240})
    thread.start()
    return thread


def wait_for_run(shop: Shop, since: int, lines: list[int]) -> None:
    """Until one run after the first ``since`` ran every line of ``lines``."""
    def done() -> bool:
        seen = runs(shop)[since:] if shop.rig.host("web1").inside(SEEN).exists() else []
        return any(all(r[1 + i] for i in lines) for r in seen)
    eventually(done, f"a run of lines {lines}", timeout=90)


def test_every_line_of_this_shop_is_paused_during_the_upgrade_and_runs_after(rig3) -> None:
    """A plain line on current, one that cds there, one through a symlink, Magento's
    cron:install block: none starts cron:run during setup:upgrade, each runs again after;
    another shop's line runs all along and is not touched (the crontab compared byte for
    byte: only this shop's lines got the guard)."""
    shop = Shop(rig3)
    for host in rig3.hosts:
        host.own_crontabs()
    first = shop.deploy().release
    web1 = rig3.host("web1")
    web1.sh("ln -sfn /srv/shop/current /srv/www && mkdir -p /srv/other/current/bin && "
            f"echo '<?php file_put_contents(\"{OTHER_LOG}\", \"ran\\n\", FILE_APPEND);' "
            "> /srv/other/current/bin/magento && chown -R deployer: /srv/www /srv/other",
            user="root")
    ours = ["* * * * * php /srv/shop/current/bin/magento cron:run 2>&1 | grep -v \"Ran jobs by "
            "schedule\" >> /srv/log/plain-cron.log",
            "*/1 * * * * cd /srv/shop/current && php bin/magento cron:run >/dev/null 2>&1",
            "* * * * * php /srv/www/bin/magento cron:run >/dev/null 2>&1"]
    other = "* * * * * php /srv/other/current/bin/magento cron:run >/dev/null 2>&1"
    set_crontab(web1, "MAILTO=\"\"\n0 3 * * * /usr/local/bin/backup\n" + "\n".join(ours)
                + f"\n{other}\n")
    installed = web1.sh("cd /srv/shop/current && php bin/magento cron:install", user="deployer")
    assert "Crontab has been generated and saved" in installed.stdout
    before = crontab(web1)
    block = [ln for ln in before.splitlines() if f"/srv/shop/releases/{first}/bin/magento" in ln]
    assert len(block) == 1 and "#~ MAGENTO START" in before  # Magento's, pinned to `first`
    ours_idx, other_idx = [0, 1, 2, 4], 3  # their order among the crontab's cron:run lines

    shop.commit(label="v2", modules=SCHEMA)
    shop.faults(web1, {"setup:upgrade": {"sleep": 5}})
    thread = every_line_loop(web1)
    try:
        wait_for_run(shop, 0, ours_idx + [other_idx])
        summary = shop.deploy()
        assert summary.path == "maintenance"
        after = len(runs(shop))
        wait_for_run(shop, after, ours_idx)  # resumed: every line runs again
    finally:
        stop(shop, thread)
    seen = runs(shop)
    inside = [r for r in seen[:after] if r[0] == 1 and r[-1] == 1]
    assert inside, f"the loop never ran inside the maintenance window: {seen}"
    assert not [r for r in inside if any(r[1 + i] for i in ours_idx)], (
        f"cron:run started during setup:upgrade: {seen}")
    assert any(r[1 + other_idx] for r in inside), f"the other shop's cron stopped: {seen}"

    assert crontab(web1) == guarded(shop, before, *ours, block[0])
    assert f"\n{other}\n" in crontab(web1)
    notes = "\n".join(summary.notes)
    assert "[web1] cron paused (no new cron:run, 4 crontab line(s))" in notes, notes
    assert notes.count("[web1] crontab: guarded") == 4, notes
    for host in rig3.hosts[1:]:
        assert crontab(host) == "", host.name  # the other hosts' spools: never written
        assert f"[{host.name}] cron paused (no new cron:run) until" in notes
    for host in rig3.hosts:
        assert not host.inside("/srv/shop/cron.pause").exists(), host.name

    # The next schema deploy finds every line guarded: the crontab is not written again.
    shop.commit(label="v3", modules={"Shop_Catalog": "1.2.0"})
    shop.faults(web1, {})
    text = crontab(web1)
    mtime = web1.sh("stat -c %Y /srv/run/crontabs/deployer").stdout
    time.sleep(1.1)
    again = shop.deploy()
    assert "[web1] crontab: guarded" not in "\n".join(again.notes)
    assert crontab(web1) == text
    assert web1.sh("stat -c %Y /srv/run/crontabs/deployer").stdout == mtime


@pytest.mark.parametrize("where", ["crontab", "cron.d"])
def test_a_line_a_deploy_cannot_pause_refuses_the_schema_deploy_before_maintenance(
        rig1, where: str) -> None:
    """Which shop's bin/magento a line runs cannot be told (a variable), or it is in
    /etc/cron.d (the deploy user cannot edit it): the schema deploy is refused before
    maintenance, nothing changed (releases, crontab, flags), and `fab doctor` says ERROR."""
    shop = Shop(rig1)
    web1 = rig1.host("web1")
    web1.own_crontabs()
    live = shop.deploy().release
    if where == "crontab":
        set_crontab(web1, "SHOP=/srv/shop/current\n* * * * * php $SHOP/bin/magento cron:run\n")
        expected = ["[web1] crontab line 2: * * * * * php $SHOP/bin/magento cron:run",
                    "which shop's bin/magento it runs cannot be told",
                    "fix: name /srv/shop/current/bin/magento in it, or remove it (`crontab -e`) "
                    "and run `fab cron-install`"]
    else:  # this host's own /etc/cron.d (a bind mount in its namespace)
        web1.sh("mkdir -p /srv/run/cron.d && mount --bind /srv/run/cron.d /etc/cron.d && "
                "echo '* * * * * deployer php /srv/shop/current/bin/magento cron:run' "
                "> /etc/cron.d/magento && cp /etc/cron.d/magento /etc/cron.d/magento.off")
        set_crontab(web1, PLAIN)  # the deploy user's own line could be paused
        expected = ["[web1] /etc/cron.d/magento line 1: * * * * * deployer php "
                    "/srv/shop/current/bin/magento cron:run",
                    "it is in /etc/cron.d/magento, which the deploy user cannot edit",
                    "fix: remove it from /etc/cron.d/magento (as root) and run `fab "
                    "cron-install`"]
    before = crontab(web1)
    logged = len(shop.commands(web1))
    shop.commit(label="v2", modules=SCHEMA)
    result = shop.fab("deploy")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "REFUSED before maintenance: cron:run that this deploy cannot pause" in result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr
    assert "nothing was switched" in result.stderr
    assert "magento.off" not in result.stderr  # Debian's cron skips names with a dot
    assert shop.releases(web1) == [live] and shop.live(web1) == live
    assert crontab(web1) == before
    assert not shop.release_path(web1, live, "var/.maintenance.flag").exists()
    assert not web1.inside("/srv/shop/cron.pause").exists() and not shop.lock_exists(web1)
    assert "setup:upgrade" not in shop.commands(web1)[logged:]

    doctor = shop.fab("doctor")
    row = [ln for ln in doctor.stdout.splitlines() if re.match(r"web1\s+cron\s", ln)]
    assert len(row) == 1 and "ERROR" in row[0], doctor.stdout
    assert "cron:run that a deploy cannot pause" in row[0] and expected[0][7:] in row[0]
    assert doctor.returncode != 0


def flag_expiry(host) -> int:
    return int(host.sh("stat -c %Y /srv/shop/cron.pause").stdout)


def stamp_seconds(stamp: str) -> int:
    return calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))


def test_an_upgrade_whose_outcome_is_unknown_leaves_cron_paused_and_says_so(rig1) -> None:
    """setup:upgrade over its timeout: cron is NOT resumed (the upgrade may still be
    running), the error says so, until when, and how to resume; `fab cron-resume` does."""
    shop = Shop(rig1)
    web1 = rig1.host("web1")
    web1.own_crontabs()
    shop.deploy()
    set_crontab(web1, PLAIN)
    shop.commit(label="v2", modules=SCHEMA)
    shop.faults(web1, {"setup:upgrade": {"sleep": 120.0}})
    result = shop.fab("deploy", timeout=90, timeout_upgrade="2")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "outcome of setup:upgrade on web1 is unknown" in result.stderr
    assert ("cron stays PAUSED on web1 (not resumed: setup:upgrade may still be running). "
            "Once it is over: `fab cron-resume --hosts=web1`; else the pause expires by itself "
            "at ") in result.stderr, result.stderr
    until = re.search(r"expires by itself at (\S+) \(UTC\)", result.stderr)
    assert until and stamp_seconds(until.group(1)) == flag_expiry(web1)
    assert flag_expiry(web1) > time.time() + 300  # DEPLOY_TIMEOUT_UPGRADE + 10 minutes
    assert crontab(web1) == guarded(shop, PLAIN, PLAIN.rstrip("\n"))
    shop.faults(web1, {})
    assert fire_all(shop, web1) == 0  # still paused

    resumed = shop.fab("cron-resume", "--hosts=web1")
    assert resumed.returncode == 0 and "[web1] cron resumed" in resumed.stdout, resumed.stdout
    assert fire_all(shop, web1) == 1


def test_a_second_signal_during_the_upgrade_leaves_cron_paused_and_says_so(rig1) -> None:
    shop = Shop(rig1)
    web1 = rig1.host("web1")
    web1.own_crontabs()
    live = shop.deploy().release
    set_crontab(web1, PLAIN)
    shop.commit(label="v2", modules=SCHEMA)
    shop.faults(web1, {"setup:upgrade": {"sleep": 30.0}})
    code, out = aborted_upgrade(shop, web1)
    assert code == 1, out
    assert "ABORTED by a second signal" in out and "cron stays PAUSED on web1" in out, out
    assert "`fab cron-resume --hosts=web1`" in out and shop.lock_exists(web1)
    assert f"web1: current -> releases/{live}, maintenance ON" in out
    assert web1.inside("/srv/shop/cron.pause").exists()
    assert fire_all(shop, web1) == 0
    assert shop.fab("cron-resume", "--hosts=web1").returncode == 0
    assert fire_all(shop, web1) == 1


def test_a_failed_resume_is_an_error_naming_the_host_and_the_command(rig3) -> None:
    """web2's pause flag cannot be removed (a mount point: EBUSY): the release is live on
    every host, the deploy exits 1 naming web2 and `fab cron-resume --hosts=web2`."""
    shop = Shop(rig3)
    for host in rig3.hosts:
        host.own_crontabs()
    shop.deploy()
    web1, web2 = rig3.host("web1"), rig3.host("web2")
    set_crontab(web2, PLAIN)
    shop.commit(label="v2", modules=SCHEMA)
    shop.faults(web1, {"setup:upgrade": {"sleep": 3}})
    proc = shop.fab_background("deploy")
    try:
        eventually(lambda: running(web1, "setup:upgrade")
                   and web2.inside("/srv/shop/cron.pause").exists(), "paused, upgrading")
        web2.sh("mount --bind /srv/shop/cron.pause /srv/shop/cron.pause")
        out = proc.communicate(timeout=180)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    try:
        assert proc.returncode == 1, out
        assert "THE RELEASE IS LIVE, BUT:" in out, out
        assert re.search(r"cron could not be resumed on web2 \(\[web2\] cron is still paused: "
                         r"/srv/shop/cron\.pause could not be removed \(.*[Bb]usy.*\)\): it stays "
                         r"paused there until \S+ \(UTC\), when the pause expires by itself; end "
                         r"it now with `fab cron-resume --hosts=web2`", out), out
        new = {shop.live(h) for h in rig3.hosts}
        assert len(new) == 1 and len(shop.releases(web1)) == 2  # live everywhere
        assert not shop.release_path(web1, new.pop(), "var/.maintenance.flag").exists()
        for host in (web1, rig3.host("web3")):
            assert not host.inside("/srv/shop/cron.pause").exists(), host.name
        assert fire_all(shop, web2) == 0  # still paused there
    finally:
        web2.sh("umount /srv/shop/cron.pause")
    resumed = shop.fab("cron-resume", "--hosts=web2")
    assert resumed.returncode == 0 and "[web2] cron resumed" in resumed.stdout, resumed.stdout
    assert fire_all(shop, web2) == 1
