"""Post-switch health check: does every host's own web server serve the new release?

Why on each host, over SSH: the deploy runs where ``fab`` runs (a laptop, a CI runner),
from where the web hosts are often unreachable over HTTP (firewalls) or reachable only
through a load balancer, which would pick a host at random and hide a broken one. So the
requests are made *on* each host, against its own nginx/Apache + PHP-FPM on the loopback
address, with the shop's ``Host:`` header, testing exactly what that host serves.

Why one remote command per host for the whole window: a page that breaks a few seconds
after the switch (a cache warmed by the first request, a worker that ran out of memory,
cron or a consumer that changed something) is only seen by asking again. One SSH command
per request would cost a round trip each; instead one POSIX ``sh`` loop runs the whole
window on the host (``curl``, or PHP's stream functions when curl is missing) and writes
one line per answer, which is parsed here (:func:`parse_output`, pure).

A path fails when any answer in the window is not 2xx, including a 503 maintenance page
(the check runs after maintenance was lifted) and a 3xx redirect (a health URL must be
served, not sent elsewhere: fix ``base_url``/``host_header`` instead), or when the request
gets no answer (connection refused, timeout).

Usage after the switch (the deploy decides what a failure means)::

    report = health.check(hosts, health.HealthParams.from_settings(settings))
    for line in report.lines():
        say(line)
    record["health"] = report.as_record()
    if not report.ok:
        ...  # revert when that is safe; report.problem() says what failed
"""

from __future__ import annotations

import json
import math
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from .hosts import Host, StepFailed, on_all, q

DEFAULT_PATHS = ("/", "/health_check.php")
DEFAULT_BASE_URL = "http://127.0.0.1"
CLIENTS = ("auto", "curl", "php")
EXCERPT_BYTES = 200  # of a failing answer's body, kept for the report
ERROR_BYTES = 300  # of the client's own error message (curl's stderr, PHP's warning)
DONE = "D"  # the last line the remote loop prints: without it the output is truncated

_PATH = re.compile(r"/[\x21-\x7e]*")  # printable ASCII, no spaces: one URL path (+ query)
_HOST_HEADER = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:\d{1,5})?")
_BASE_HOST = re.compile(r"[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\]")


class HealthError(ValueError):
    """A health check parameter was refused; the message names the setting and value."""


# --------------------------------------------------------------------------- parameters


def _number(value: float, key: str, *, minimum: float, above: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise HealthError(f"{key}={value!r}: must be a number of seconds")
    if value < minimum or (above and value == minimum):
        relation = ">" if above else ">="
        raise HealthError(f"{key}={value!r}: must be {relation} {minimum:g} seconds")
    return float(value)


def check_path(path: str, key: str = "DEPLOY_HEALTH_PATHS") -> str:
    """A URL path as the web server receives it: ``/`` first, printable ASCII, no spaces.

    Why this strict: the path becomes part of a URL in a shell command on every host; it
    is quoted there anyway, but a space or a control character could only be a mistake
    (two paths run together, a pasted newline)."""
    if not isinstance(path, str) or not _PATH.fullmatch(path):
        raise HealthError(f"{key}: {path!r} is not a URL path starting with / (printable "
                          "ASCII, no spaces; encode others as %XX)")
    return path


def check_base_url(url: str, key: str = "DEPLOY_HEALTH_BASE_URL") -> str:
    """``http(s)://address[:port]`` of the web server as seen *from the host itself*."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if (parts is None or parts.scheme not in ("http", "https") or parts.path not in ("", "/")
            or parts.query or parts.fragment or parts.username or parts.password
            or not _BASE_HOST.fullmatch(parts.netloc.rsplit(":", 1)[0] if port else parts.netloc)
            or (port is not None and not 0 < port < 65536)):
        raise HealthError(f"{key}={url!r}: must be http://address[:port] or "
                          "https://address[:port] (no path), the web server as the host "
                          "itself reaches it, e.g. http://127.0.0.1")
    return url.rstrip("/")


def check_host_header(value: str, key: str = "DEPLOY_HEALTH_HOST") -> str:
    """The shop's domain (``shop.example.com``, optionally ``:port``), or "" for none."""
    if value and not _HOST_HEADER.fullmatch(value):
        raise HealthError(f"{key}={value!r}: must be a domain name like shop.example.com "
                          "(optionally :port)")
    return value


def parse_base_urls(value: str, key: str = "DEPLOY_HEALTH_BASE_URL") -> tuple[str, dict[str, str]]:
    """``"http://127.0.0.1 web2=http://10.0.0.2:8080"`` -> the URL for every host, and the
    hosts (by name) whose web server listens elsewhere. "" is the default URL.

    Why per host: a web server bound to the host's own private address (not 127.0.0.1),
    or a different port on one host, is common in a mixed fleet."""
    default, per_host = DEFAULT_BASE_URL, {}
    for entry in value.split():
        name, sep, url = entry.partition("=")
        if not sep:
            default = check_base_url(entry, key)
        elif not name or name in per_host:
            raise HealthError(f"{key}: {entry!r}: give HOST=URL, each host once")
        else:
            per_host[name] = check_base_url(url, f"{key} ({name})")
    return default, per_host


@dataclass(frozen=True)
class HealthParams:
    """What to request, where, and for how long. Validated on creation.

    ``base_urls`` overrides ``base_url`` for the named hosts (a host whose web server
    listens on another loopback address or port). ``client``: ``auto`` uses curl when
    the host has it, else ``php`` (PHP's stream functions, always there on a Magento
    host). ``php`` is the PHP command (``DEPLOY_PHP``). ``request_timeout`` bounds each
    request (connect + answer), so a hung FPM shows as a failure, not as a hung deploy.
    """

    paths: tuple[str, ...] = DEFAULT_PATHS
    base_url: str = DEFAULT_BASE_URL
    base_urls: Mapping[str, str] = field(default_factory=dict)
    host_header: str = ""
    window_seconds: float = 10.0
    interval: float = 1.0
    request_timeout: float = 5.0
    php: str = "php"
    client: str = "auto"

    def __post_init__(self) -> None:
        paths = (self.paths,) if isinstance(self.paths, str) else tuple(self.paths)
        for path in paths:
            check_path(path)
        if len(set(paths)) < len(paths):
            raise HealthError(f"DEPLOY_HEALTH_PATHS={' '.join(paths)!r}: a path is repeated")
        object.__setattr__(self, "paths", paths)
        object.__setattr__(self, "base_url", check_base_url(self.base_url))
        object.__setattr__(self, "base_urls", MappingProxyType(
            {name: check_base_url(url, f"base URL of host {name}")
             for name, url in dict(self.base_urls).items()}))
        check_host_header(self.host_header)
        for key, attr, minimum, above in (("DEPLOY_HEALTH_WINDOW", "window_seconds", 0, False),
                                          ("DEPLOY_HEALTH_INTERVAL", "interval", 0, True),
                                          ("DEPLOY_HEALTH_TIMEOUT", "request_timeout", 0, True)):
            object.__setattr__(self, attr, _number(getattr(self, attr), key, minimum=minimum,
                                                   above=above))
        if self.rounds > 10_000:
            raise HealthError(f"DEPLOY_HEALTH_WINDOW={self.window_seconds:g} / "
                              f"DEPLOY_HEALTH_INTERVAL={self.interval:g}: more than 10000 "
                              "rounds of requests; use a longer interval")
        if self.client not in CLIENTS:
            raise HealthError(f"health client {self.client!r}: use one of {', '.join(CLIENTS)}")
        if not self.php.strip():
            raise HealthError("DEPLOY_PHP is empty: give the PHP command")

    @classmethod
    def from_settings(cls, settings: Any, *, base_urls: Mapping[str, str] | None = None,
                      client: str = "auto") -> HealthParams:
        """The parameters from a :class:`~fabric_magento_deploy.settings.Settings` with the
        ``health_*`` fields (see the module docstring)."""
        return cls(paths=tuple(settings.health_paths), base_url=settings.health_base_url,
                   base_urls={**settings.health_base_urls, **(base_urls or {})},
                   host_header=settings.health_host,
                   window_seconds=settings.health_window, interval=settings.health_interval,
                   request_timeout=settings.health_timeout, php=settings.php, client=client)

    @property
    def rounds(self) -> int:
        """Requests per path and host: at 0, ``interval``, ... up to ``window_seconds``."""
        return math.floor(self.window_seconds / self.interval + 1e-9) + 1

    def base_for(self, host: str) -> str:
        return self.base_urls.get(host, self.base_url)

    def command_timeout(self) -> int:
        """Seconds the whole remote loop may take: the window plus every request timing
        out, plus slack for starting the client. Beyond it the host's check is a failure."""
        worst = self.rounds * len(self.paths) * (self.request_timeout + 1)
        return int(self.window_seconds + worst + 30)


# --------------------------------------------------------------------------- remote loop


@dataclass(frozen=True)
class Target:
    """One path's request on one host, as the client makes it: the URL, the ``Host:``
    header to send (http), and for https the name to connect as (SNI, certificate)."""

    path: str
    url: str
    host_header: str
    connect_to: str = ""  # curl --connect-to HOST:PORT:ADDRESS:PORT (https with a domain)
    peer_name: str = ""  # PHP ssl peer_name (https with a domain)


def targets(params: HealthParams, host: str) -> list[Target]:
    """The requests of one round on ``host`` (pure).

    http: the URL names the host's own address, the shop's domain goes in ``Host:``.
    https: the URL names the shop's domain (so SNI and the certificate check use it) and
    the connection goes to the host's own address (curl ``--connect-to``, PHP
    ``peer_name``): a certificate is never checked against ``127.0.0.1``.
    """
    base = urlsplit(params.base_for(host))
    address = base.hostname or ""
    if ":" in address:
        address = f"[{address}]"
    port = base.port or (443 if base.scheme == "https" else 80)
    domain = params.host_header.rsplit(":", 1)[0] if params.host_header else ""
    found = []
    for path in params.paths:
        if base.scheme == "https" and domain:
            found.append(Target(path, f"https://{domain}:{port}{path}", params.host_header,
                                connect_to=f"{domain}:{port}:{address}:{port}",
                                peer_name=domain))
        else:
            found.append(Target(path, f"{base.scheme}://{base.netloc}{path}",
                                params.host_header))
    return found


def _curl_args(t: Target, timeout: float) -> str:
    # --globoff: a path with [] or {} is a path, not a curl URL pattern.
    args = ["curl", "-sS", "-o", "$tmp/b", "-w", "%{http_code} %{time_total}", "--globoff",
            "--max-time", f"{timeout:g}", "--connect-timeout", f"{timeout:g}"]
    if t.connect_to:
        args += ["--connect-to", t.connect_to]
    elif t.host_header:
        args += ["-H", f"Host: {t.host_header}"]
    words = [q(a) for a in args]
    words[3] = '"$tmp/b"'  # the one word that must expand
    return " ".join(words + [q(t.url)])


def curl_loop(params: HealthParams, host: str) -> str:
    """The POSIX sh loop that requests every path each ``interval`` for the window.

    One line per answer: ``R round path# ms-since-start status seconds exit body err``
    (tab separated; body = first bytes of a failing answer, err = curl's message, both
    hex so no byte of a page can break the line format), then ``D``.
    """
    cases = "\n".join(
        f"    {i}) w=$({_curl_args(t, params.request_timeout)} 2>\"$tmp/e\"); rc=$? ;;"
        for i, t in enumerate(targets(params, host)))
    interval_ns = round(params.interval * 1e9)
    return f"""\
set -u
tmp=$(mktemp -d "${{TMPDIR:-/tmp}}/health.XXXXXX") || exit 3
trap 'rm -rf "$tmp"' EXIT
hex() {{ head -c "$2" "$1" | od -An -v -tx1 | tr -d ' \\n'; }}
printf 'C\\tcurl\\n'
start=$(date +%s%N)
round=0
while [ "$round" -lt {params.rounds} ]; do
  due=$((start + round * {interval_ns}))
  now=$(date +%s%N)
  if [ "$due" -gt "$now" ]; then
    left=$((due - now))
    sleep "$((left / 1000000000)).$(printf %09d "$((left % 1000000000))")"
  fi
  i=0
  while [ "$i" -lt {len(params.paths)} ]; do
    : > "$tmp/b"; : > "$tmp/e"
    t=$(date +%s%N)
    case $i in
{cases}
    esac
    code=${{w%% *}}; took=${{w#* }}
    case "$rc:$code" in
      0:2??) body=; err= ;;
      *) body=$(hex "$tmp/b" {EXCERPT_BYTES}); err=$(hex "$tmp/e" {ERROR_BYTES}) ;;
    esac
    printf 'R\\t%s\\t%s\\t%s\\t%s\\t%s\\t%s\\t%s\\t%s\\n' "$round" "$i" \\
      "$(((t - start) / 1000000))" "${{code:-000}}" "${{took:-0}}" "$rc" "$body" "$err"
    i=$((i + 1))
  done
  round=$((round + 1))
done
printf '{DONE}\\n'
"""


# PHP's http:// wrapper: no redirects followed, error statuses read like any other,
# the shop's Host header (PHP then sends no Host of its own), one line per answer.
PHP_LOOP = r"""
$job = json_decode($argv[1], true);
ini_set('default_socket_timeout', (string)$job['timeout']);
$hex = fn ($s, $n) => bin2hex(substr((string)$s, 0, $n));
echo "C\tphp\n";
$start = hrtime(true);
for ($round = 0; $round < $job['rounds']; $round++) {
    $wait = $start + $round * $job['interval_ns'] - hrtime(true);
    if ($wait > 0) {
        usleep(intdiv($wait, 1000));
    }
    foreach ($job['targets'] as $i => $t) {
        $http = ['method' => 'GET', 'ignore_errors' => true, 'follow_location' => 0,
                 'max_redirects' => 1, 'timeout' => $job['timeout'],
                 'header' => $t['host_header'] !== '' ? "Host: {$t['host_header']}\r\n" : ''];
        $ssl = $t['peer_name'] !== '' ? ['peer_name' => $t['peer_name']] : [];
        $ctx = stream_context_create(['http' => $http, 'ssl' => $ssl]);
        $url = $t['php_url'];
        error_clear_last();
        $http_response_header = null;
        $t0 = hrtime(true);
        $body = @file_get_contents($url, false, $ctx);
        $took = (hrtime(true) - $t0) / 1e9;
        $headers = function_exists('http_get_last_response_headers')
            ? http_get_last_response_headers() : $http_response_header;
        $code = 0;
        foreach ((array)$headers as $h) {
            if (preg_match('#^HTTP/\S+\s+(\d{3})#', $h, $m)) {
                $code = (int)$m[1];
            }
        }
        $rc = ($body === false || $code === 0) ? 1 : 0;
        $ok = $rc === 0 && $code >= 200 && $code < 300;
        $err = $rc ? (error_get_last()['message'] ?? 'no answer') : '';
        printf("R\t%d\t%d\t%d\t%03d\t%.6f\t%d\t%s\t%s\n", $round, $i,
            intdiv($t0 - $start, 1000000), $code, $took, $rc,
            $ok ? '' : $hex($body, $job['excerpt']), $ok ? '' : $hex($err, $job['err']));
    }
}
echo "D\n";
"""


def php_loop(params: HealthParams, host: str) -> str:
    """The same loop in PHP (``php -r``), for hosts without curl. https goes to the
    host's own address with the shop's domain as ``peer_name`` (SNI, certificate)."""
    base = params.base_for(host)
    job = {
        "rounds": params.rounds, "interval_ns": round(params.interval * 1e9),
        "timeout": params.request_timeout, "excerpt": EXCERPT_BYTES, "err": ERROR_BYTES,
        "targets": [{"host_header": t.host_header, "peer_name": t.peer_name,
                     "php_url": f"{base}{t.path}"}
                    for t in targets(params, host)],
    }
    return f"{params.php} -r {q(PHP_LOOP)} {q(json.dumps(job))}"


def remote_command(params: HealthParams, host: str) -> str:
    """The one command run on ``host``: curl's loop, or PHP's, as ``client`` says.

    The sh loop runs under ``sh`` whatever the deploy user's login shell is; with
    ``client="auto"`` curl is used when it runs on the host, else PHP."""
    curl = f"sh -c {q(curl_loop(params, host))}"
    php = php_loop(params, host)
    php_bin = q(shlex.split(params.php)[0])
    if params.client == "curl":
        return curl
    if params.client == "php":
        return php
    # Run them rather than `command -v`: bash names a file that exists but cannot run.
    return (f"if curl --version >/dev/null 2>&1; then {curl}; "
            f"elif {php_bin} -v >/dev/null 2>&1; then {php}; "
            f"else echo {q(f'neither curl nor {params.php} can run on the host')} >&2; "
            "exit 3; fi")


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Answer:
    """One request's outcome. ``status`` 0: no HTTP answer (``exit`` says why)."""

    round: int
    path: str
    at: float  # seconds after the window started
    status: int
    seconds: float  # the request's own duration
    exit: int  # curl's exit code (PHP: 1 = no answer); 0 = the transfer completed
    excerpt: str = ""  # first bytes of a failing answer's body
    error: str = ""  # the client's message when the transfer failed

    @property
    def ok(self) -> bool:
        return self.exit == 0 and 200 <= self.status < 300

    def describe(self) -> str:
        """``HTTP 500 "body..."`` or ``no answer: <client error>``, for one line."""
        if self.status == 0:
            return f"no answer ({_clip(self.error) or f'client exit {self.exit}'})"
        text = f"HTTP {self.status}"
        if self.exit:
            text += f" but the transfer failed ({_clip(self.error) or f'exit {self.exit}'})"
        body = _clip(re.sub(r"<[^>]*>", " ", self.excerpt))
        return f"{text} {json.dumps(body)}" if body else text


def _clip(text: str, width: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


@dataclass
class PathHealth:
    """One path on one host over the window."""

    path: str
    expected: int
    answers: int = 0
    failures: list[Answer] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures and self.answers == self.expected


@dataclass
class HostHealth:
    """One host's check: per path, or ``error`` when the check itself could not run."""

    host: str
    paths: dict[str, PathHealth]
    client: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and all(p.ok for p in self.paths.values())


def _unhex(value: str) -> str:
    try:
        return bytes.fromhex(value).decode("utf-8", errors="replace")
    except ValueError:
        return value


def parse_output(host: str, stdout: str, params: HealthParams) -> HostHealth:
    """Turn the remote loop's lines into a :class:`HostHealth` (pure).

    A line that does not parse, a path answered fewer times than ``params.rounds``, or a
    missing final ``D`` line (the loop was killed, the connection dropped) make the host
    fail with ``error`` saying so: an incomplete check never passes.
    """
    paths = {p: PathHealth(p, params.rounds) for p in params.paths}
    report = HostHealth(host, paths)
    done, bad = False, []
    for line in stdout.splitlines():
        fields = line.split("\t")
        if fields[0] == "C" and len(fields) == 2:
            report.client = fields[1]
        elif fields[0] == DONE and len(fields) == 1:
            done = True
        elif fields[0] == "R" and len(fields) == 9:
            try:
                answer = _answer(fields, params.paths)
            except (ValueError, IndexError):
                bad.append(line)
                continue
            paths[answer.path].answers += 1
            if not answer.ok:
                paths[answer.path].failures.append(answer)
        elif line.strip():
            bad.append(line)
    problems = []
    if bad:
        problems.append(f"unexpected output: {_clip(bad[0])}")
    if not done:
        counted = min((p.answers for p in paths.values()), default=0)
        problems.append(f"the check stopped after {counted} of {params.rounds} rounds")
    report.error = "; ".join(problems)
    return report


def _answer(fields: list[str], paths: tuple[str, ...]) -> Answer:
    _, rnd, index, ms, status, took, rc, body, err = fields
    return Answer(round=int(rnd), path=paths[int(index)], at=int(ms) / 1000,
                  status=int(status), seconds=float(took), exit=int(rc),
                  excerpt=_unhex(body), error=_unhex(err))


@dataclass
class HealthReport:
    """Every host's check; :attr:`ok` only when every path answered 2xx every time."""

    params: HealthParams
    hosts: dict[str, HostHealth]

    @property
    def ok(self) -> bool:
        return all(h.ok for h in self.hosts.values())

    def failures(self) -> list[tuple[str, str, Answer]]:
        """(host, path, answer) of every failing answer, in host and time order."""
        return [(h.host, p.path, a) for h in self.hosts.values() for p in h.paths.values()
                for a in p.failures]

    def problem(self) -> str:
        """One line naming what failed where, for an error message ("" when ok)."""
        parts = []
        for h in self.hosts.values():
            if h.error:
                parts.append(f"{h.host}: {h.error}")
            for p in h.paths.values():
                if p.failures:
                    parts.append(f"{h.host} {p.path}: {p.failures[0].describe()}")
        return "; ".join(parts)

    def lines(self) -> list[str]:
        """The summary: one line per host and path, failures with their first answer."""
        if not self.params.paths:
            return ["health check skipped: no paths to request (DEPLOY_HEALTH_PATHS=none)"]
        out = [f"health check: {', '.join(self.params.paths)} on {len(self.hosts)} host(s), "
               f"every {self.params.interval:g} s for {self.params.window_seconds:g} s"
               + (f", Host: {self.params.host_header}" if self.params.host_header else "")
               + (": OK" if self.ok else ": FAILED")]
        for h in self.hosts.values():
            via = f" ({h.client})" if h.client else ""
            if h.error:
                out.append(f"[{h.host}] health check FAILED{via}: {h.error}")
            for p in h.paths.values():
                out.append(f"[{h.host}] {p.path}{via}: " + _path_line(p))
        return out

    def as_record(self) -> dict[str, Any]:
        """A small JSON-able dict for the release record: per host and path the counts
        and the first failure (status, when, body excerpt), plus what was checked."""
        hosts = {}
        for h in self.hosts.values():
            entry: dict[str, Any] = {"ok": h.ok, "client": h.client}
            if h.error:
                entry["error"] = h.error
            entry["paths"] = {p.path: _path_record(p) for p in h.paths.values()}
            hosts[h.host] = entry
        if not self.params.paths:
            return {"ok": True, "skipped": True}
        return {"ok": self.ok, "paths": list(self.params.paths),
                "window_seconds": self.params.window_seconds,
                "interval": self.params.interval,
                "host_header": self.params.host_header, "hosts": hosts}


def record_summary(record: Mapping[str, Any] | None) -> str:
    """A release record's ``health`` entry in a few words, for ``fab releases``:
    ``ok``, ``skipped``, ``not checked`` (older records) or ``FAILED: web1 / 500, ...``."""
    if not record:
        return "not checked"
    if record.get("skipped"):
        return "skipped"
    if record.get("ok"):
        return "ok"
    bad = []
    for host, entry in sorted(record.get("hosts", {}).items()):
        if entry.get("error"):
            bad.append(f"{host} check did not run")
        for path, counts in entry.get("paths", {}).items():
            first = counts.get("first_failure")
            if first:
                bad.append(f"{host} {path} {first['status'] or 'no answer'}")
            elif counts.get("answers") != counts.get("expected"):
                bad.append(f"{host} {path} incomplete")
    return "FAILED: " + ", ".join(bad or ["unknown"])


def _path_line(p: PathHealth) -> str:
    if p.ok:
        return f"{p.answers}/{p.expected} answers 2xx"
    text = f"{len(p.failures)} of {p.answers} answers failed" if p.failures else "no failure"
    if p.answers != p.expected:
        text += f", {p.expected - p.answers} missing"
    if p.failures:
        first = p.failures[0]
        text += f"; first at +{first.at:.1f} s: {first.describe()}"
    return "FAILED: " + text


def _path_record(p: PathHealth) -> dict[str, Any]:
    record: dict[str, Any] = {"answers": p.answers, "expected": p.expected,
                              "failed": len(p.failures)}
    if p.failures:
        first = p.failures[0]
        record["first_failure"] = {"at": first.at, "status": first.status,
                                   "excerpt": first.excerpt[:EXCERPT_BYTES],
                                   "error": first.error}
    return record


# --------------------------------------------------------------------------- running


def check_host(host: Host, params: HealthParams) -> HostHealth:
    """Run the window's loop on ``host`` (one SSH command) and parse its lines."""
    try:
        result = host.run(remote_command(params, host.name), step="health check", warn=True,
                          echo=False, timeout=params.command_timeout())
    except StepFailed as exc:  # connection lost, or the loop ran past its time limit
        report = HostHealth(host.name, {p: PathHealth(p, params.rounds) for p in params.paths})
        report.error = f"could not run the check: {_clip(exc.output or str(exc), 300)}"
        return report
    report = parse_output(host.name, result.stdout, params)
    if result.exited != 0:
        tail = _clip(result.stderr.strip(), 300)
        report.error = "; ".join(x for x in (report.error,
                                             f"exit {result.exited}: {tail}") if x)
    return report


def check(hosts: Iterable[Host], params: HealthParams) -> HealthReport:
    """Request every path on every host, each ``interval`` for ``window_seconds``, all
    hosts at once; return the report. Nothing raises for an unhealthy host: the caller
    decides (revert or keep) from :attr:`HealthReport.ok`."""
    hosts = list(hosts)
    if not params.paths:
        return HealthReport(params, {})
    results = on_all(hosts, lambda h: check_host(h, params))
    reports = {}
    for host in hosts:
        result = results[host.name]
        if isinstance(result, BaseException):
            result_ = HostHealth(host.name, {p: PathHealth(p, params.rounds)
                                             for p in params.paths})
            result_.error = f"could not run the check: {type(result).__name__}: {result}"
            result = result_
        reports[host.name] = result
    return HealthReport(params, reports)


__all__ = ["Answer", "HealthError", "HealthParams", "HealthReport", "HostHealth", "PathHealth",
           "check", "check_host", "parse_base_urls", "parse_output", "record_summary",
           "remote_command", "targets"]
