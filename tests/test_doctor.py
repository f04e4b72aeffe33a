"""``fab doctor`` on three real hosts (sshd, php-fpm, nginx, cron): a healthy fleet passes
with exit 0 and only ``ok`` rows; each problem planted on one host is flagged on that
host only, with its fix, and the exit is 1 exactly when the problem is an error.

The rig is shared by the module (it takes seconds to start) and every plant is undone;
the "every other host is all ok" assertion of each test would catch one that was not.
Pure parts (the nginx parser, cron, disk) are tested without hosts at the end.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from rig import Rig, WebHost, nginx_php_path
from scenario import CRON_ON_CURRENT, Shop, deployed_with_crontabs

from fabric_magento_deploy.doctor import (
    ERROR,
    OK,
    WARN,
    cron_verdict,
    disk_verdict,
    expand,
    nginx_checks,
    parse,
    running_nginx,
    shop_servers,
    split_dump,
)
from fabric_magento_deploy.settings import Settings

FABFILE = "from fabric_magento_deploy.doctor import doctor  # noqa: F401\n"
CHECKS = ["ssh", "deploy path", "disk", "php cli", "composer", "repository", "shared files",
          "php-fpm", "opcache settings", "nginx root", "nginx php path", "nginx static",
          "cron", "deploy lock", "storefront"]


@dataclass
class Fleet:
    rig: Rig
    shop: Shop
    project: Path


def set_crontab(host: WebHost, text: str) -> None:
    host.sh("crontab -", user="deployer", input=text)


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with deployed_with_crontabs(3) as shop:
        for host in shop.rig.hosts:  # the fix docs/opcache.md gives: healthy means this
            nginx_php_path(host, "$realpath_root")
        project = shop.rig.base / "agency"
        project.mkdir()
        (project / "fabfile.py").write_text(FABFILE)
        yield Fleet(shop.rig, shop, project)


Rows = dict[tuple[str, str], list[tuple[str, str, str]]]


def parse_table(out: str) -> Rows:
    """``{(host, check): [(status, detail, fix)]}`` from the table, by its header's columns."""
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("HOST "))
    cols = [lines[header].index(word) for word in ("CHECK", "STATUS", "DETAIL")]
    rows: Rows = {}
    last: list | None = None
    for line in lines[header + 1:]:
        if line.startswith("doctor: "):
            break
        if line.startswith(" ") and last is not None:
            last[2] = line.strip().removeprefix("fix: ")
            continue
        host, check = line[:cols[0]].strip(), line[cols[0]:cols[1]].strip()
        last = [line[cols[1]:cols[2]].strip(), line[cols[2]:], ""]
        rows.setdefault((host, check), []).append(last)  # type: ignore[arg-type]
    return {key: [tuple(r) for r in value] for key, value in rows.items()}  # type: ignore[misc]


def run_doctor(fleet: Fleet) -> tuple[subprocess.CompletedProcess[str], Rows]:
    result = fleet.shop.fab("doctor", project=fleet.project, opcache="fcgi")
    return result, parse_table(result.stdout)


def test_a_healthy_fleet_passes_with_every_check_ok(fleet: Fleet) -> None:
    result, rows = run_doctor(fleet)
    assert result.returncode == 0, result.stdout + result.stderr
    for host in fleet.rig.hosts:
        assert [c for c in CHECKS if (host.name, c) not in rows] == [], result.stdout
    problems = {k: v for k, v in rows.items() if any(r[0] != OK for r in v)}
    assert problems == {}, result.stdout
    assert "3 host(s), 45 checks: 45 ok, 0 warning(s), 0 error(s)" in result.stdout


# -- planted problems: (host, plant) -> undo --------------------------------------------------

@contextmanager
def no_env_php(fleet: Fleet, host: WebHost) -> Iterator[None]:
    host.sh("mv /srv/shop/shared/app/etc/env.php /srv/shop/shared/app/etc/env.php.away")
    yield
    host.sh("mv /srv/shop/shared/app/etc/env.php.away /srv/shop/shared/app/etc/env.php")


@contextmanager
def document_root(fleet: Fleet, host: WebHost) -> Iterator[None]:
    nginx_php_path(host, "$document_root")
    yield
    nginx_php_path(host, "$realpath_root")


@contextmanager
def validate_timestamps(fleet: Fleet, host: WebHost) -> Iterator[None]:
    ini = host._etc / "php.ini"
    original = ini.read_text()
    ini.write_text(original.replace("opcache.validate_timestamps = 0",
                                    "opcache.validate_timestamps = 1\nopcache.revalidate_freq = 7"))
    host.fpm_reload()
    yield
    ini.write_text(original)
    host.fpm_reload()


@contextmanager
def unwritable_path(fleet: Fleet, host: WebHost) -> Iterator[None]:
    host.sh("chmod 0555 /srv/shop")
    yield
    host.sh("chmod 0755 /srv/shop")


@contextmanager
def no_socket(fleet: Fleet, host: WebHost) -> Iterator[None]:
    host.sh("mv /srv/run/php-fpm.sock /srv/run/php-fpm.sock.away")  # FPM keeps listening
    yield
    host.sh("mv /srv/run/php-fpm.sock.away /srv/run/php-fpm.sock")


@contextmanager
def pinned_cron(fleet: Fleet, host: WebHost) -> Iterator[None]:
    live = fleet.shop.live(host)
    set_crontab(host, f"#~ MAGENTO START abc\n* * * * * /usr/bin/php /srv/shop/releases/{live}"
                      f"/bin/magento cron:run 2>&1 | grep -v \"Ran jobs by schedule\" >> "
                      f"/srv/shop/releases/{live}/var/log/magento.cron.log\n#~ MAGENTO END abc\n")
    yield
    set_crontab(host, CRON_ON_CURRENT)


@contextmanager
def stale_lock(fleet: Fleet, host: WebHost) -> Iterator[None]:
    since = (datetime.now(timezone.utc) - timedelta(hours=3)).isoformat()
    info = {"who": "ci@builder", "pid": 4242, "since": since, "action": "deploy",
            "release": "20261201.100055.601"}
    host.sh("cat > /srv/shop/deploy.lock", user="deployer", input=json.dumps(info) + "\n")
    yield
    host.sh("rm /srv/shop/deploy.lock")


@contextmanager
def operator_maintenance(fleet: Fleet, host: WebHost) -> Iterator[None]:
    host.sh("cd /srv/shop/current && php bin/magento maintenance:enable", user="deployer")
    yield
    host.sh("cd /srv/shop/current && php bin/magento maintenance:disable", user="deployer")


@contextmanager
def storefront_500(fleet: Fleet, host: WebHost) -> Iterator[None]:
    fleet.shop.faults(host, {"storefront": {"status": 500, "message": "planted"}})
    yield
    fleet.shop.faults(host, {})


PLANTED: list[tuple[Callable, str, str, str, str, str, int]] = [
    # plant, host, check, status, in detail, in fix, exit code
    (no_env_php, "web2", "shared files", ERROR, "env.php is missing",
     "copy the shop's env.php to /srv/shop/shared/app/etc/env.php", 1),
    (document_root, "web3", "nginx php path", WARN, "SCRIPT_FILENAME $document_root",
     "fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name", 0),
    (validate_timestamps, "web1", "opcache settings", WARN,
     "validate_timestamps=1, revalidate_freq=7", "opcache.validate_timestamps=0", 0),
    (unwritable_path, "web2", "deploy path", ERROR, "not writable by deployer: /srv/shop",
     "chown -R deployer: /srv/shop", 1),
    (no_socket, "web3", "php-fpm", ERROR, "fcgi /srv/run/php-fpm.sock: no such socket",
     "start PHP-FPM, or set DEPLOY_FPM_SOCKET", 1),
    (pinned_cron, "web1", "cron", ERROR, "cron:run names /srv/shop/releases/",
     "/srv/shop/current/bin/magento cron:run", 1),
    (stale_lock, "web3", "deploy lock", WARN, "held by ci@builder (pid 4242, deploy of "
     "20261201.100055.601)", "fab unlock --hosts=web3", 0),
    (operator_maintenance, "web2", "storefront", WARN, "maintenance is on",
     "deploys go on, without the storefront check on this host", 0),
    (storefront_500, "web1", "storefront", ERROR, "http://shop.test/: HTTP 500",
     "fix the shop", 1),
]


@pytest.mark.parametrize("plant,name,check,status,detail,fix,code", PLANTED,
                         ids=[p[0].__name__ for p in PLANTED])
def test_a_planted_problem_is_flagged_on_its_host_with_the_fix(
        fleet: Fleet, plant: Callable, name: str, check: str, status: str, detail: str,
        fix: str, code: int) -> None:
    with plant(fleet, fleet.rig.host(name)):
        result, rows = run_doctor(fleet)
    out = result.stdout + result.stderr
    assert result.returncode == code, out
    flagged = [r for r in rows[(name, check)] if r[0] == status]
    assert flagged, out
    assert detail in flagged[0][1] and fix in flagged[0][2], out
    others = {k: v for k, v in rows.items() if k[0] != name and any(r[0] != OK for r in v)}
    assert others == {}, out  # the right host only
    if code:
        assert f"{name} {check}" in result.stderr and "check(s) failed" in result.stderr


def test_an_unreachable_repo_is_an_error_and_its_token_is_never_printed(fleet: Fleet) -> None:
    with socket.socket() as sock:  # a port on loopback that nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    repo = f"https://deploy:glpat-SECRET123456@127.0.0.1:{port}/shop.git"
    result = fleet.shop.fab("doctor", project=fleet.project, opcache="fcgi", repo=repo)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "SECRET123456" not in out, out
    rows = parse_table(result.stdout)
    for host in fleet.rig.hosts:
        status, detail, fix = rows[(host.name, "repository")][0]
        assert status == ERROR and f"https://127.0.0.1:{port}/shop.git not reachable" in detail
        assert "git ls-remote" in fix


# -- pure parts, no hosts -----------------------------------------------------------------------

SETTINGS = Settings(deploy_path="/var/www/shop")
SITE = """\
upstream fastcgi_backend { server unix:/run/php/php8.2-fpm.sock; }
server {
    listen 443 ssl;
    server_name shop.example.com;
    set $MAGE_ROOT /var/www/shop/current;
    include /var/www/shop/current/nginx.conf.sample;
}
"""
SAMPLE = r"""
root $MAGE_ROOT/pub;
location /static/ {
    # comment with { a brace
    location ~ ^/static/version\d*/ {
        rewrite ^/static/version\d*/(.*)$ /static/$1 last;
    }
    if (!-f $request_filename) {
        rewrite ^/static/(version\d*/)?(.*)$ /static.php?resource=$2 last;
    }
}
location ~ ^/(index|get|static|errors/report|errors/404|errors/503|health_check)\.php$ {
    fastcgi_pass   fastcgi_backend;
    fastcgi_param  SCRIPT_FILENAME  $document_root$fastcgi_script_name;
    include        fastcgi_params;
}
"""


def servers(site: str, sample: str) -> list:
    files = {"/etc/nginx/sites-enabled/shop": site,
             "/var/www/shop/current/nginx.conf.sample": sample}
    tree = expand(parse(site), files, "/etc/nginx", set())
    return shop_servers(tree, SETTINGS.deploy_path)


def verdicts(site: str = SITE, sample: str = SAMPLE, version: str = "20261201100055601") -> dict:
    return {c.name: c for c in nginx_checks("web1", servers(site, sample), SETTINGS, version)}


def test_nginx_magento_sample_through_mage_root_and_include() -> None:
    found = verdicts()
    assert found["nginx root"].status == OK and "/var/www/shop/current/pub" in found[
        "nginx root"].detail
    assert found["nginx php path"].status == WARN
    assert found["nginx static"].status == OK


def test_nginx_realpath_root_is_ok_and_a_pinned_root_is_an_error() -> None:
    fixed = verdicts(sample=SAMPLE.replace("$document_root$", "$realpath_root$"))
    assert fixed["nginx php path"].status == OK
    pinned = verdicts(site=SITE.replace("/current;", "/releases/20261201.1;"))
    assert pinned["nginx root"].status == ERROR and "pinned" in pinned["nginx root"].detail


def test_nginx_static_rule_must_accept_the_digits_only_version() -> None:
    assert verdicts(version="20261201100055601")["nginx static"].status == OK
    assert verdicts(version="20261201.100055.601")["nginx static"].status == ERROR
    letters = SAMPLE.replace(r"version\d*/(", r"version[a-z]+/(")
    assert verdicts(sample=letters)["nginx static"].status == ERROR
    keeps = SAMPLE.replace(r"rewrite ^/static/version\d*/(.*)$",
                           r"rewrite ^/static/(version\d*/.*)$")
    assert verdicts(sample=keeps)["nginx static"].status == ERROR  # matches, keeps the version
    only_fallback = "\n".join(ln for ln in SAMPLE.splitlines() if "rewrite ^/static/v" not in ln)
    assert verdicts(sample=only_fallback)["nginx static"].status == ERROR
    no_rule = "\n".join(ln for ln in SAMPLE.splitlines() if "rewrite" not in ln)
    assert verdicts(sample=no_rule)["nginx static"].status == WARN


def test_nginx_dash_t_output_is_split_into_files() -> None:
    dump = ("nginx: the configuration file /etc/nginx/nginx.conf syntax is ok\n"
            "# configuration file /etc/nginx/nginx.conf:\nhttp { include sites/*; }\n\n"
            "# configuration file /etc/nginx/sites/shop:\n" + SITE)
    files = split_dump(dump, "# configuration file ")
    assert list(files) == ["/etc/nginx/nginx.conf", "/etc/nginx/sites/shop"]
    files["/var/www/shop/current/nginx.conf.sample"] = SAMPLE
    tree = expand(parse(files["/etc/nginx/nginx.conf"]), files, "/etc/nginx", set())
    assert [s.roots for s in shop_servers(tree, "/var/www/shop")] == [["/var/www/shop/current/pub"]]


def test_nginx_servers_elsewhere_are_not_the_shop() -> None:
    assert servers(SITE.replace("/var/www/shop/current", "/var/www/html"), SAMPLE) == []


def test_running_nginx_keeps_masters_of_this_mount_namespace() -> None:
    listing = ("me mnt:[1]\n"
               "M 10 nginx: master process /usr/sbin/nginx -c /a/nginx.conf \n"
               "M 20 nginx: master process /usr/sbin/nginx -c /b/nginx.conf \n"
               "M 30 nginx: master process /usr/sbin/nginx -g daemon on; \n"
               "W 10 mnt:[1]\nW 20 mnt:[2]\nW 30 -\n")
    assert running_nginx(listing) == ["/a/nginx.conf", "/etc/nginx/nginx.conf"]


def test_cron_lines() -> None:
    assert cron_verdict(1, "no crontab for deployer", SETTINGS, "deployer").status == WARN
    assert cron_verdict(127, "sh: crontab: command not found", SETTINGS, "d").status == "skipped"
    good = "* * * * * php /var/www/shop/current/bin/magento cron:run\n"
    assert cron_verdict(0, good, SETTINGS, "d").status == OK
    pinned = cron_verdict(0, good.replace("current", "releases/7"), SETTINGS, "d")
    assert pinned.status == ERROR and "/var/www/shop/releases/7" in pinned.detail
    assert cron_verdict(0, "# " + good, SETTINGS, "d").status == WARN  # commented out
    assert cron_verdict(0, good.replace("/var/www/shop", "/opt/x"), SETTINGS, "d").status == WARN


def test_disk_room_for_releases() -> None:
    assert disk_verdict(900, 1000)[0] == ERROR
    assert disk_verdict(1500, 1000)[0] == WARN
    assert disk_verdict(2500, 1000)[0] == OK
    assert disk_verdict(10, None)[0] == OK
