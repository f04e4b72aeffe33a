"""``fab doctor`` on three real hosts (sshd, php-fpm, nginx, cron): a healthy fleet passes
with exit 0 and only ``ok`` rows; each problem planted on one host is flagged on that
host only, with its fix, and the exit is 1 exactly when the problem is an error.

The rig is shared by the module (it takes seconds to start) and every plant is undone;
the "every other host is all ok" assertion of each test would catch one that was not.
Pure parts (the nginx parser, cron, disk) are tested without hosts at the end.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from rig import NGINX, Rig, WebHost, make_rig, nginx_php_path
from scenario import CRON_ON_CURRENT, Shop, deployed_with_crontabs

from fabric_magento_deploy.doctor import (
    ERROR,
    OK,
    WARN,
    HostNginx,
    NginxConfig,
    cron_verdict,
    disk_verdict,
    expand,
    listen_address,
    listen_addresses,
    nginx_checks,
    parse,
    shop_servers,
    split_dump,
)
from fabric_magento_deploy.procs import (
    Addresses,
    is_local,
    nginx_conf,
    nginx_masters,
    parse_addresses,
    parse_ps,
    ps_command,
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


# -- other web servers on the same machine -----------------------------------------------------

@contextmanager
def another_host() -> Iterator[WebHost]:
    """A host of another rig, up while the fleet's are: its own mount namespace and
    address, an nginx serving /srv/shop there with Magento's ``$document_root`` (the
    fleet's use ``$realpath_root``), its workers running as www-data, so the deploy user
    may not ``readlink /proc/PID/ns/mnt`` of any of its processes."""
    with make_rig(1) as other:
        other.start_web(nginx_user="www-data")
        master = other.hosts[0].daemon_pid("nginx")
        users = subprocess.run(["ps", "-o", "user=", "--ppid", str(master)],
                               capture_output=True, text=True, check=True).stdout.split()
        assert users and set(users) == {"www-data"}, users
        yield other.hosts[0]


def nginx_details(rows: Rows, host: WebHost) -> str:
    return "\n".join(r[1] for (name, check), found in rows.items()
                     if name == host.name and check.startswith("nginx") for r in found)


def test_the_nginx_of_another_host_on_the_machine_is_not_reported(fleet: Fleet) -> None:
    with another_host() as other:
        result, rows = run_doctor(fleet)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    problems = {k: v for k, v in rows.items() if any(r[0] != OK for r in v)}
    assert problems == {}, out  # not its $document_root
    for host in fleet.rig.hosts:
        root = rows[(host.name, "nginx root")]
        assert len(root) == 1 and f"{host.name} ({host.address}:{host.http_port})" in root[0][1]
        assert other.address not in nginx_details(rows, host), out


@contextmanager
def second_nginx(host: WebHost, address: str, port: int) -> Iterator[str]:
    """A second nginx master inside ``host`` (its mount namespace), workers as www-data,
    listening on ``address:port``, serving the shop from a root pinned to a release (an
    error if checked). Yields its config file; stopped by its pid afterwards."""
    conf, pidfile = "/srv/run/second-nginx.conf", "/srv/run/second-nginx.pid"
    host.inside(conf).write_text(f"""\
user www-data;
pid {pidfile};
events {{ worker_connections 16; }}
http {{
    access_log off;
    server {{
        listen {address}:{port};
        server_name second.test;
        root /srv/shop/releases/20261201.1/pub;
    }}
}}
""")
    host.sh(f"{NGINX} -e /srv/log/second-nginx.log -c {conf}")  # forks, writes the pid file
    deadline = time.monotonic() + 10
    while not host.inside(pidfile).is_file() or not host.inside(pidfile).read_text().strip():
        assert time.monotonic() < deadline, "the second nginx did not start"
        time.sleep(0.01)
    pid = int(host.inside(pidfile).read_text())
    try:
        yield conf
    finally:
        host.sh(f"kill {pid}; while kill -0 {pid} 2>/dev/null; do sleep 0.05; done;"
                f" rm -f {conf}")


def free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def test_an_nginx_of_the_host_listening_elsewhere_does_not_serve_it(fleet: Fleet) -> None:
    web2 = fleet.rig.host("web2")
    elsewhere = web2.address.rsplit(".", 1)[0] + ".200"  # not web2's, not a wildcard
    with second_nginx(web2, elsewhere, free_port(elsewhere)) as conf:
        result, rows = run_doctor(fleet)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert {k: v for k, v in rows.items() if any(r[0] != OK for r in v)} == {}, out
    assert conf not in nginx_details(rows, web2), out


def test_every_nginx_serving_the_host_is_checked_naming_its_config(fleet: Fleet) -> None:
    web3 = fleet.rig.host("web3")
    with second_nginx(web3, web3.address, free_port(web3.address)) as conf:
        result, rows = run_doctor(fleet)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    root = {r[1].split(": ")[0]: r for r in rows[(web3.name, "nginx root")]}  # by file
    assert len(root) == 2 and root[conf][0] == ERROR, out
    assert root[conf][1].startswith(f"{conf}: root /srv/shop/releases/20261201.1/pub"), out
    (main,) = (r for name, r in root.items() if name != conf)
    assert main[0] == OK and main[1].startswith("/var/tmp/"), out
    assert f"{web3.name} ({web3.address}:{web3.http_port})" in main[1], out
    others = {k: v for k, v in rows.items() if k[0] != web3.name and any(r[0] != OK for r in v)}
    assert others == {}, out


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


def test_nginx_masters_of_this_mount_namespace_by_mountinfo() -> None:
    listing = parse_ps(
        "me 22 23 24\n"
        "P 10\t1\troot\t22\tnginx\tnginx: master process /usr/sbin/nginx -c /a/nginx.conf \n"
        "P 11\t10\twww-data\t22\tnginx\tnginx: worker process \n"
        "P 20\t1\troot\t68\tnginx\tnginx: master process /usr/sbin/nginx -c /b/nginx.conf \n"
        "P 21\t20\twww-data\t68\tnginx\tnginx: worker process \n"
        "P 30\t1\troot\t-\tnginx\tnginx: master process /usr/sbin/nginx -g daemon on; \n"
        "P 40\t1\troot\t-\tnginx\tnginx: master process nginx -p /x/ -c conf/n.conf \n"
        "P 41\t40\tdeployer\t90\tnginx\tnginx: worker process \n"
        "S 10.0.0.9 5555 10.0.0.5 22\n")
    # 30: nothing readable says where it runs, kept; 40: its worker is elsewhere
    assert nginx_masters(listing) == (["/a/nginx.conf", "/etc/nginx/nginx.conf"],
                                      ["/b/nginx.conf", "/x/conf/n.conf"])
    assert nginx_conf("nginx: master process nginx -c rel.conf") == "/etc/nginx/rel.conf"
    with pytest.raises(ValueError):
        ps_command("nginx; rm -rf /")


def test_the_ps_command_reads_namespaces_from_mountinfo_here() -> None:
    """Run against this machine: this process is found, in our own namespace."""
    comm = Path("/proc/self/comm").read_text().strip()[:3] + "*"  # python, pytest...
    out = subprocess.run(["sh", "-c", ps_command(comm)], capture_output=True, text=True,
                         check=True).stdout
    listing = parse_ps(out)
    me = next(p for p in listing.procs if p.pid == str(os.getpid()))
    assert listing.mounts and listing.here(me) is True


def test_listen_addresses_and_whether_they_are_this_hosts() -> None:
    assert [listen_address(a) for a in (
        "80", "*:80", "10.0.0.5:443", "10.0.0.5", "[::]:80", "[::FFFF:10.0.0.6]:80",
        "unix:/run/n.sock", "shop.example.com:80", "localhost")] == [
        "*", "*", "10.0.0.5", "10.0.0.5", "::", "10.0.0.6", "unix:/run/n.sock",
        "shop.example.com", "localhost"]
    tree = parse("http { upstream b { server 10.0.0.7:9000; }\n"
                 "server { listen 10.0.0.5:80; listen [::1]:80; }\n"
                 "server { server_name default; } }")
    assert listen_addresses(tree) == ["10.0.0.5", "::1", "*"]
    found = parse_addresses("S 10.0.0.9 5555 10.0.0.5 22\nA 192.168.1.4\nA fd00::2/64\n")
    assert found.arrived_at == "10.0.0.5"
    assert found.local == {"10.0.0.5", "192.168.1.4", "fd00::2", "127.0.0.1", "::1"}
    assert [is_local(a, found) for a in ("*", "::", "10.0.0.5", "192.168.1.4", "127.0.0.1",
                                         "unix:/x", "localhost")] == [True] * 7
    assert is_local("10.0.0.6", found) is False and is_local("127.5.5.1", found) is False
    assert is_local("shop.example.com", found) is None  # cannot tell: kept
    assert parse_addresses("S \n") == Addresses(frozenset({"127.0.0.1", "::1"}))


def test_when_no_nginx_serves_the_host_doctor_says_why() -> None:
    left = HostNginx(left_out=["/b/nginx.conf listens on 10.0.0.6, none an address of this "
                               "host (10.0.0.5)"])
    assert left.why_none("/srv/shop") == (
        "no nginx of this host found; not this host's: /b/nginx.conf listens on 10.0.0.6, "
        "none an address of this host (10.0.0.5)")
    read = HostNginx([NginxConfig("/a/nginx.conf", [], ["*"])], {"/a/sites/x"})
    assert read.why_none("/srv/shop") == ("no server block in /a/nginx.conf has its root "
                                          "under /srv/shop (not readable: /a/sites/x)")


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
