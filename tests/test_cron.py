"""tasks/cron.py on real hosts: our crontab block, Magento's pinned block replaced, the pause
(which guards every other line of this shop's cron:run first, and refuses a line it cannot
pause); which crontab lines are this shop's (pure).

Each host gets its own crontab spool (a bind mount inside its mount namespace), as on a
real cluster where every machine has its own ``/var/spool/cron``; the hosts share the
deploy user, so without it they would share one crontab. No cron daemon runs: the test
runs the crontab line itself (``sh -c`` as the deploy user, like cron does), so "no new
cron:run while paused" is checked at the exact moment the test chooses.
"""

from __future__ import annotations

import shlex

import pytest
from scenario import Shop, eventually, running

from fabric_magento_deploy import cron
from fabric_magento_deploy.settings import Settings

pytestmark = pytest.mark.real_hosts()
SPOOL = "/var/spool/cron/crontabs"


def private_spool(shop: Shop) -> None:
    for host in shop.rig.hosts:
        host.sh("mkdir -p /srv/cronspool && chown root:crontab /srv/cronspool && "
                f"chmod 1730 /srv/cronspool && mount --bind /srv/cronspool {SPOOL}")


def crontab(shop: Shop, host) -> str:
    proc = host.sh("crontab -l", user=shop.rig.user, check=False)
    return proc.stdout if proc.returncode == 0 else ""


def our_command(shop: Shop, host) -> str:
    """The command of our crontab line (the schedule's five fields removed)."""
    lines = [ln for ln in crontab(shop, host).splitlines() if "cron:run" in ln]
    assert len(lines) == 1, lines
    return lines[0].split(None, 5)[5]


def fire(shop: Shop, host, *, background: bool = False) -> None:
    """What cron does each minute: ``/bin/sh -c <command>`` as the user, in its home."""
    command = f"sh -c {shlex.quote(our_command(shop, host))}"
    if background:
        command = f"setsid {command} </dev/null >/dev/null 2>&1 &"
    host.sh(command, user=shop.rig.user, check=False)  # grep -v exits 1 on no output


def cron_runs(shop: Shop, host) -> list[dict]:
    return [e for e in shop.log(host) if e["cmd"] == "cron:run"]


@pytest.fixture
def deployed(rig1) -> Shop:
    shop = Shop(rig1)
    private_spool(shop)
    shop.deploy()
    return shop


def test_install_twice_one_block_and_magentos_block_replaced(deployed: Shop) -> None:
    shop, host = deployed, deployed.rig.hosts[0]
    [h] = shop.hosts()
    settings = shop.settings()
    host.sh("(echo 'MAILTO=ops@example.com'; echo '0 3 * * * /usr/local/bin/backup') | crontab -",
            user=shop.rig.user)
    installed = host.sh("cd /srv/shop/current && php bin/magento cron:install",
                        user=shop.rig.user)
    assert "Crontab has been generated and saved" in installed.stdout
    release = f"/srv/shop/releases/{shop.live(host)}"
    assert f"{release}/bin/magento cron:run" in crontab(shop, host)  # pinned, not current

    first = cron.install(h, settings)
    assert first.changed
    assert first.notes == (f"replaced Magento's cron:install block for {release} (it pins "
                           "that directory; ours runs current)",)
    text = crontab(shop, host)
    assert text.startswith("MAILTO=ops@example.com\n0 3 * * * /usr/local/bin/backup\n")
    assert "#~ MAGENTO" not in text and release not in text
    assert text.count(cron.begin_marker(settings)) == 1
    assert "/srv/shop/current/bin/magento cron:run" in our_command(shop, host)

    second = cron.install(h, settings)
    assert (second.changed, second.notes) == (False, ())
    assert crontab(shop, host) == text

    fire(shop, host)  # the line works: cron:run ran from the live release
    assert [e["bp"] for e in cron_runs(shop, host)] == [release]


def test_pause_holds_new_runs_lets_the_running_one_finish_then_resume(deployed: Shop) -> None:
    shop, host = deployed, deployed.rig.hosts[0]
    [h] = shop.hosts()
    settings = shop.settings()
    cron.install(h, settings)
    shop.faults(host, {"cron:run": {"sleep": 3}})
    fire(shop, host, background=True)
    held = eventually(lambda: running(host, "cron:run"), "cron:run running")

    report = cron.pause(h, settings, wait_seconds=60)
    assert report.still_running == []  # it finished while pause waited
    assert [e["pid"] for e in cron_runs(shop, host)] == held
    assert "paused by a deploy" in cron.pause_state(h, settings)

    shop.faults(host, {})
    fire(shop, host)
    fire(shop, host)
    assert len(cron_runs(shop, host)) == 1  # paused: no new cron:run started

    assert cron.resume(h, settings).startswith(f"[{h.name}] cron resumed (paused by a deploy")
    fire(shop, host)
    assert len(cron_runs(shop, host)) == 2
    assert cron.resume(h, settings) == f"[{h.name}] cron was not paused"  # safe twice


def test_pause_names_a_run_still_going_and_does_not_kill_it(deployed: Shop) -> None:
    shop, host = deployed, deployed.rig.hosts[0]
    [h] = shop.hosts()
    settings = shop.settings()
    cron.install(h, settings)
    shop.faults(host, {"cron:run": {"sleep": 600}})
    fire(shop, host, background=True)
    php = eventually(lambda: running(host, "cron:run"), "cron:run running")
    try:
        report = cron.pause(h, settings, wait_seconds=0.5)
        assert set(php) <= {p.pid for p in report.still_running}
        assert running(host, "cron:run") == php  # still alive
        assert any("not killed" in line for line in report.lines())
    finally:
        for pid in php:
            host.sh(f"kill -KILL {pid}", check=False)
        cron.resume(h, settings)


def test_a_pause_left_behind_expires_by_itself(deployed: Shop) -> None:
    """A deploy killed before its ``finally``: the flag stays, cron comes back at its TTL."""
    shop, host = deployed, deployed.rig.hosts[0]
    [h] = shop.hosts()
    settings = shop.settings()
    cron.install(h, settings)
    cron.pause(h, settings, wait_seconds=0, ttl_seconds=3600)
    fire(shop, host)
    assert cron_runs(shop, host) == []
    assert host.inside("/srv/shop/cron.pause").exists()  # visible meanwhile
    assert cron.pause_state(h, settings) != ""
    # The flag's mtime is its expiry: move it into the past instead of waiting an hour.
    host.sh("touch -d '1 minute ago' /srv/shop/cron.pause", user=shop.rig.user)
    fire(shop, host)
    assert cron_runs(shop, host) != [], "cron:run after the pause expired"
    assert cron.pause_state(h, settings) == ""


def test_the_cron_tasks_from_the_command_line(deployed: Shop) -> None:
    """`fab cron-install` and `fab cron-resume` as an operator runs them, and a DEPLOY_PHP
    that cannot go into a crontab line refused by name before the crontab is touched."""
    shop, host = deployed, deployed.rig.hosts[0]
    first = shop.fab("cron-install")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "[web1] crontab: our cron line installed" in first.stdout
    text = crontab(shop, host)
    again = shop.fab("cron-install")
    assert "[web1] crontab: already up to date" in again.stdout and crontab(shop, host) == text

    [h] = shop.hosts()
    cron.pause(h, shop.settings(), wait_seconds=0, by="a deploy that was killed")
    noted = shop.fab("cron-install")
    assert "NOTE cron is paused" in noted.stdout and "a deploy that was killed" in noted.stdout
    resumed = shop.fab("cron-resume")
    assert resumed.returncode == 0 and "[web1] cron resumed" in resumed.stdout, resumed.stdout
    assert "[web1] cron was not paused" in shop.fab("cron-resume").stdout

    refused = shop.fab("cron-install", php="php -d date.timezone=%Z")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "DEPLOY_PHP" in refused.stderr and "'%'" in refused.stderr
    assert crontab(shop, host) == text


# --------------------------------------------------------------------------- every line


SHOP = Settings(deploy_path="/srv/shop")
GUARD = cron.guard(SHOP)
OURS = cron.cron_line(SHOP, "/usr/bin/php")


@pytest.mark.parametrize(("crontab_text", "expected"), [
    # what each line of a crontab is to this shop: (dirs, guarded, problem?) or skipped
    ("* * * * * php /srv/shop/current/bin/magento cron:run", (("/srv/shop/current",), False, "")),
    ("* * * * * /usr/bin/php /srv/shop/releases/7/bin/magento cron:run 2>&1 | grep -v x",
     (("/srv/shop/releases/7",), False, "")),
    ("*/5 * * * * cd /srv/shop/current && php bin/magento cron:run; echo done",
     (("/srv/shop/current",), False, "")),
    ("HOME=/srv/shop/current\n* * * * * php bin/magento cron:run", (("/srv/shop/current",),
                                                                   False, "")),
    ("* * * * * cd ~/../../srv/shop/current && php ./bin/magento cron:run",
     (("/srv/shop/current",), False, "")),
    ("* * * * * sh -c 'cd /srv/shop/current && php bin/magento cron:run'",
     (("/srv/shop/current",), False, "")),
    ("@hourly php '/srv/shop/current/bin/magento' 'cron:run' %stdin; rm -rf /",
     (("/srv/shop/current",), False, "")),
    ("* * * * * php /var/www/shop/bin/magento cron:run", (("/var/www/shop",), False, "")),
    (OURS, (("/srv/shop/current",), True, "")),
    (f"* * * * * {GUARD}php /srv/shop/current/bin/magento cron:run; x", (("/srv/shop/current",),
                                                                         True, "")),
    # the documented `test || command` form guards only one command
    (f"* * * * * {cron.paused_test(SHOP)} || php /srv/shop/current/bin/magento cron:run; x",
     (("/srv/shop/current",), False, "")),
    ("* * * * * php $SHOP/bin/magento cron:run", ((), False, "cannot be told")),
    ("* * * * * php bin/magento cron:run", ((), False, "")),  # in HOME: another shop
    ("* * * * * php /srv/shop/releases/*/bin/magento cron:run", ((), False, "cannot be told")),
    ("* * * * * php \"/srv/shop/current/bin/magento cron:run", ((), False, "cannot be told")),
    ("SHELL=/bin/csh\n* * * * * php /srv/shop/current/bin/magento cron:run",
     (("/srv/shop/current",), False, "SHELL=/bin/csh")),
    ("SHELL=/bin/bash\n* * * * * php /srv/shop/current/bin/magento cron:run",
     (("/srv/shop/current",), False, "")),
    ("* * * * * php /srv/shop2/current/bin/magento cron:run", None),
    ("* * * * * cd /srv/other && php bin/magento cron:run", None),
    ("* * * * * n98-magerun2 --root-dir=/srv/shop/current sys:cron:run indexer", None),
    ("# * * * * * php /srv/shop/current/bin/magento cron:run", None),
    ("0 3 * * * /srv/shop/current/bin/magento indexer:reindex", None),
])
def test_which_crontab_lines_are_this_shops(crontab_text: str, expected: tuple | None) -> None:
    found = cron.classify(crontab_text + "\n", SHOP, home="/home/deployer", real="/srv/shop",
                          resolved={"/var/www/shop": "/srv/shop/releases/9"})
    if expected is None:
        assert found == []
        return
    dirs, is_guarded, problem = expected
    if crontab_text == "* * * * * php bin/magento cron:run":  # /home/deployer: not ours
        assert found == []
        return
    [line] = found
    assert line.text == crontab_text.split("\n")[-1] and line.where == "crontab"
    assert (line.dirs, line.guarded) == (dirs, is_guarded)
    assert (problem in line.problem) if problem else line.problem == "", line.problem


def test_system_crontab_lines_of_this_shop_cannot_be_paused_unless_guarded() -> None:
    text = ("SHELL=/bin/sh\n"
            "* * * * * www-data php /srv/shop/current/bin/magento cron:run\n"
            f"* * * * * www-data {GUARD}php /srv/shop/current/bin/magento cron:run\n"
            "* * * * * www-data php /srv/other/current/bin/magento cron:run\n"
            "* * * * * www-data php bin/magento cron:run\n")
    found = cron.classify(text, SHOP, home="/home/deployer", where="/etc/cron.d/magento")
    assert [(ln.number, ln.guarded, bool(ln.problem)) for ln in found] == [
        (2, False, True), (3, True, False), (5, False, True)]
    assert "which the deploy user cannot edit" in found[0].problem
    assert "cannot be told" in found[2].problem  # no HOME known for www-data: no guess
    assert found[0].fix.startswith("remove it from /etc/cron.d/magento (as root) and run "
                                   "`fab cron-install`")


def test_the_guard_changes_only_this_shops_lines_byte_for_byte() -> None:
    text = ("MAILTO=\"\"\r\n"  # a CR stays where it is
            "* * * * * php /srv/shop/current/bin/magento cron:run %a%b\\%c\n"
            "\n# comment\n"
            "  */2  *  *  *  *   php /srv/other/current/bin/magento cron:run\n"
            "@daily   cd /srv/shop/current && bin/magento cron:run")  # no final newline
    lines = cron.classify(text, SHOP, home="/home/deployer")
    assert [ln.number for ln in lines] == [2, 6]
    assert cron.guarded_crontab(text, lines, SHOP) == (
        "MAILTO=\"\"\r\n"
        f"* * * * * {GUARD}php /srv/shop/current/bin/magento cron:run %a%b\\%c\n"
        "\n# comment\n"
        "  */2  *  *  *  *   php /srv/other/current/bin/magento cron:run\n"
        f"@daily   {GUARD}cd /srv/shop/current && bin/magento cron:run\n")
    again = cron.classify(cron.guarded_crontab(text, lines, SHOP), SHOP, home="/home/deployer")
    assert [ln.guarded for ln in again] == [True, True]


def test_pause_guards_this_shops_lines_and_install_says_what_it_cannot_pause(
        deployed: Shop) -> None:
    """On a host: a plain line on current and one through a symlink get the guard (the
    other shop's line is left byte for byte); while paused none starts cron:run; the guard
    stays after resume and changes nothing then. `cron.install` guards too and names a
    line it cannot pause; `pause` refuses it before touching anything."""
    shop, host = deployed, deployed.rig.hosts[0]
    [h] = shop.hosts()
    settings = shop.settings()
    host.sh("ln -sfn /srv/shop/current /srv/www && chown -h deployer: /srv/www")
    plain = "* * * * * php /srv/shop/current/bin/magento cron:run >/dev/null 2>&1"
    linked = "*/1 * * * * php /srv/www/bin/magento cron:run >/dev/null 2>&1"
    other = "* * * * * php /srv/other/current/bin/magento cron:run >/dev/null 2>&1"
    text = f"MAILTO=\"\"\n{plain}\n{other}\n{linked}\n"
    host.sh("crontab -", user=shop.rig.user, input=text)

    report = cron.pause(h, settings, wait_seconds=0)
    head = len("* * * * * ")
    guarded = (f"MAILTO=\"\"\n{plain[:head]}{cron.guard(settings)}{plain[head:]}\n{other}\n"
               f"{linked[:head + 2]}{cron.guard(settings)}{linked[head + 2:]}\n")
    assert crontab(shop, host) == guarded
    assert report.guarded == [plain, linked] and report.covered == 2
    assert any("crontab: guarded" in line for line in report.lines())

    def run_ours() -> int:
        before = len(cron_runs(shop, host))
        for line in crontab(shop, host).splitlines()[1:]:
            if "/srv/other" not in line:
                host.sh(f"sh -c {shlex.quote(line.split(None, 5)[5])}", user=shop.rig.user,
                        check=False)
        return len(cron_runs(shop, host)) - before

    assert run_ours() == 0
    cron.resume(h, settings)
    assert crontab(shop, host) == guarded and run_ours() == 2
    again = cron.pause(h, settings, wait_seconds=0)  # nothing left to guard: not rewritten
    assert again.guarded == [] and crontab(shop, host) == guarded
    cron.resume(h, settings)

    host.sh("crontab -", user=shop.rig.user,
            input=text + "SHOP=/srv/shop/current\n* * * * * php $SHOP/bin/magento cron:run\n")
    installed = cron.install(h, settings)
    assert any(n.startswith("a deploy cannot pause crontab line 6: * * * * * php $SHOP/bin/"
                            "magento cron:run: it runs cron:run, but which shop's") for n in
               installed.notes), installed.notes
    assert any(n.startswith("crontab line 2: " + plain) and "guarded" in n
               for n in installed.notes), installed.notes
    before = crontab(shop, host)
    assert f"\n{other}\n" in before
    with pytest.raises(cron.CronError, match=r"cron:run that a deploy cannot pause; cron is NOT "
                                             r"paused:\n\[web1\] crontab line 6"):
        cron.pause(h, settings, wait_seconds=0)
    assert crontab(shop, host) == before and cron.pause_state(h, settings) == ""
