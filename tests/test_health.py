"""The storefront health check's parts (``tasks/health.py``, ``tasks/shopurl.py``).

The probe (``tasks/php/health_probe.php``) is the very command a host runs, run here by
this machine's PHP with ext-curl against local HTTP servers on 127.0.0.1 that answer the
ways shops answer (errors, slow first pages, basic auth, redirects). The facts (listening
sockets, Magento's ``config:show``) are parsed from real output. What the check does
inside a deploy, on rig hosts shaped like production ones, is in
``tests/test_health_deploy.py``.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from rig import skip_or_fail

from fabric_magento_deploy import health, shopurl
from fabric_magento_deploy.health import HealthError, HealthParams
from fabric_magento_deploy.redact import redact
from fabric_magento_deploy.settings import SettingsError, load
from fabric_magento_deploy.shopurl import Listeners, ShopUrlError, Target

# --------------------------------------------------------------------------- the probe, locally


class Shop(BaseHTTPRequestHandler):
    """A storefront with the failure modes of real ones, by path:
    ``/bad`` 500; ``/slow-once`` sleeps past the timeout the first time (a cold page),
    then answers at once; ``/hang`` always does (a hung pool); ``/auth`` wants basic
    auth ``deploy:s3cret!``; ``/old`` redirects to ``/new``; anything else 200. Every
    request is recorded."""

    seen: list[dict[str, str]] = []
    slow_seconds = 1.0

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        cls = type(self)
        cls.seen.append({"path": self.path, "host": self.headers.get("Host", ""),
                         "auth": self.headers.get("Authorization", ""),
                         "proto": self.headers.get("X-Forwarded-Proto", "")})
        status, headers = 200, {}
        if self.path.startswith("/bad"):
            status = 500
        elif self.path == "/slow-once" and sum(s["path"] == self.path for s in cls.seen) == 1:
            time.sleep(cls.slow_seconds)
        elif self.path == "/hang":
            time.sleep(cls.slow_seconds)
        elif self.path == "/auth" and cls.seen[-1]["auth"] != "Basic ZGVwbG95OnMzY3JldCE=":
            status = 401
        elif self.path == "/old":
            status, headers = 301, {"Location": "http://shop.test/new"}
        body = f"{status} {self.path}".encode()
        try:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout)
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[int]:
    """The shop on 127.0.0.1; yields its port."""
    Shop.seen = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Shop)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()


def run_probe(params: HealthParams, target: Target, window: float) -> health.HostHealth:
    """What :func:`health.probe` runs on a host, run by this machine's PHP."""
    proc = subprocess.run(["php", "-r", "exit(function_exists('curl_init') ? 0 : 1);"],
                          check=False)
    if proc.returncode:
        skip_or_fail("php with ext-curl is missing")
    started = time.monotonic()
    proc = subprocess.run(["sh", "-c", health.remote_command(params, target, window)],
                          input=health.stdin(params), capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    report = health.parse_output("local", target, params.paths, proc.stdout)
    report.elapsed = time.monotonic() - started  # type: ignore[attr-defined]
    return report


def shop_target(port: int) -> Target:
    """The shop's name, connected to this machine's server (as a host's own web server)."""
    return Target(f"http://shop.test:{port}/", f"shop.test:{port}:127.0.0.1")


def test_the_probe_asks_as_the_shop_and_watches_the_window(server: int) -> None:
    params = HealthParams(paths=("/", "/health_check.php"), window_seconds=0.5, interval=0.1)
    report = run_probe(params, shop_target(server), 0.5)
    assert report.ok and not report.error, report.problem()
    assert {s["host"] for s in Shop.seen} == {f"shop.test:{server}"}  # by name, not address
    for path in params.paths:  # every 0.1 s for the 0.5 s window: about 6 rounds
        assert 4 <= len(report.paths[path].answers) <= 8, report.paths[path]
    assert [s["path"] for s in Shop.seen[:4]] == ["/", "/health_check.php"] * 2


def test_the_probe_stops_at_the_first_bad_answer(server: int) -> None:
    params = HealthParams(paths=("/", "/bad"), window_seconds=5, interval=0.1)
    report = run_probe(params, shop_target(server), 5)
    assert not report.ok
    assert [s["path"] for s in Shop.seen] == ["/", "/bad"]  # nothing asked after the 500
    assert report.elapsed < 2.5  # type: ignore[attr-defined]  # not the 5 s window
    assert report.problem() == f'[local] http://shop.test:{server}/bad: HTTP 500 "500 /bad"'


def test_a_timeout_is_asked_again_and_a_cold_page_passes(server: int) -> None:
    Shop.slow_seconds = 1.0
    params = HealthParams(paths=("/slow-once",), window_seconds=0, interval=0.1,
                          request_timeout=0.5)
    report = run_probe(params, shop_target(server), 0)
    answers = report.paths["/slow-once"].answers
    assert [a.timed_out for a in answers] == [True, False] and answers[1].ok
    assert report.ok, report.problem()
    line = health.HealthReport(params, {"local": report}).lines()[1]
    assert "1 timed out first (a cold page)" in line


def test_a_page_that_never_answers_in_time_fails_at_the_deadline(server: int) -> None:
    Shop.slow_seconds = 3.0
    params = HealthParams(paths=("/hang",), window_seconds=0, interval=0.1,
                          request_timeout=0.4)
    report = run_probe(params, shop_target(server), 0)
    assert not report.ok
    assert [a.timed_out for a in report.paths["/hang"].answers] == [True, True]
    assert report.elapsed < 2.5  # type: ignore[attr-defined]
    assert "no answer" in report.problem() and "timed out" in report.problem().lower()


def test_no_request_is_started_that_could_only_time_out(server: int) -> None:
    """20 ms left after two timeouts (deadline 0.82 s, timeout 0.4 s): a third request
    could only time out; starting it is noise in the shop's access log, and on a busy CI
    machine it made the previous test's count of answers flaky."""
    Shop.slow_seconds = 3.0
    params = HealthParams(paths=("/hang",), window_seconds=0, interval=0.1,
                          request_timeout=0.4)
    report = run_probe(params, shop_target(server), 0.02)
    assert [a.timed_out for a in report.paths["/hang"].answers] == [True, True]
    assert [s["path"] for s in Shop.seen] == ["/hang", "/hang"]


def test_basic_auth_comes_from_stdin_never_the_command_line(server: int) -> None:
    params = HealthParams(paths=("/auth",), window_seconds=0, auth="deploy:s3cret!")
    assert "s3cret" not in health.remote_command(params, shop_target(server), 0)
    assert run_probe(params, shop_target(server), 0).ok
    without = run_probe(HealthParams(paths=("/auth",), window_seconds=0),
                        shop_target(server), 0)
    assert without.paths["/auth"].first_bad().status == 401  # type: ignore[union-attr]
    assert "DEPLOY_HEALTH_AUTH" in health.hint(without.paths["/auth"].first_bad(), "web1")


def test_headers_are_sent_and_a_redirect_is_reported_not_followed(server: int) -> None:
    params = HealthParams(paths=("/old",), window_seconds=0)
    target = replace(shop_target(server), headers=("X-Forwarded-Proto: https",))
    report = run_probe(params, target, 0)
    assert Shop.seen[0]["proto"] == "https"
    bad = report.paths["/old"].first_bad()
    assert bad is not None and (bad.status, bad.redirect) == (301, "http://shop.test/new")
    assert bad.describe() == "HTTP 301 to http://shop.test/new"


def test_nothing_listening_is_no_answer_right_away() -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), Shop) as srv:
        port = srv.server_address[1]  # bound, then closed: nobody listens there
    params = HealthParams(paths=("/",), window_seconds=3)
    report = run_probe(params, shop_target(port), 3)
    [answer] = report.paths["/"].answers
    assert answer.status == 0 and answer.errno == 7, answer  # CURLE_COULDNT_CONNECT
    assert report.elapsed < 2  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- facts, parsed

PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout
   0: 0500000A:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0
   1: 0500000A:01BB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0
   2: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0
   3: 0500000A:0016 0200000A:D431 01 00000000:00000000 00:00000000 00000000     0
   4: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0
  sl  local_address                         remote_address                        st
   0: 00000000000000000000000000000000:1F91 00000000000000000000000000000000:0000 0A
   1: 00000000000000000000000001000000:0051 00000000000000000000000000000000:0000 0A
S 10.0.0.2 54321 10.0.0.5 22
"""


def test_listening_sockets_and_the_address_ssh_arrived_at() -> None:
    found = shopurl.parse_listeners(PROC_NET_TCP)
    assert found.arrived_at == "10.0.0.5"
    assert found.sockets == {("10.0.0.5", 80), ("10.0.0.5", 443), ("127.0.0.1", 3306),
                             ("0.0.0.0", 8080), ("::", 8081), ("::1", 81)}
    assert ("10.0.0.5", 22) not in found.sockets  # an established connection, not a listener


@pytest.mark.parametrize(("sockets", "arrived", "port", "expected"), [
    ({("10.0.0.5", 80)}, "10.0.0.5", 80, "10.0.0.5"),  # bound to its own address only
    ({("10.0.0.5", 80)}, "203.0.113.9", 80, "10.0.0.5"),  # SSH came in elsewhere
    ({("0.0.0.0", 80)}, "10.0.0.5", 80, "127.0.0.1"),  # a wildcard answers on loopback
    ({("::", 80)}, "10.0.0.5", 80, "::1"),  # nginx [::]:80 is IPv6 only
    ({("127.0.0.1", 80), ("10.0.0.5", 80)}, "10.0.0.6", 80, "127.0.0.1"),
    ({("10.0.0.6", 80), ("10.0.0.5", 80)}, "10.0.0.5", 80, "10.0.0.5"),  # hosts sharing
    ({("10.0.0.5", 443)}, "10.0.0.5", 80, None),
])
def test_which_address_reaches_the_web_server(sockets: set, arrived: str, port: int,
                                              expected: str | None) -> None:
    assert shopurl.connect_address(Listeners(frozenset(sockets), arrived), port) == expected


CONFIG_SHOW = """\
web/unsecure/base_url - http://shop.example.com/
web/unsecure/base_link_url - {{unsecure_base_url}}
web/secure/base_url - https://shop.example.com/
web/secure/use_in_frontend - 1
web/url/redirect_to_base - 1
"""


def test_the_base_url_customers_use() -> None:
    config = shopurl.parse_config(CONFIG_SHOW)
    assert config["web/secure/use_in_frontend"] == "1"
    assert shopurl.base_url(config) == "https://shop.example.com/"
    config["web/secure/use_in_frontend"] = "0"
    assert shopurl.base_url(config) == "http://shop.example.com/"
    placeholder = {"web/unsecure/base_url": "http://a.test/",
                   "web/secure/base_url": "{{unsecure_base_url}}",
                   "web/secure/use_in_frontend": "1"}
    assert shopurl.base_url(placeholder) == "http://a.test/"
    for bad in ({}, {"web/unsecure/base_url": "{{base_url}}"}):
        with pytest.raises(ShopUrlError, match="base URL"):
            shopurl.base_url(bad)


def test_the_request_each_host_makes() -> None:
    own = Listeners(frozenset({("10.0.0.5", 80), ("10.0.0.5", 443)}), "10.0.0.5")
    target = shopurl.plan("https://shop.example.com/de/", own, "web1")
    assert (target.url, target.resolve) == ("https://shop.example.com/de/",
                                            "shop.example.com:443:10.0.0.5")
    assert target.join("/health_check.php") == "https://shop.example.com/de/health_check.php"
    offloaded = shopurl.plan("https://shop.example.com/",
                             Listeners(frozenset({("0.0.0.0", 80)})), "web1")
    assert (offloaded.url, offloaded.resolve, offloaded.headers) == (
        "http://shop.example.com/", "shop.example.com:80:127.0.0.1",
        ("X-Forwarded-Proto: https",))
    assert "TLS ends before this host" in offloaded.note
    # Another server's https on another address (a second shop, a host sharing the
    # network namespace) is not this shop's: its own address serves http, TLS offloaded.
    beside = shopurl.plan("https://shop.example.com/", Listeners(frozenset(
        {("10.0.0.5", 80), ("10.0.0.6", 443)}), "10.0.0.5"), "web1")
    assert (beside.url, beside.resolve) == ("http://shop.example.com/",
                                            "shop.example.com:80:10.0.0.5")
    elsewhere = shopurl.plan("https://shop.example.com/", Listeners(frozenset(
        {("10.0.0.6", 443)}), "10.0.0.5"), "web1")  # bound elsewhere only: still found
    assert elsewhere.resolve == "shop.example.com:443:10.0.0.6"
    with pytest.raises(ShopUrlError, match=r"\[web2\] nothing listens on port 443.*"
                                           r"DEPLOY_HEALTH_BASE_URL"):
        shopurl.plan("https://shop.example.com/", Listeners(frozenset({("::1", 22)})), "web2")


def test_an_explicit_base_url_with_the_shops_name() -> None:
    target = shopurl.explicit("https://10.0.0.5", "shop.example.com", ())
    assert (target.url, target.resolve) == ("https://shop.example.com",
                                            "shop.example.com:443:10.0.0.5")
    assert shopurl.explicit("http://127.0.0.1:8080", "").url == "http://127.0.0.1:8080"


def answer(path: str, status: int, redirect: str = "") -> health.Answer:
    return health.Answer(path=path, at=0.0, status=status, seconds=0.01, errno=0,
                         redirect=redirect)


def test_same_shop_redirects_are_followed_others_are_not() -> None:
    own = Listeners(frozenset({("10.0.0.5", 80), ("10.0.0.5", 443)}), "10.0.0.5")
    params = HealthParams()
    http = shopurl.plan("http://shop.test/", own, "web1")
    to_https = health._followed(http, answer("/", 301, "https://shop.test/"), own, params)
    assert to_https is not None
    assert (to_https.url, to_https.resolve) == ("https://shop.test/", "shop.test:443:10.0.0.5")
    slash = health._followed(http, answer("/sale", 301, "http://shop.test/sale/"), own, params)
    assert slash is not None and slash.join("/sale") == "http://shop.test/sale/"
    assert slash.join("/") == "http://shop.test/"
    for elsewhere in ("https://www.other.test/", "https://sso.example.com/login"):
        assert health._followed(http, answer("/", 302, elsewhere), own, params) is None


# --------------------------------------------------------------------------- output, parsed


def line(index: int, status: int, errno: int = 0, ms: int = 0, body: bytes = b"") -> str:
    return f"R\t0\t{index}\t{ms}\t{status:03d}\t0.01\t{errno}\t\t{body.hex()}\t\n"


PATHS = ("/", "/health_check.php")
TARGET = Target("http://shop.test/", "shop.test:80:10.0.0.5")


def test_parse_every_answer() -> None:
    text = line(0, 200) + line(1, 200) + line(0, 200, ms=250) + line(1, 200, ms=251) + "D\n"
    host = health.parse_output("web1", TARGET, PATHS, text)
    assert host.ok and host.error == ""
    assert [len(p.answers) for p in host.paths.values()] == [2, 2]


def test_a_failing_answer_keeps_its_body_and_decides() -> None:
    page = b"<h1>There has been an error processing your request</h1>"
    host = health.parse_output("web2", TARGET, PATHS, line(0, 200) + line(1, 500, body=page)
                               + "D\n")
    assert not host.ok
    assert host.problem() == ('[web2] http://shop.test/health_check.php: HTTP 500 "There has '
                              'been an error processing your request"')
    record = health.HealthReport(HealthParams(), {"web2": host}).as_record()
    assert record["hosts"]["web2"]["paths"]["/health_check.php"]["first_failure"]["status"] \
        == 500
    assert health.record_summary(record) == "FAILED: web2 /health_check.php 500"


def test_incomplete_or_strange_output_never_passes() -> None:
    cut = health.parse_output("web3", TARGET, PATHS, line(0, 200) + line(1, 200))
    assert not cut.ok and "stopped before its end" in cut.error
    odd = health.parse_output("web1", TARGET, PATHS, "Welcome!\n" + line(0, 200)
                              + line(1, 200) + "D\n")
    assert not odd.ok and odd.error.startswith("unexpected output")
    no_curl = health.parse_output("web1", TARGET, PATHS, "E\tthe PHP CLI has no curl\n")
    assert not no_curl.ok and "no curl" in no_curl.error
    timeouts_only = health.parse_output("web1", TARGET, ("/",), line(0, 0, errno=28) + "D\n")
    assert not timeouts_only.ok


def test_a_skipped_host_is_not_a_failure_but_is_said() -> None:
    report = health.HealthReport(HealthParams(), {}, {"web1": "maintenance is on"})
    assert report.ok
    assert "[web1] storefront NOT checked: maintenance is on" in report.lines()
    assert health.record_summary(report.as_record()) == "ok (not checked on web1)"


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(("kwargs", "names"), [
    ({"paths": ("relative",)}, "DEPLOY_HEALTH_PATHS"),
    ({"paths": ("/", "/")}, "repeated"),
    ({"base_url": "ftp://x"}, "DEPLOY_HEALTH_BASE_URL"),
    ({"host_header": "bad host"}, "DEPLOY_HEALTH_HOST"),
    ({"headers": ("NoColon",)}, "DEPLOY_HEALTH_HEADERS"),
    ({"headers": ("Host: x",)}, "DEPLOY_HEALTH_HOST"),
    ({"auth": "nopassword"}, "DEPLOY_HEALTH_AUTH"),
    ({"window_seconds": -1}, "DEPLOY_HEALTH_WINDOW"),
    ({"interval": 0}, "DEPLOY_HEALTH_INTERVAL"),
    ({"request_timeout": 0}, "DEPLOY_HEALTH_TIMEOUT"),
])
def test_bad_parameters_are_refused_naming_the_setting(kwargs: dict, names: str) -> None:
    with pytest.raises(HealthError, match=names):
        HealthParams(**kwargs)


def test_settings_defaults_find_the_shop_and_mask_the_password(tmp_path: Path) -> None:
    env = {"DEPLOY_PATH": "/srv/shop", "DEPLOY_HOSTS": "web1,web2",
           "DEPLOY_HEALTH_AUTH": "stage:pa55-word",
           "DEPLOY_HEALTH_HEADERS": "X-Forwarded-Proto: https | X-Gate: 1",
           "DEPLOY_HEALTH_BASE_URL": "web2=https://10.0.0.6"}
    settings = load(env, tmp_path, require_repo=False)
    params = HealthParams.from_settings(settings)
    assert params.base_url == "" and params.paths == ("/", "/health_check.php")
    assert params.explicit_target("web1") is None  # found by asking Magento
    assert params.explicit_target("web2") == Target("https://10.0.0.6", headers=params.headers)
    assert params.headers == ("X-Forwarded-Proto: https", "X-Gate: 1")
    assert (params.window_seconds, params.request_timeout, params.tls_verify) == (1, 5, True)
    assert "pa55-word" not in repr(settings) and "pa55-word" not in repr(params)
    assert redact("curl said: stage:pa55-word") == "curl said: stage:***"
    with pytest.raises(SettingsError, match="DEPLOY_HEALTH_TLS_VERIFY"):
        load({**env, "DEPLOY_HEALTH_TLS_VERIFY": "no"}, tmp_path, require_repo=False)
