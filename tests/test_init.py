"""``fab init``: the ``.env`` of hosts that already run a shop, found read-only.

On two real hosts (sshd, php-fpm, nginx, a crontab each) with a deployed shop, ``fab
--hosts=web1,web2 init --path=/srv/shop`` from an empty project writes a ``.env`` with the
path, the hosts and the FPM socket nginx passes PHP to (not in any place the deploy would
look by itself); with only that file ``fab doctor`` and ``fab deploy`` pass. An existing
``.env`` is never overwritten, and nothing on the hosts changes. The parsers and the
rendering are tested without hosts at the end.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from dotenv import dotenv_values
from rig import FPM_SOCKET, Rig, WebHost, make_rig
from scenario import FAB, Shop, deployed_with_crontabs

from fabric_magento_deploy.doctor import parse, shop_servers
from fabric_magento_deploy.init import (
    CAPISTRANO,
    CURRENT_DIR,
    DEPLOYER,
    EMPTY,
    FPM_PS,
    MISSING,
    NO_LIVE,
    OURS,
    PLAIN,
    RELEASES,
    Findings,
    FpmMaster,
    HostFindings,
    Repo,
    RootFacts,
    SharedListing,
    ShopServer,
    WebFacts,
    classify_cron,
    decide_php,
    differences,
    env_value,
    fastcgi_targets,
    fpm_socket,
    parse_composer,
    parse_fpm_config,
    parse_fpm_processes,
    parse_git,
    parse_layout,
    parse_php,
    parse_root,
    parse_shared,
    parse_version,
    render_env,
    shared_settings,
    shop_web_servers,
    summary,
    undecided,
)
from fabric_magento_deploy.settings import load

FABFILE = "from fabric_magento_deploy import ns  # noqa: F401\n"


@dataclass
class Fleet:
    rig: Rig
    shop: Shop


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with deployed_with_crontabs(2) as shop:
        yield Fleet(shop.rig, shop)


def project(fleet: Fleet, name: str) -> Path:
    """An agency's project: a fabfile importing the library, no .env."""
    folder = fleet.rig.base / name
    folder.mkdir()
    (folder / "fabfile.py").write_text(FABFILE)
    return folder


def fab(fleet: Fleet, folder: Path, *args: str,
        **settings: str) -> subprocess.CompletedProcess[str]:
    """``fab`` as a user runs it in ``folder``: no DEPLOY_* in the environment except
    ``settings``, so what counts is the .env there."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOY_")}
    env.pop("SSH_AUTH_SOCK", None)
    env.update(settings)
    return subprocess.run([FAB, "-S", str(fleet.rig.ssh_config), *args], env=env, cwd=folder,
                          text=True, capture_output=True, timeout=300)


def flat(text: str) -> str:
    """The .env's comments as one text: phrases wrapped across lines are found."""
    return re.sub(r"\n#\s*", " ", text)


def host_state(host: WebHost) -> tuple[str, str]:
    """Every entry under /srv/shop (type, mode, owner, size, mtime, link) and the crontab."""
    tree = host.sh("find /srv/shop -printf '%p %y %m %u %s %T@ %l\\n' | sort").stdout
    tab = host.sh("crontab -l", user="deployer", check=False).stdout
    return tree, tab


def test_init_writes_the_env_with_which_doctor_and_deploy_pass(fleet: Fleet) -> None:
    folder = project(fleet, "agency")
    result = fab(fleet, folder, "--hosts=web1,web2", "init", "--path=/srv/shop")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    env_file = folder / ".env"
    text = env_file.read_text()
    values = dotenv_values(env_file)
    assert values["DEPLOY_PATH"] == "/srv/shop", text
    assert values["DEPLOY_HOSTS"] == "web1,web2", text
    # The rig's socket is in none of the deploy's usual places: nginx's fastcgi_pass said so.
    assert values["DEPLOY_FPM_SOCKET"] == FPM_SOCKET, text
    prose = flat(text)
    assert "nginx passes the shop's PHP there" in prose and "pool www, runs as deployer" in prose
    assert values["DEPLOY_REPO"] == str(fleet.shop.repo), text  # the mirror's origin
    assert values["DEPLOY_BRANCH"] == "main", text
    assert "DEPLOY_PHP" not in values and "DEPLOY_SHARED_DIRS" not in values, text  # defaults
    assert "release layout, made by fabric-magento-deploy" in prose
    assert "blue/green is possible" in prose and "Magento 2.4.7" in prose
    assert "/srv/shop/current/bin/magento cron:run" in text and "web1, on current:" in prose
    # The base URL and where each host's nginx listens for it: comments, no TODO.
    assert re.search(r"base URL: http\S+ \(bin/magento config:show", prose), text
    assert "# TODO " not in text
    for host in fleet.rig.hosts:
        assert re.search(rf"{host.name}: \S+:{host.http_port} -> {host.address}\b", prose), text
        assert f"[{host.name}] PHP-FPM: {FPM_SOCKET}" in result.stdout, out
    assert f"wrote {env_file}" in result.stdout, out

    doctor_run = fab(fleet, folder, "doctor")
    assert doctor_run.returncode == 0, doctor_run.stdout + doctor_run.stderr
    assert "2 host(s)" in doctor_run.stdout and f"fcgi {FPM_SOCKET}" in doctor_run.stdout

    before = {h.name: fleet.shop.live(h) for h in fleet.rig.hosts}
    sha = fleet.shop.commit(label="v2")
    deployed = fab(fleet, folder, "deploy")  # its health check finds the shop by itself
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    for host in fleet.rig.hosts:
        live = fleet.shop.live(host)
        assert live and live != before[host.name]
        record = host.inside(f"/srv/shop/history/{live}.json").read_text()
        assert sha in record


@contextmanager
def another_host() -> Iterator[WebHost]:
    """A host of another rig, up while the fleet's are: its own mount namespace and
    address, nginx serving /srv/shop with its workers as www-data and PHP-FPM whose
    workers changed user: the deploy user may not ``readlink /proc/PID/ns/mnt`` of any
    of its processes."""
    with make_rig(1) as other:
        other.start_web(nginx_user="www-data")
        yield other.hosts[0]


def test_init_sees_only_the_hosts_own_nginx_and_php_fpm(fleet: Fleet, tmp_path: Path) -> None:
    web1 = fleet.rig.host("web1")
    with another_host() as other:
        result = fab(fleet, project(fleet, "side-by-side"), "--hosts=web1,web2", "init",
                     "--path=/srv/shop", f"--output={tmp_path / 'found.env'}")
        listing = subprocess.run(fleet.rig.ssh_argv("web1", FPM_PS), capture_output=True,
                                 text=True, check=True, timeout=60).stdout
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    for host in fleet.rig.hosts:
        nginx = [ln for ln in result.stdout.splitlines() if ln.startswith(f"[{host.name}] nginx:")]
        assert len(nginx) == 1 and f"({host.address}:{host.http_port})" in nginx[0], out
    assert other.address not in out, out
    assert [m.conf for m in parse_fpm_processes(listing)] == [str(web1._etc / "php-fpm.conf")]


def test_an_existing_env_is_never_overwritten(fleet: Fleet) -> None:
    folder = project(fleet, "has-env")
    env_file = folder / ".env"
    env_file.write_bytes(b"DEPLOY_PATH=/srv/shop\n# mine, hands off\n")
    original = env_file.read_bytes()
    for args in ([], ["--output=.env"]):
        result = fab(fleet, folder, "--hosts=web1,web2", "init", "--path=/srv/shop", *args)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "never overwrites" in result.stderr and "--output" in result.stderr
        assert result.stdout == ""  # refused before any host was asked
        assert env_file.read_bytes() == original
    assert sorted(p.name for p in folder.iterdir()) == [".env", "fabfile.py"]


def test_init_changes_nothing_on_the_hosts(fleet: Fleet, tmp_path: Path) -> None:
    before = {h.name: host_state(h) for h in fleet.rig.hosts}
    output = tmp_path / "found.env"
    result = fab(fleet, project(fleet, "look"), "--hosts=web1,web2", "init",
                 "--path=/srv/shop", f"--output={output}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert dotenv_values(output)["DEPLOY_FPM_SOCKET"] == FPM_SOCKET
    after = {h.name: host_state(h) for h in fleet.rig.hosts}
    for name, (tree, tab) in before.items():
        assert after[name][1] == tab
        assert after[name][0].splitlines() == tree.splitlines()


def test_a_plain_directory_is_not_made_the_deploy_path(fleet: Fleet, tmp_path: Path) -> None:
    web2 = fleet.rig.host("web2")
    web2.sh("cp -rL /srv/shop/current /srv/html && chown -R deployer: /srv/html")
    try:
        before = host_state(web2)
        output = tmp_path / "plain.env"
        result = fab(fleet, project(fleet, "plain"), "--hosts=web2", "init", "--path=/srv/html",
                     f"--output={output}")
        assert result.returncode == 0, result.stdout + result.stderr
        text = output.read_text()
        assert "DEPLOY_PATH" not in dotenv_values(output), text
        assert "# TODO DEPLOY_PATH: a plain directory" in text
        assert "mv /srv/html /srv/shop/releases/legacy" in flat(text)
        assert "[web2] layout: /srv/html is a Magento root updated in place" in result.stdout
        assert "could not decide DEPLOY_PATH" in result.stdout
        assert host_state(web2) == before
    finally:
        web2.sh("rm -rf /srv/html")


def test_init_needs_a_path_and_hosts(tmp_path: Path) -> None:
    (tmp_path / "fabfile.py").write_text(FABFILE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOY_")}
    for args, said in ((["init"], "give --path="), (["init", "--path=srv"], "absolute"),
                       (["init", "--path=/srv/shop"], "no host: give --hosts")):
        result = subprocess.run([FAB, *args], env=env, cwd=tmp_path, text=True,
                                capture_output=True, timeout=60)
        assert result.returncode == 2 and said in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fabfile.py"]


# -- pure parts, no hosts -----------------------------------------------------------------------

def layout(lines: list[str], path: str = "/var/www/shop", real: str = "") -> str:
    return "\n".join([f"real {real or path}", "owner deployer", *lines])


def test_layouts_of_our_tool_capistrano_deployer_and_a_plain_directory() -> None:
    ours = parse_layout(layout(["L current\treleases/20261201.1\t/var/www/shop/releases/20261201.1",
                                "D releases", "D shared", "D repo.git", "D history"]),
                        "/var/www/shop")
    assert (ours.kind, ours.tool, ours.live, ours.root) == (
        RELEASES, OURS, "20261201.1", "/var/www/shop/current")
    assert ours.problems == ()
    cap = parse_layout(layout(["L current\t/var/www/shop/releases/20261201095728\t"
                               "/var/www/shop/releases/20261201095728", "D releases",
                               "D shared", "D repo", "F revisions.log"]), "/var/www/shop")
    assert (cap.kind, cap.tool, cap.live) == (RELEASES, CAPISTRANO, "20261201095728")
    dep = parse_layout(layout(["L current\treleases/10\t/data/shop/releases/10", "D .dep"],
                              real="/data/shop"), "/var/www/shop")
    assert (dep.kind, dep.tool, dep.live) == (RELEASES, DEPLOYER, "10")  # a linked deploy path
    outside = parse_layout(layout(["L current\t/opt/old\t/opt/old"]), "/var/www/shop")
    assert outside.kind == RELEASES and "outside /var/www/shop/releases/" in outside.problems[0]
    assert parse_layout(layout(["D current", "D releases"]), "/var/www/shop").kind == CURRENT_DIR
    plain = parse_layout(layout(["F bin/magento", "D app/etc"], "/var/www/html"), "/var/www/html")
    assert (plain.kind, plain.root) == (PLAIN, "/var/www/html")
    docroot = parse_layout(layout(["F ../bin/magento"], "/var/www/html/pub"), "/var/www/html/pub")
    assert (docroot.kind, docroot.root, docroot.deploy_path) == (
        PLAIN, "/var/www/html", "/var/www/html")
    given_current = parse_layout(layout(["self\treleases/7\t/srv/shop/releases/7",
                                         "F bin/magento", "D app/etc", "D ../releases"],
                                        "/srv/shop/current", "/srv/shop/releases/7"),
                                 "/srv/shop/current")
    assert (given_current.kind, given_current.deploy_path, given_current.live) == (
        RELEASES, "/srv/shop", "7")
    assert parse_layout(layout(["D shared"]), "/var/www/shop").kind == NO_LIVE
    assert parse_layout(layout([]), "/var/www/shop").kind == EMPTY
    assert parse_layout("missing\n", "/var/www/shop").kind == MISSING


def test_links_into_shared_relative_absolute_misnamed_and_broken() -> None:
    text = "\n".join([
        "phys /var/www/shop/releases/3",
        "L pub/media\t../../../shared/pub/media\td",
        "L app/etc/env.php\t/var/www/shop/shared/app/etc/env.php\tf",
        "L var/log\t../../../shared/logs\td",
        "L var/report\t../../../shared/var/report\tN",
        "L pub/robots.txt\t/etc/robots.txt\tf",
        "D var/session", "magento"])
    root = parse_root(text, "/var/www/shop")
    assert root.shared_dirs == ("pub/media",) and root.shared_files == ("app/etc/env.php",)
    assert root.data == ("var/session",) and root.magento and not root.git
    assert any("var/log links to shared/logs" in p for p in root.problems)
    assert any("var/report links to shared/var/report, which does not exist" in p
               for p in root.problems)


def test_shared_settings_keep_what_the_shop_shares_and_only_differences_are_written() -> None:
    assert shared_settings(["pub/media", "var/log"], ["app/etc/env.php"]) == (None, None, [])
    deployer = ["pub/media", "var/log", "var/tmp", "var/composer_home"]
    dirs, files, notes = shared_settings(deployer + ["pub/static/_cache"],
                                         ["app/etc/env.php", "var/.maintenance.ip"])
    assert dirs is not None and files == "app/etc/env.php var/.maintenance.ip"
    assert dirs.split()[:8] == "pub/media var/log var/report var/session var/export " \
                               "var/import var/backups pub/sitemap".split()
    assert set(dirs.split()[8:]) == {"var/tmp", "var/composer_home"}
    assert notes == ["pub/static/_cache is shared now but covers pub/static, which every "
                     "release builds for itself: left out"]
    listing = parse_shared("S app\td\nS app/etc\td\nS app/etc/env.php\tf\nS pub\td\n"
                           "S pub/media\td\nS pub/media/a.jpg\tf\nS var\td\nS var/tmp\td\n"
                           "S old-media\td\n")
    assert listing == SharedListing(("pub/media", "var/tmp"), ("app/etc/env.php",),
                                    ("old-media",))


def test_repository_credentials_are_never_kept_and_the_branch_is_found() -> None:
    text = ("O 0\thttps://deploy:glpat-SECRET99@git.example.com/shop.git\nB 0\trelease/2.4\n"
            "O 1\t/srv/git/shop\n")
    repo = parse_git(text, "/var/www/html", "/var/www/html")
    assert repo.url == "https://git.example.com/shop.git" and repo.has_credentials
    assert repo.branch == "release/2.4" and "checked out" in repo.branch_source
    assert "SECRET99" not in repr(repo)
    ours = parse_git('O 1\tgit@git.example.com:shop.git\nR {"id": "7", "ref": "v2.4.7-1"}\n',
                     "", "/srv/shop", "7")
    assert (ours.url, ours.branch, ours.has_credentials) == (
        "git@git.example.com:shop.git", "v2.4.7-1", False)
    cap = parse_git("O 2\tgit@x:shop.git\nC Branch production (at 1a2b3c) deployed as release "
                    "20261201 by deploy\n", "", "/srv/shop")
    assert cap.branch == "production" and "revisions.log" in cap.branch_source
    assert parse_git("E 0\tfatal: detected dubious ownership\n", "/r", "/r").url == ""


def test_php_cli_follows_the_fpm_version() -> None:
    found = parse_php("P php\t/usr/bin/php\t8.1.2\nP php8.2\t/usr/bin/php8.2\t8.2.36\n"
                      "P php8.1\t/usr/bin/php8.1\t8.1.2\nP junk\n")
    assert decide_php(found, "8.2")[0] == "php8.2"
    assert decide_php(found, "8.1")[0] == "php"
    assert decide_php(found, "")[0] == "php"
    assert decide_php({"php8.3": ("/usr/bin/php8.3", "8.3.1")}, "")[0] == "php8.3"
    assert decide_php({}, "8.2") == ("", "no PHP CLI found")
    assert parse_composer("C composer\tComposer version 2.7.1 2024-02-09\n") == (
        "composer", "2.7.1")
    assert parse_composer("") == ("", "")


def test_fpm_masters_of_this_namespace_their_pools_and_sockets() -> None:
    # mount IDs as /proc/PID/mountinfo gives them: 22-24 are ours, 68 another namespace's;
    # "-": not readable, then the workers tell
    listing = ("me 22 23 24\n"
               "P 10\t1\troot\t22\tphp-fpm8.2\tphp-fpm: master process (/etc/php/8.2/fpm/"
               "php-fpm.conf) \n"
               "P 11\t10\twww-data\t22\tphp-fpm8.2\tphp-fpm: pool www \n"
               "P 12\t10\tshop\t22\tphp-fpm8.2\tphp-fpm: pool shop \n"
               "P 20\t1\troot\t68\tphp-fpm8.1\tphp-fpm: master process (/c/php-fpm.conf) \n"
               "P 21\t20\tdeployer\t68\tphp-fpm8.1\tphp-fpm: pool www \n"
               "P 30\t1\troot\t-\tphp-fpm8.3\tphp-fpm: master process (/d/php-fpm.conf) \n"
               "P 31\t30\tdeployer\t90\tphp-fpm8.3\tphp-fpm: pool www \n")
    assert parse_fpm_processes(listing) == [FpmMaster(
        "10", "/etc/php/8.2/fpm/php-fpm.conf", "8.2", {"shop": ("shop",), "www": ("www-data",)})]
    includes, pools = parse_fpm_config(
        "[global]\npid = /run/php/php8.2-fpm.pid\ninclude=/etc/php/8.2/fpm/pool.d/*.conf\n"
        "[shop]\nuser = shop ; the deploy user\nlisten = /run/php/$pool.sock\n"
        ";listen = 9000\n[tcp]\nlisten = 9001\n")
    assert includes == ["/etc/php/8.2/fpm/pool.d/*.conf"]
    assert pools == {"shop": {"user": "shop", "listen": "/run/php/shop.sock"},
                     "tcp": {"listen": "9001"}}
    assert [fpm_socket(v) for v in ("/run/a.sock", "9001", "0.0.0.0:9000", "10.0.0.5:9000")] \
        == ["/run/a.sock", "127.0.0.1:9001", "127.0.0.1:9000", "10.0.0.5:9000"]


NGINX = """\
upstream fastcgi_backend { server unix:/run/php/shop.sock; }
server {
    listen 10.0.0.5:443 ssl;
    server_name shop.example.com;
    set $MAGE_ROOT /var/www/shop/current;
    root $MAGE_ROOT/pub;
    location ~ \\.php$ { fastcgi_pass fastcgi_backend; }
    location /opcache { fastcgi_pass 127.0.0.1:9000; }
    location /x { fastcgi_pass $backend; }
}
server { listen 80; root /var/www/other/pub; location ~ \\.php$ { fastcgi_pass unix:/o.sock; } }
"""


def test_nginx_says_which_socket_serves_the_shop() -> None:
    tree = parse(NGINX)
    [server] = shop_web_servers(tree, "/var/www/shop")
    assert server.sockets == ("/run/php/shop.sock", "127.0.0.1:9000")
    assert server.unresolved == ("$backend",)
    assert server.listens == ("10.0.0.5:443 ssl",)
    assert fastcgi_targets(tree, shop_servers(tree, "/var/www/other")[0]) == (
        ["/o.sock"], [])


def test_magento_version_from_the_cli_else_composer_lock() -> None:
    assert parse_version("V Magento CLI 2.4.7-p3 \n") == ("2.4.7-p3", "bin/magento --version")
    lock = ('V Could not open input file: bin/magento \n'
            'L             "name": "magento/product-community-edition",\n'
            'L             "version": "2.4.3-p1",\n')
    assert parse_version(lock) == ("2.4.3-p1", "composer.lock")
    assert parse_version("V \n") == ("", "")


def test_crontab_lines_ours_pinned_current_and_others() -> None:
    tab = ("MAILTO=ops@example.com\n"
           "# >>> fabric-magento-deploy cron /srv/shop >>>\n"
           "* * * * * find /srv/shop/cron.pause ... || php /srv/shop/current/bin/magento "
           "cron:run\n"
           "# <<< fabric-magento-deploy cron /srv/shop <<<\n"
           "#~ MAGENTO START abc\n"
           "* * * * * /usr/bin/php /data/shop/releases/20261201/bin/magento cron:run\n"
           "#~ MAGENTO END abc\n"
           "*/5 * * * * php /srv/shop/current/bin/magento cron:run --group=index\n"
           "# * * * * * php /srv/shop/current/bin/magento cron:run\n"
           "0 3 * * * php /opt/other/bin/magento cron:run\n")
    kinds = [(c.kind, c.detail) for c in classify_cron(tab, "/srv/shop", "/data/shop")]
    assert [k for k, _ in kinds] == ["ours", "pinned", "current", "other"]
    assert "releases/20261201 (written by bin/magento cron:install)" in kinds[1][1]


def release_host(name: str, **changes: object) -> HostFindings:
    host = HostFindings(
        name, name, "deployer",
        layout=parse_layout(layout(["L current\treleases/9\t/srv/shop/releases/9",
                                    "D shared", "D .dep"], "/srv/shop"), "/srv/shop"),
        root=RootFacts("/srv/shop/releases/9", ("pub/media", "var/log", "var/tmp"),
                       ("app/etc/env.php", "var/.maintenance.ip"), (), True),
        shared=SharedListing(("pub/media", "var/log", "var/tmp"), ("app/etc/env.php",)),
        repo=Repo("git@git.example.com:shop.git", False, "origin of Deployer's mirror",
                  "main", "the last entry of /srv/shop/.dep/releases_log"),
        php={"php": ("/usr/bin/php", "8.2.36")}, php_command="php", php_why="`php` is 8.2.36",
        composer=("composer", "2.7.1"), fpm_version="8.2",
        sockets=["/run/php/php8.2-fpm.sock"], sockets_why="nginx passes the shop's PHP there",
        magento_version="2.4.7", version_source="bin/magento --version",
        base_url="https://shop.example.com/", target="shop.example.com:443 -> 10.0.0.5",
        cron=classify_cron("* * * * * php /srv/shop/releases/9/bin/magento cron:run\n",
                           "/srv/shop"))
    for key, value in changes.items():
        setattr(host, key, value)
    return host


def test_render_a_deployer_fleet_loads_as_settings(tmp_path: Path) -> None:
    findings = Findings("/srv/shop", [release_host("web1"), release_host("web2")],
                        when="2026-12-07 10:00 UTC")
    text = render_env(findings)
    (tmp_path / ".env").write_text(text)
    settings = load(environ={}, cwd=tmp_path)
    assert settings.deploy_path == "/srv/shop" and settings.hosts == ("web1", "web2")
    assert settings.repo == "git@git.example.com:shop.git" and settings.branch == "main"
    assert settings.fpm_sockets == ("/run/php/php8.2-fpm.sock",)
    assert set(settings.shared_dirs) >= {"var/tmp", "pub/media", "var/report"}
    assert settings.shared_files == ("app/etc/env.php", "var/.maintenance.ip")
    assert settings.php == "php" and settings.upgrade_mode == "maintenance"
    assert "# DEPLOY_UPGRADE_MODE=blue-green" in text
    assert "pinned to releases/9" in flat(text) and "fab cron-install" in text
    assert "# TODO" not in text and undecided(findings) == []
    assert "web1: shop.example.com:443 -> 10.0.0.5" in flat(text)
    assert all(len(line) <= 94 for line in text.splitlines()
               if line.startswith("#") and "cron:run" not in line)
    assert differences(findings) == []


def test_what_cannot_be_decided_is_a_commented_todo_and_differences_are_warnings() -> None:
    web2 = release_host("web2", php={"php": ("/usr/bin/php", "8.1.2")}, php_command="",
                        php_why="`php` is PHP 8.1.2 but PHP-FPM runs 8.2 and no php8.2",
                        sockets=["/run/php/php8.1-fpm.sock"], target="",
                        target_error="[web2] nothing listens on port 443 for https://shop."
                                     "example.com/ (listening ports: 22)",
                        notes=["/srv/shop belongs to root, not to deployer"])
    web1 = release_host("web1", repo=Repo("https://git.example.com/shop.git", True,
                                          "origin of the git checkout /srv/shop/current"))
    findings = Findings("/srv/shop", [web1, web2])
    text = render_env(findings)
    values = dotenv_values(stream=io.StringIO(text))
    assert "DEPLOY_REPO" not in values and "DEPLOY_PHP" not in values
    assert "DEPLOY_FPM_SOCKET" not in values and "DEPLOY_HEALTH_BASE_URL" not in values
    assert "# TODO DEPLOY_REPO: origin has credentials" in text
    assert "# DEPLOY_REPO=https://git.example.com/shop.git" in text
    assert "# TODO DEPLOY_FPM_SOCKET:" in text and "hosts differ" in flat(text)
    assert "# TODO DEPLOY_HEALTH_BASE_URL:" in text
    assert "#   web2: /srv/shop belongs to root, not to deployer" in text
    lines = undecided(findings)
    assert [line.split(":")[0] for line in lines] == [
        "could not decide DEPLOY_REPO", "could not decide DEPLOY_PHP",
        "could not decide DEPLOY_FPM_SOCKET", "could not decide DEPLOY_HEALTH_BASE_URL"]
    warnings = differences(findings)
    assert any("PHP CLI version: web1: 8.2.36; web2: (none)" in w for w in warnings)
    assert any("PHP-FPM socket" in w for w in warnings)
    out = summary(findings)
    assert all(w in out for w in warnings) and all(line in out for line in lines)


def test_no_base_url_suggests_where_each_nginx_listens() -> None:
    hosts = [release_host(name, base_url="", target="",
                          base_url_error="bin/magento config:show: no web/unsecure/base_url",
                          web=WebFacts(("/etc/nginx/nginx.conf",), (ShopServer(
                              "shop.example.com (80)", ("/srv/shop/current/pub",),
                              (f"10.0.0.{n}:80", "[::]:80"), ("/run/php/php8.2-fpm.sock",)),)))
             for n, name in ((5, "web1"), (6, "web2"))]
    text = render_env(Findings("/srv/shop", hosts))
    assert "# DEPLOY_HEALTH_BASE_URL=web1=http://10.0.0.5:80 web2=http://10.0.0.6:80" in text
    assert "web1, web2: bin/magento config:show: no web/unsecure/base_url" in flat(text)
    assert "could not decide DEPLOY_HEALTH_BASE_URL" in summary(Findings("/srv/shop", hosts))


def test_a_plain_directory_gets_the_adoption_steps_not_a_deploy_path() -> None:
    plain = HostFindings(
        "web1", "deploy@web1", "deploy",
        layout=parse_layout(layout(["F bin/magento", "D app/etc"], "/var/www/html"),
                            "/var/www/html"),
        root=RootFacts("/var/www/html", (), (), ("pub/media", "var/log", "app/etc/env.php"),
                       True, True),
        php={"php": ("/usr/bin/php", "8.3.1")}, php_command="php", composer=("composer", "2"),
        sockets=["/run/php/php8.3-fpm.sock"], magento_version="2.4.3-p1",
        version_source="composer.lock")
    text = render_env(Findings("/var/www/html", [plain]))
    values = dotenv_values(stream=io.StringIO(text))
    assert "DEPLOY_PATH" not in values and values["DEPLOY_HOSTS"] == "deploy@web1"
    assert "# DEPLOY_PATH=/var/www/shop" in text
    prose = flat(text)
    assert "mv /var/www/html /var/www/shop/releases/legacy" in prose
    assert "cp /var/www/html/app/etc/env.php /var/www/shop/shared/app/etc/env.php" in prose
    assert "pub/media, var/log" in prose
    assert "blue/green is not possible" in prose and "# DEPLOY_UPGRADE_MODE" not in text


@pytest.mark.parametrize("value", ["plain", "pub/media var/log", "php -d memory_limit=-1",
                                   "a#b c", "$HOME/x", "it's \"q\"", ""])
def test_values_read_back_as_written(value: str) -> None:
    assert dotenv_values(stream=io.StringIO(f"K={env_value(value)}\n"))["K"] == value
