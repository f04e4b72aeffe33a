"""The post-switch health check (``tasks/health.py``): each host asks its own web server.

Rig tests run the check through real SSH on real hosts whose nginx + php-fpm serve the
fake shop deployed by the library, and make the storefront fail the ways it fails in
production (a fatal error in the release, a stopped nginx, a page that breaks halfway
through the window). The remote loop itself is also run here against a local HTTP server
(real ``sh``, ``curl`` and PHP), and the parsing is tested on its own.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from rig import Rig, WebHost, skip_or_fail
from scenario import DEADLINE, Shop

from fabric_magento_deploy import health
from fabric_magento_deploy.health import HealthError, HealthParams, HealthReport

SHOP_DOMAIN = "shop.test"
# An nginx location that answers 200 only to requests carrying the shop's Host header:
# proves the check sends it (the rig's server_name is the host's name, not the shop's).
HOST_PROBE = """\
location = /host-probe {
    if ($host = "shop.test") {
        return 200 "host ok\\n";
    }
    return 421 "wrong host: $host\\n";
}
"""
# A release whose storefront is fatal while every build step passes: the function is only
# called for a web request (di:compile loads the file too, from the CLI).
BROKEN_LABEL = ("<?php\nreturn PHP_SAPI === 'cli' ? 'label'"
                " : \\Shop\\Catalog\\render_label();\n")
MAINTENANCE_FLAG = "/srv/shop/current/var/.maintenance.flag"


def base_urls(rig: Rig) -> dict[str, str]:
    """Each rig host's own nginx (its loopback address and port), by host name."""
    return {h.name: f"http://{h.address}:{h.http_port}" for h in rig.hosts}


def params(rig: Rig, **overrides: object) -> HealthParams:
    values: dict = {"base_urls": base_urls(rig), "host_header": SHOP_DOMAIN,
                    "window_seconds": 1.0, "interval": 0.5}
    return HealthParams(**{**values, **overrides})


def answers(report: HealthReport) -> dict[str, dict[str, int]]:
    return {h.host: {p.path: p.answers for p in h.paths.values()}
            for h in report.hosts.values()}


def failed_statuses(report: HealthReport) -> dict[tuple[str, str], set[int]]:
    found: dict[tuple[str, str], set[int]] = {}
    for host, path, answer in report.failures():
        found.setdefault((host, path), set()).add(answer.status)
    return found


# --------------------------------------------------------------------------- rig


@pytest.mark.real_hosts(web=True)
def test_a_good_release_is_healthy_on_every_host(web_rig3: Rig) -> None:
    web_rig3.start_web(extra_locations=HOST_PROBE)
    shop = Shop(web_rig3)
    shop.deploy(opcache="fcgi", health_paths="none")  # the check under test runs below
    checked = params(web_rig3, paths=("/", "/health_check.php", "/host-probe"))
    report = health.check(shop.hosts(), checked)
    assert report.ok, "\n".join(report.lines())
    assert checked.rounds == 3
    expected = {"/": 3, "/health_check.php": 3, "/host-probe": 3}
    assert answers(report) == {"web1": expected, "web2": expected, "web3": expected}
    assert {h.client for h in report.hosts.values()} == {"curl"}
    assert report.failures() == [] and report.problem() == ""
    record = report.as_record()
    assert record["ok"] is True and set(record["hosts"]) == {"web1", "web2", "web3"}
    assert record["hosts"]["web2"]["paths"]["/"] == {"answers": 3, "expected": 3, "failed": 0}
    # Each host was asked on its own nginx: every host's access log has the window's requests.
    for host in web_rig3.hosts:
        log = host.inside("/srv/log/nginx-access.log").read_text()
        assert log.count('"GET /host-probe HTTP/1.1" 200') == 3, (host.name, log)


@pytest.mark.real_hosts(web=True)
def test_a_release_whose_storefront_answers_500_fails_naming_host_path_status(
        web_rig1: Rig) -> None:
    shop = Shop(web_rig1)
    shop.commit(files={"app/code/Shop/Catalog/Label.php": BROKEN_LABEL})
    shop.deploy(opcache="fcgi", health_paths="none")  # the check under test runs below
    report = health.check(shop.hosts(), params(web_rig1))
    assert not report.ok
    assert failed_statuses(report) == {("web1", "/"): {500}}
    web1 = report.hosts["web1"]
    assert (web1.paths["/"].answers, len(web1.paths["/"].failures)) == (3, 3)
    assert web1.paths["/health_check.php"].ok  # the database and env.php are fine
    assert report.problem().startswith("web1 /: HTTP 500")
    assert any(line.startswith("[web1] / (curl): FAILED: 3 of 3 answers failed")
               and "HTTP 500" in line for line in report.lines()), report.lines()
    first = report.as_record()["hosts"]["web1"]["paths"]["/"]["first_failure"]
    assert first["status"] == 500


@pytest.mark.real_hosts(web=True)
def test_a_host_whose_nginx_is_stopped_fails_with_a_connection_error(web_rig3: Rig) -> None:
    shop = Shop(web_rig3)
    shop.deploy(opcache="fcgi", health_paths="none")  # the check under test runs below
    checked = params(web_rig3)  # web2's address and port, taken while nginx listens
    web_rig3.host("web2").stop_web()
    report = health.check(shop.hosts(), checked)
    assert not report.ok
    assert report.hosts["web1"].ok and report.hosts["web3"].ok
    web2 = report.hosts["web2"]
    assert not web2.error  # the check ran; the web server did not answer
    for path in ("/", "/health_check.php"):
        failures = web2.paths[path].failures
        assert len(failures) == 3 and {a.status for a in failures} == {0}, failures
        assert all("Failed to connect" in a.error for a in failures), failures
    assert "web2 /: no answer (curl: (7) Failed to connect" in report.problem()
    assert "web1" not in report.problem() and "web3" not in report.problem()


@pytest.mark.real_hosts(web=True)
def test_a_page_that_starts_failing_in_the_middle_of_the_window_is_caught(
        web_rig1: Rig) -> None:
    shop = Shop(web_rig1)
    shop.deploy(opcache="fcgi", health_paths="none")  # the check under test runs below
    host = web_rig1.host("web1")
    access_log = host.inside("/srv/log/nginx-access.log")
    offset = access_log.stat().st_size
    checked = params(web_rig1, window_seconds=3.0, interval=0.25)
    result: list[HealthReport] = []
    worker = threading.Thread(target=lambda: result.append(health.check(shop.hosts(), checked)))
    worker.start()
    try:
        wait_for_request(access_log, offset, '"GET / HTTP/1.1" 200')
        host.sh(f"touch {MAINTENANCE_FLAG}", user=web_rig1.user)  # Magento's flag, this release
    finally:
        worker.join()
    [report] = result
    home = report.hosts["web1"].paths["/"]
    assert home.answers == checked.rounds == 13
    assert home.failures, "\n".join(report.lines())
    assert home.failures[0].round > 0  # it was fine at first...
    assert {a.status for a in home.failures} == {503}  # ...then the maintenance page
    assert "Error 503: Service Unavailable" in home.failures[0].excerpt  # its first bytes
    assert report.hosts["web1"].paths["/health_check.php"].ok  # Magento's does not look
    assert not report.ok


def wait_for_request(log: Path, offset: int, needle: str) -> None:
    """Poll ``log`` (from ``offset``) until nginx logged ``needle``: the check is running."""
    deadline = time.monotonic() + DEADLINE
    while needle not in log.read_bytes()[offset:].decode(errors="replace"):
        assert time.monotonic() < deadline, f"no {needle} in {log}"
        time.sleep(0.005)


@pytest.mark.real_hosts(web=True)
def test_without_curl_php_asks_instead(web_rig1: Rig) -> None:
    shop = Shop(web_rig1)
    shop.deploy(opcache="fcgi", health_paths="none")  # the check under test runs below
    host = web_rig1.host("web1")
    hide_curl(host)
    report = health.check(shop.hosts(), params(web_rig1))
    assert report.ok, "\n".join(report.lines())
    assert report.hosts["web1"].client == "php"
    assert answers(report) == {"web1": {"/": 3, "/health_check.php": 3}}
    checked = params(web_rig1)
    host.stop_web()
    down = health.check(shop.hosts(), checked)
    assert failed_statuses(down) == {("web1", "/"): {0}, ("web1", "/health_check.php"): {0}}
    assert "Connection refused" in down.failures()[0][2].error


def hide_curl(host: WebHost) -> None:
    """Make ``curl`` unusable on ``host`` only: an empty, non-executable file bind-mounted
    over it in the host's own mount namespace (the other hosts and this machine keep it)."""
    curl = host.sh("command -v curl").stdout.strip()
    host.sh(f"touch /srv/run/no-curl && chmod 0644 /srv/run/no-curl && "
            f"mount --bind /srv/run/no-curl {curl}")
    assert host.sh("curl --version", user="deployer", check=False).returncode != 0


# --------------------------------------------------------------------------- the loop, locally


class _Handler(BaseHTTPRequestHandler):
    """200 for every path but those starting with /bad (500); echoes Host and path."""

    seen: list[tuple[str, str]] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        type(self).seen.append((self.headers.get("Host", ""), self.path))
        body = f"host={self.headers.get('Host')} path={self.path}".encode()
        self.send_response(500 if self.path.startswith("/bad") else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    """A local HTTP server on 127.0.0.1; yields its base URL."""
    _Handler.seen = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def run_locally(checked: HealthParams) -> HealthReport:
    """The very command a host runs, run by this machine's sh, curl and PHP."""
    for tool in ("curl", "php"):
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode:
            skip_or_fail(f"{tool} is missing")
    proc = subprocess.run(["sh", "-c", health.remote_command(checked, "local")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return HealthReport(checked, {"local": health.parse_output("local", proc.stdout, checked)})


@pytest.mark.parametrize("client", ["curl", "php"])
def test_the_loop_asks_every_path_each_round_with_the_host_header(
        server: str, client: str, tmp_path: Path) -> None:
    hostile = f"/a'$(touch${{IFS}}{tmp_path}/pwned)`id`\"b?x=1&y=;"
    checked = HealthParams(paths=("/", "/bad/page", hostile), base_url=server,
                           host_header="shop.example.com:8080", window_seconds=0.4,
                           interval=0.2, client=client)
    report = run_locally(checked)
    local = report.hosts["local"]
    assert local.client == client and not local.error
    assert {p: (h.answers, len(h.failures)) for p, h in local.paths.items()} == {
        "/": (3, 0), "/bad/page": (3, 3), hostile: (3, 0)}
    assert [path for _, path in _Handler.seen] == ["/", "/bad/page", hostile] * 3
    assert {host for host, _ in _Handler.seen} == {"shop.example.com:8080"}
    assert [a.round for a in local.paths["/bad/page"].failures] == [0, 1, 2]
    assert local.paths["/bad/page"].failures[0].excerpt == (
        "host=shop.example.com:8080 path=/bad/page")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("client", ["curl", "php"])
def test_the_loop_reports_a_refused_connection(client: str) -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), _Handler) as srv:
        port = srv.server_address[1]  # bound, then closed: nobody listens there
    report = run_locally(HealthParams(paths=("/",), base_url=f"http://127.0.0.1:{port}",
                                      window_seconds=0, client=client))
    [(host, path, answer)] = report.failures()
    assert (host, path, answer.status) == ("local", "/", 0)
    assert answer.exit != 0
    assert "refused" in answer.error.lower() or "connect" in answer.error.lower(), answer.error


# --------------------------------------------------------------------------- pure parts


CHECKED = HealthParams(paths=("/", "/health_check.php"), window_seconds=1, interval=0.5)
GOOD = "C\tcurl\n" + "".join(
    f"R\t{r}\t{i}\t{r * 500 + i}\t200\t0.01\t0\t\t\n" for r in range(3) for i in range(2))


def test_parse_counts_every_answer() -> None:
    host = health.parse_output("web1", GOOD + "D\n", CHECKED)
    assert host.ok and host.client == "curl" and host.error == ""
    assert {p: (h.answers, h.expected) for p, h in host.paths.items()} == {
        "/": (3, 3), "/health_check.php": (3, 3)}


def test_parse_keeps_each_failing_answer_with_its_body_excerpt() -> None:
    page = b"<h1>Service Temporarily Unavailable</h1>".hex()
    err_line = f"R\t1\t0\t512\t503\t0.02\t0\t{page}\t\n"
    lost = f"R\t2\t1\t1001\t000\t5.0\t28\t\t{b'curl: (28) timed out'.hex()}\n"
    lines = GOOD.splitlines(keepends=True)
    text = "".join(lines[:3] + [err_line] + lines[4:6] + [lost] + ["D\n"])
    host = health.parse_output("web2", text, CHECKED)
    assert not host.ok and host.error == ""
    [maintenance] = host.paths["/"].failures
    assert (maintenance.round, maintenance.status, maintenance.at) == (1, 503, 0.512)
    assert maintenance.excerpt == "<h1>Service Temporarily Unavailable</h1>"
    assert maintenance.describe() == 'HTTP 503 "Service Temporarily Unavailable"'
    [timeout] = host.paths["/health_check.php"].failures
    assert (timeout.status, timeout.exit) == (0, 28)
    assert timeout.describe() == "no answer (curl: (28) timed out)"
    report = HealthReport(CHECKED, {"web2": host})
    assert health.record_summary(report.as_record()) == (
        "FAILED: web2 / 503, web2 /health_check.php no answer")
    assert report.problem() == ('web2 /: HTTP 503 "Service Temporarily Unavailable"; '
                                "web2 /health_check.php: no answer (curl: (28) timed out)")


def test_a_200_whose_transfer_failed_is_a_failure() -> None:
    text = GOOD.replace("R\t2\t1\t1001\t200\t0.01\t0\t\t", "R\t2\t1\t1001\t200\t5\t28\t\t") + "D"
    host = health.parse_output("web1", text, CHECKED)
    [answer] = host.paths["/health_check.php"].failures
    assert answer.describe() == "HTTP 200 but the transfer failed (exit 28)"


def test_output_cut_short_never_passes() -> None:
    host = health.parse_output("web3", "".join(GOOD.splitlines(keepends=True)[:4]), CHECKED)
    assert not host.ok
    assert host.error == "the check stopped after 1 of 3 rounds"
    assert host.paths["/"].answers == 2 and host.paths["/"].failures == []
    report = HealthReport(CHECKED, {"web3": host})
    assert "[web3] health check FAILED (curl): the check stopped after 1 of 3 rounds" in (
        report.lines())
    assert report.as_record()["hosts"]["web3"]["error"] == host.error


def test_unexpected_output_never_passes() -> None:
    host = health.parse_output("web1", "Welcome to web1!\n" + GOOD + "D\n", CHECKED)
    assert not host.ok and host.error == "unexpected output: Welcome to web1!"
    bad_index = GOOD + "R\t0\t7\t1\t200\t0.1\t0\t\t\nD\n"
    assert health.parse_output("web1", bad_index, CHECKED).error.startswith("unexpected")


def test_lines_and_record() -> None:
    ok = HealthReport(CHECKED, {"web1": health.parse_output("web1", GOOD + "D\n", CHECKED)})
    assert ok.lines() == [
        "health check: /, /health_check.php on 1 host(s), every 0.5 s for 1 s: OK",
        "[web1] / (curl): 3/3 answers 2xx",
        "[web1] /health_check.php (curl): 3/3 answers 2xx"]
    assert json.loads(json.dumps(ok.as_record())) == ok.as_record()
    assert ok.as_record() == {
        "ok": True, "paths": ["/", "/health_check.php"], "window_seconds": 1.0,
        "interval": 0.5, "host_header": "",
        "hosts": {"web1": {"ok": True, "client": "curl", "paths": {
            "/": {"answers": 3, "expected": 3, "failed": 0},
            "/health_check.php": {"answers": 3, "expected": 3, "failed": 0}}}}}
    assert health.record_summary(ok.as_record()) == "ok"
    assert health.record_summary(None) == "not checked"
    skipped = HealthParams(paths=())
    assert health.record_summary(health.check([], skipped).as_record()) == "skipped"
    assert health.check([], skipped).ok
    assert health.check([], skipped).as_record() == {"ok": True, "skipped": True}


def test_rounds_cover_the_window() -> None:
    assert HealthParams().rounds == 11  # 0, 1, ... 10 s
    assert HealthParams(window_seconds=0.3, interval=0.1).rounds == 4
    assert HealthParams(window_seconds=0).rounds == 1
    assert HealthParams(window_seconds=2.5, interval=1).rounds == 3


@pytest.mark.parametrize(("kwargs", "names"), [
    ({"paths": ("health_check.php",)}, "DEPLOY_HEALTH_PATHS: 'health_check.php'"),
    ({"paths": ("/a b",)}, "DEPLOY_HEALTH_PATHS: '/a b'"),
    ({"paths": ("/\n",)}, "DEPLOY_HEALTH_PATHS: '/\\n'"),
    ({"paths": ("/", "/")}, "DEPLOY_HEALTH_PATHS='/ /': a path is repeated"),
    ({"base_url": "ftp://127.0.0.1"}, "DEPLOY_HEALTH_BASE_URL='ftp://127.0.0.1'"),
    ({"base_url": "http://127.0.0.1/shop"}, "DEPLOY_HEALTH_BASE_URL="),
    ({"base_url": "http://127.0.0.1:99999"}, "DEPLOY_HEALTH_BASE_URL="),
    ({"base_url": "http://$(id)"}, "DEPLOY_HEALTH_BASE_URL="),
    ({"base_urls": {"web2": "http://x y"}}, "base URL of host web2='http://x y'"),
    ({"host_header": "shop.test; rm"}, "DEPLOY_HEALTH_HOST='shop.test; rm'"),
    ({"window_seconds": -1}, "DEPLOY_HEALTH_WINDOW=-1: must be >= 0 seconds"),
    ({"interval": 0}, "DEPLOY_HEALTH_INTERVAL=0: must be > 0 seconds"),
    ({"request_timeout": float("nan")}, "DEPLOY_HEALTH_TIMEOUT=nan"),
    ({"window_seconds": 100_000, "interval": 0.01}, "more than 10000 rounds"),
    ({"client": "wget"}, "health client 'wget'"),
])
def test_bad_parameters_are_refused_naming_the_setting(kwargs: dict, names: str) -> None:
    with pytest.raises(HealthError) as refused:
        HealthParams(**kwargs)
    assert names in str(refused.value)


def test_https_connects_to_the_host_as_the_shop_domain() -> None:
    checked = HealthParams(paths=("/",), base_url="https://127.0.0.1",
                           host_header="shop.example.com")
    [target] = health.targets(checked, "web1")
    assert target.url == "https://shop.example.com:443/"
    assert target.connect_to == "shop.example.com:443:127.0.0.1:443"
    assert "--connect-to shop.example.com:443:127.0.0.1:443" in health.curl_loop(checked, "web1")
    [plain] = health.targets(HealthParams(paths=("/x",), base_urls={"web1": "http://[::1]:8080"},
                                          host_header="shop.example.com"), "web1")
    assert (plain.url, plain.host_header, plain.connect_to) == (
        "http://[::1]:8080/x", "shop.example.com", "")


def test_from_settings_reads_the_health_settings() -> None:
    class FakeSettings:  # the fields tasks/settings.py is to add
        health_paths = ("/", "/health_check.php")
        health_base_url = "http://127.0.0.1:8080"
        health_base_urls = {"web3": "http://10.0.0.3"}
        health_host = "shop.example.com"
        health_window = 5.0
        health_interval = 0.5
        health_timeout = 3.0
        php = "php8.2"

    checked = HealthParams.from_settings(FakeSettings(), base_urls={"web2": "http://10.0.0.2"})
    assert (checked.paths, checked.base_for("web1"), checked.base_for("web2")) == (
        ("/", "/health_check.php"), "http://127.0.0.1:8080", "http://10.0.0.2")
    assert checked.base_for("web3") == "http://10.0.0.3"
    assert (checked.rounds, checked.request_timeout, checked.php) == (11, 3.0, "php8.2")


def test_base_urls_per_host() -> None:
    assert health.parse_base_urls("") == ("http://127.0.0.1", {})
    assert health.parse_base_urls("https://10.0.0.1/ web2=http://10.0.0.2:8080") == (
        "https://10.0.0.1", {"web2": "http://10.0.0.2:8080"})
    for bad, names in (("web2=http://a web2=http://b", "'web2=http://b': give HOST=URL"),
                       ("=http://a", "'=http://a': give HOST=URL"),
                       ("web2=ftp://a", "DEPLOY_HEALTH_BASE_URL (web2)='ftp://a'")):
        with pytest.raises(HealthError) as refused:
            health.parse_base_urls(bad)
        assert names in str(refused.value)
