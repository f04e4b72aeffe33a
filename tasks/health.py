"""The storefront health check: asked before the build (is the check right?) and watched
after the switch (is the new release right?), on every host against its own web server.

Why on each host, over SSH: the deploy runs where ``fab`` runs (a laptop, a CI runner),
from where the web hosts are often unreachable over HTTP or only through a load balancer,
which would pick a host at random and hide a broken one. So each host requests the shop's
own URL (Magento's base URL, see :mod:`tasks.shopurl`) from its own web server, with the
shop's real name for ``Host``, TLS SNI and the certificate.

Why ask the live release first (:func:`prepare`): a check that fails on a healthy shop
(wrong address, a redirect to https, basic auth, the operator's maintenance) would revert
every healthy release. So the live shop must pass the very same requests before anything
is built, or the deploy stops with exit 2 naming the host, the URL, the answer and the
setting that fixes it. Same-shop redirects (http -> https, a missing slash) are followed
once, there, and the check then asks the final URL.

Why stop at the first bad answer (:func:`watch`): every second a broken release stays
live, customers get errors. The probe (``php/health_probe.php``, one command per host)
ends at the first answer that is not 2xx, except a timeout (a cold page after
``cache:flush``), which is asked again until the deadline; :func:`watch` returns as soon
as one host failed, and the deploy reverts every host at once. While all is well it
watches for ``window`` seconds (a page that breaks on its second request).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from importlib import resources
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from . import shopurl
from .hosts import SIGNAL_CHECK, Host, StepFailed, on_all, q
from .settings import SettingsError
from .shopurl import Listeners, ShopUrlError, Target

DEFAULT_PATHS = ("/", "/health_check.php")
EXCERPT_BYTES = 200  # of a failing answer's body, kept for the report
USER_AGENT = "fabric-magento-deploy health check"
DONE = "D"  # the last line the probe prints: without it the output is truncated
TIMED_OUT = 28  # curl's CURLE_OPERATION_TIMEDOUT
TLS_ERRORS = {35: "TLS handshake failed", 51: "the certificate does not match the name",
              58: "client certificate problem", 60: "the certificate is not trusted"}
PROBE = (resources.files(__package__) / "php" / "health_probe.php").read_text() \
    .removeprefix("<?php\n")

_PATH = re.compile(r"/[\x21-\x7e]*")  # printable ASCII, no spaces: one URL path (+ query)
_HOST_HEADER = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:\d{1,5})?")
_BASE_HOST = re.compile(r"[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\]")
_HEADER = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+:[\x20-\x7e]*")


class HealthError(ValueError):
    """A health check parameter was refused; the message names the setting and value."""


class HealthRefused(SettingsError):
    """The live shop does not pass the check before the build: the check's settings are
    wrong for these hosts. Nothing was changed. ``fixes``: per refused host, what
    answered and the setting that fixes it."""

    def __init__(self, message: str, fixes: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.fixes = fixes


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

    Why this strict: the path becomes part of a URL on every host; a space or a control
    character could only be a mistake (two paths run together, a pasted newline)."""
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
                          "itself reaches it, e.g. https://10.0.0.5")
    return url.rstrip("/")


def check_host_header(value: str, key: str = "DEPLOY_HEALTH_HOST") -> str:
    """The shop's domain (``shop.example.com``, optionally ``:port``), or "" for none."""
    if value and not _HOST_HEADER.fullmatch(value):
        raise HealthError(f"{key}={value!r}: must be a domain name like shop.example.com "
                          "(optionally :port)")
    return value


def parse_headers(value: str, key: str = "DEPLOY_HEALTH_HEADERS") -> tuple[str, ...]:
    """``"X-Forwarded-Proto: https | X-Bypass: 1"`` -> each ``Name: value`` (``|`` or a
    new line between headers: neither can be part of a sane header value)."""
    found = tuple(h.strip() for h in re.split(r"[|\n]", value) if h.strip())
    for header in found:
        if not _HEADER.fullmatch(header) or header.lower().startswith("host:"):
            raise HealthError(f"{key}: {header!r} is not a header like 'X-Forwarded-Proto: "
                              "https' (Host is set from the shop's name: DEPLOY_HEALTH_HOST)")
    return found


def check_auth(value: str, key: str = "DEPLOY_HEALTH_AUTH") -> str:
    """``user:password`` for basic auth (a staging shop), or ""."""
    if value and (":" not in value or "\n" in value or not value.partition(":")[0]):
        raise HealthError(f"{key}: must be user:password (the password is masked)")
    return value


def parse_base_urls(value: str, key: str = "DEPLOY_HEALTH_BASE_URL") -> tuple[str, dict[str, str]]:
    """``"http://10.0.0.5 web2=http://10.0.0.6:8080"`` -> the URL for every host ("": find
    it, see :mod:`tasks.shopurl`), and the hosts (by name) whose web server is elsewhere."""
    default, per_host = "", {}
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
    """What to request, how, and for how long. Validated on creation.

    ``base_url`` "" means: find the shop (Magento's base URL, each host's own web server);
    ``base_urls`` overrides it for the named hosts. ``window_seconds``: how long the
    check keeps watching after the switch while all is well; ``request_timeout``: one
    request's limit (a timeout is asked again until window + timeout: a cold page).
    ``php`` is ``DEPLOY_PHP``, which runs the probe with ext-curl.
    """

    paths: tuple[str, ...] = DEFAULT_PATHS
    base_url: str = ""
    base_urls: Mapping[str, str] = field(default_factory=dict)
    host_header: str = ""
    headers: tuple[str, ...] = ()
    auth: str = field(default="", repr=False)
    tls_verify: bool = True
    window_seconds: float = 1.0
    interval: float = 0.25
    request_timeout: float = 5.0
    php: str = "php"

    def __post_init__(self) -> None:
        paths = (self.paths,) if isinstance(self.paths, str) else tuple(self.paths)
        for path in paths:
            check_path(path)
        if len(set(paths)) < len(paths):
            raise HealthError(f"DEPLOY_HEALTH_PATHS={' '.join(paths)!r}: a path is repeated")
        object.__setattr__(self, "paths", paths)
        if self.base_url:
            object.__setattr__(self, "base_url", check_base_url(self.base_url))
        object.__setattr__(self, "base_urls", MappingProxyType(
            {name: check_base_url(url, f"base URL of host {name}")
             for name, url in dict(self.base_urls).items()}))
        check_host_header(self.host_header)
        object.__setattr__(self, "headers", parse_headers("|".join(self.headers)))
        check_auth(self.auth)
        for key, attr, minimum, above in (("DEPLOY_HEALTH_WINDOW", "window_seconds", 0, False),
                                          ("DEPLOY_HEALTH_INTERVAL", "interval", 0, True),
                                          ("DEPLOY_HEALTH_TIMEOUT", "request_timeout", 0, True)):
            object.__setattr__(self, attr, _number(getattr(self, attr), key, minimum=minimum,
                                                   above=above))
        if self.window_seconds / self.interval > 10_000:
            raise HealthError(f"DEPLOY_HEALTH_WINDOW={self.window_seconds:g} / "
                              f"DEPLOY_HEALTH_INTERVAL={self.interval:g}: more than 10000 "
                              "rounds of requests; use a longer interval")
        if not self.php.strip():
            raise HealthError("DEPLOY_PHP is empty: give the PHP command")

    @classmethod
    def from_settings(cls, settings: Any) -> HealthParams:
        """The parameters from a :class:`~fabric_magento_deploy.settings.Settings`."""
        return cls(paths=tuple(settings.health_paths), base_url=settings.health_base_url,
                   base_urls=settings.health_base_urls, host_header=settings.health_host,
                   headers=settings.health_headers, auth=settings.health_auth,
                   tls_verify=settings.health_tls_verify,
                   window_seconds=settings.health_window, interval=settings.health_interval,
                   request_timeout=settings.health_timeout, php=settings.php)

    def explicit_target(self, host: str) -> Target | None:
        """The target ``DEPLOY_HEALTH_BASE_URL`` gives ``host``, or None: find it."""
        base = self.base_urls.get(host, self.base_url)
        return shopurl.explicit(base, self.host_header, self.headers) if base else None

    def deadline(self, window: float) -> float:
        """Seconds until a path must have answered 2xx: the window, plus time for a first
        request that times out (a cold page) and one more."""
        return window + 2 * self.request_timeout

    def command_timeout(self, window: float) -> int:
        """Seconds the probe may take on a host: its deadline plus slack to start PHP."""
        return int(self.deadline(window) + 30)


# --------------------------------------------------------------------------- the probe


def remote_command(params: HealthParams, target: Target, window: float) -> str:
    """The one command a host runs: the probe with its job (no secret: see :func:`stdin`)."""
    job = {
        "targets": [{"url": target.join(p), "resolve": target.resolve, "source": target.source,
                     "headers": list(target.headers)} for p in params.paths],
        "window_ms": round(window * 1000), "interval_ms": round(params.interval * 1000),
        "timeout_ms": round(params.request_timeout * 1000),
        "deadline_ms": round(params.deadline(window) * 1000),
        "verify": params.tls_verify, "auth": bool(params.auth), "excerpt": EXCERPT_BYTES,
        "agent": USER_AGENT,
    }
    return f"{params.php} -r {q(PROBE)} {q(json.dumps(job))}"


def stdin(params: HealthParams) -> str:
    """The probe's input: the basic auth credentials, so no ``ps`` on the host shows them."""
    return f"{params.auth}\n" if params.auth else ""


@dataclass(frozen=True)
class Answer:
    """One request's outcome. ``status`` 0: no HTTP answer (``errno`` says why)."""

    path: str
    at: float  # seconds after the probe started
    status: int
    seconds: float  # the request's own duration
    errno: int  # curl's error number; 0 = the transfer completed
    redirect: str = ""  # where a 3xx pointed
    excerpt: str = ""  # first bytes of a failing answer's body
    error: str = ""  # curl's message when the transfer failed

    @property
    def ok(self) -> bool:
        return self.errno == 0 and 200 <= self.status < 300

    @property
    def timed_out(self) -> bool:
        return self.errno == TIMED_OUT

    def describe(self) -> str:
        """``HTTP 500 "body..."``, ``HTTP 301 to https://...`` or ``no answer: ...``."""
        if self.status == 0 or self.errno:
            why = [x for x in (TLS_ERRORS.get(self.errno, ""), _clip(self.error)) if x]
            return f"no answer ({'; '.join(why) or f'curl error {self.errno}'})"
        if self.redirect:
            return f"HTTP {self.status} to {self.redirect}"
        body = _clip(re.sub(r"<[^>]*>", " ", self.excerpt))
        return f"HTTP {self.status} {json.dumps(body)}" if body else f"HTTP {self.status}"


def _clip(text: str, width: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _unhex(value: str) -> str:
    try:
        return bytes.fromhex(value).decode("utf-8", errors="replace")
    except ValueError:
        return value


@dataclass
class PathHealth:
    """One path on one host: every answer, in order."""

    path: str
    answers: list[Answer] = field(default_factory=list)

    @property
    def failures(self) -> list[Answer]:
        return [a for a in self.answers if not a.ok]

    @property
    def ok(self) -> bool:
        """A 2xx answer, and nothing but timeouts besides (a cold page asked again)."""
        return any(a.ok for a in self.answers) and all(a.ok or a.timed_out for a in self.answers)

    def first_bad(self) -> Answer | None:
        """The answer that decided the failure: the first that was not 2xx or a timeout,
        else the last timeout (no 2xx came before the deadline)."""
        wrong = [a for a in self.answers if not a.ok and not a.timed_out]
        return wrong[0] if wrong else (self.answers[-1] if self.answers and not self.ok
                                       else None)


@dataclass
class HostHealth:
    """One host's check. ``skipped``: why its storefront was not checked (that is not a
    failure, and is said loudly); ``error``: why the check itself could not run."""

    host: str
    target: Target
    paths: dict[str, PathHealth]
    error: str = ""
    skipped: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.skipped) or (not self.error and all(p.ok for p in self.paths.values()))

    def problem(self) -> str:
        if self.error:
            return f"[{self.host}] {self.error}"
        bad = [(p, a) for p in self.paths.values() if (a := p.first_bad())]
        if not bad:  # a path asked by nobody: the probe ended before it (a lost connection)
            bad = [(p, None) for p in self.paths.values() if not p.ok]
        return "; ".join(f"[{self.host}] {self.target.join(p.path)}: "
                         f"{a.describe() if a else 'no answer'}" for p, a in bad)


def parse_output(host: str, target: Target, paths: tuple[str, ...], stdout: str) -> HostHealth:
    """Turn the probe's lines into a :class:`HostHealth` (pure). A line that does not
    parse, an ``E`` line, or no final ``D`` (the probe was killed, the connection dropped)
    make the host's check fail with ``error`` saying so: an incomplete check never passes."""
    report = HostHealth(host, target, {p: PathHealth(p) for p in paths})
    done, bad, errors = False, [], []
    for line in stdout.splitlines():
        fields = line.split("\t")
        if fields == [DONE]:
            done = True
        elif fields[0] == "E" and len(fields) == 2:
            errors.append(fields[1])
        elif fields[0] == "R" and len(fields) == 10:
            try:
                index, answer = _answer(fields, paths)
            except (ValueError, IndexError):
                bad.append(line)
                continue
            report.paths[paths[index]].answers.append(answer)
        elif line.strip():
            bad.append(line)
    if bad:
        errors.append(f"unexpected output: {_clip(bad[0])}")
    if not done and not errors:
        errors.append("the check stopped before its end (killed, or the connection dropped)")
    report.error = "; ".join(errors)
    return report


def _answer(fields: list[str], paths: tuple[str, ...]) -> tuple[int, Answer]:
    _, _rnd, index, ms, status, took, errno, redirect, body, err = fields
    i = int(index)
    return i, Answer(path=paths[i], at=int(ms) / 1000, status=int(status),
                     seconds=float(took), errno=int(errno), redirect=_unhex(redirect),
                     excerpt=_unhex(body), error=_unhex(err))


def probe(host: Host, params: HealthParams, target: Target, window: float) -> HostHealth:
    """Run the probe on ``host`` (one SSH command) and parse its lines."""
    try:
        result = host.run(remote_command(params, target, window), step="health check",
                          warn=True, echo=False, stdin=stdin(params),
                          timeout=params.command_timeout(window))
    except StepFailed as exc:  # connection lost, or the probe ran past its time limit
        report = HostHealth(host.name, target, {p: PathHealth(p) for p in params.paths})
        report.error = f"could not run the check: {_clip(exc.output or str(exc), 300)}"
        return report
    report = parse_output(host.name, target, params.paths, result.stdout)
    if result.exited != 0 and not report.error:
        report.error = f"exit {result.exited}: {_clip(result.stderr.strip(), 300)}"
    return report


# --------------------------------------------------------------------------- before the build


@dataclass
class Plan:
    """What :func:`prepare` decided: each host's target, the hosts not checked (and why),
    and what the live shop answered."""

    targets: dict[str, Target]
    skipped: dict[str, str] = field(default_factory=dict)
    live: dict[str, HostHealth] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    broken: dict[str, str] = field(default_factory=dict)  # the live shop answers 5xx there


def find_targets(hosts: list[Host], primary: Host, params: HealthParams,
                 release_dir: str) -> tuple[dict[str, Target], dict[str, Listeners]]:
    """Each host's target: ``DEPLOY_HEALTH_BASE_URL`` where given, else the shop's base
    URL (asked from Magento in ``release_dir`` on the primary) against the host's own web
    server. Raises :class:`HealthRefused` naming what could not be found."""
    explicit = {h.name: t for h in hosts if (t := params.explicit_target(h.name))}
    found = [h for h in hosts if h.name not in explicit]
    if not found:
        return explicit, {}
    try:
        out = primary.run(shopurl.config_command(params.php, release_dir),
                          step="shop URL", echo=False).stdout
        url = shopurl.base_url(shopurl.parse_config(out))
    except (StepFailed, ShopUrlError) as exc:
        raise HealthRefused(
            f"[{primary.name}] could not find the shop's URL to check it after the switch "
            f"(bin/magento config:show in {release_dir}): {_clip(str(exc), 400)}. Set "
            "DEPLOY_HEALTH_BASE_URL (and DEPLOY_HEALTH_HOST), or DEPLOY_HEALTH_PATHS=none "
            "to deploy without the check") from exc
    if params.host_header:  # the operator's name for the shop wins over Magento's
        url = urlsplit(url)._replace(netloc=params.host_header).geturl()
    listening = on_all(found, lambda h: shopurl.parse_listeners(
        h.output(shopurl.LISTENERS, step="shop URL")))
    targets, problems = dict(explicit), []
    for host in found:
        seen = listening[host.name]
        try:
            if isinstance(seen, BaseException):
                raise ShopUrlError(f"[{host.name}] {seen}")
            targets[host.name] = _with_headers(shopurl.plan(url, seen, host.name), params)
        except ShopUrlError as exc:
            problems.append(str(exc))
    if problems:
        raise HealthRefused("the health check cannot reach the shop:\n" + "\n".join(problems))
    return targets, {k: v for k, v in listening.items() if isinstance(v, Listeners)}


def _with_headers(target: Target, params: HealthParams) -> Target:
    return replace(target, headers=params.headers) if params.headers else target


def _followed(target: Target, answer: Answer, found: Listeners | None,
              params: HealthParams) -> Target | None:
    """The target after a same-shop redirect (http -> https, a missing slash), or None.

    The same scheme and port: only that path moved. Another scheme or port: the whole
    shop lives there, and the host's own web server for it is looked up again."""
    if not (300 <= answer.status < 400 and answer.redirect
            and shopurl.same_shop(target, answer.redirect)):
        return None
    here, there = urlsplit(target.join(answer.path)), urlsplit(answer.redirect)
    if (here.scheme, here.port) == (there.scheme, there.port):
        return replace(target, moved=(*target.moved, (answer.path, answer.redirect)),
                       note=f"{answer.path} moved to {answer.redirect}")
    suffix = answer.path.lstrip("/")
    if not there.path.endswith(suffix):
        return None
    base = there._replace(path=there.path[: len(there.path) - len(suffix)] or "/",
                          query="", fragment="").geturl()
    if found is None:  # an explicit base URL: keep its address, follow the scheme and port
        entry = shopurl.resolve_entry(there.hostname or "", shopurl.port_of(there),
                                      target.address or (here.hostname or ""))
        return Target(base, entry, target.headers, f"followed {answer.status} to {base}")
    try:
        return _with_headers(shopurl.plan(base, found, ""), params)
    except ShopUrlError:
        return None


def hint(answer: Answer | None, host: str) -> str:
    """The setting that fixes a refused probe, from what answered."""
    if answer is None:
        return "check the web server on the host"
    if answer.status == 401:
        return "the shop asks for a password: set DEPLOY_HEALTH_AUTH=user:password"
    if answer.errno in TLS_ERRORS:
        return ("add the certificate's CA to the host's trust store, or set "
                "DEPLOY_HEALTH_TLS_VERIFY=0")
    if 300 <= answer.status < 400:
        return ("the shop sends the check elsewhere: set DEPLOY_HEALTH_HOST to the shop's "
                "name and DEPLOY_HEALTH_BASE_URL to where this host serves it (or "
                "DEPLOY_HEALTH_HEADERS='X-Forwarded-Proto: https' behind a TLS offloader)")
    if answer.status in (403, 404):
        return ("the web server does not serve the shop there: DEPLOY_HEALTH_HOST (the "
                "shop's name), DEPLOY_HEALTH_BASE_URL, or DEPLOY_HEALTH_PATHS")
    return (f"set DEPLOY_HEALTH_BASE_URL={host}=http(s)://ADDRESS:PORT to where this host's "
            "web server answers for the shop")


def prepare(hosts: list[Host], primary: Host, params: HealthParams, release_dir: str, *,
            probe_live: set[str], maintenance: set[str]) -> Plan:
    """Before the build: find every host's target and ask the live shop on the hosts in
    ``probe_live`` (those with a live release) once. Hosts in ``maintenance`` (maintenance
    left on by the operator or a failed deploy) that answer 503 are not checked, loudly.
    A live shop that answers server errors (5xx) is broken, not the check: it is noted in
    ``broken`` (the new release may be its fix). Anything else that fails raises
    :class:`HealthRefused` (exit 2), naming host, URL, answer and fix: a check that fails
    on a healthy shop would revert it."""
    targets, listening = find_targets(hosts, primary, params, release_dir)
    plan = Plan(targets)
    plan.notes += [f"[{n}] health check target: {t.note}" for n, t in targets.items() if t.note]
    asked = [h for h in hosts if h.name in probe_live]
    results = on_all(asked, lambda h: _probe_following(h, plan, listening.get(h.name), params))
    refused: list[tuple[str, str]] = []  # (what answered, the fix)
    for host in asked:
        report = results[host.name]
        if isinstance(report, BaseException):
            refused.append((f"[{host.name}] the check could not run: {report}", ""))
            continue
        plan.live[host.name], plan.targets[host.name] = report, report.target
        if report.ok:
            continue
        if host.name in maintenance and _maintenance_page(report):
            seen_as = report.target.source or "the address its requests come from"
            plan.skipped[host.name] = ("maintenance is on (not set by this deploy): the "
                                       "storefront is NOT checked on this host (add "
                                       f"{seen_as} to var/.maintenance.ip to have it "
                                       "checked)")
            continue
        if _server_errors(report):  # the check reaches the shop, which is broken now:
            plan.broken[host.name] = report.problem()  # a release may be its fix
            continue
        bad = next((p.first_bad() for p in report.paths.values() if not p.ok), None)
        refused.append((report.problem() or report.error, hint(bad, host.name)))
    if refused:
        raise HealthRefused(
            "the health check fails on the LIVE shop, so it would revert any release: "
            "nothing was built.\n"
            + "\n".join(f"{what} -> {fix}" if fix else what for what, fix in refused)
            + "\n(DEPLOY_HEALTH_PATHS=none deploys without the check)", tuple(refused))
    return plan


def _probe_following(host: Host, plan: Plan, found: Listeners | None,
                     params: HealthParams) -> HostHealth:
    """The live shop asked once; each path may follow one same-shop redirect."""
    report, followed = probe(host, params, plan.targets[host.name], 0.0), set()
    while True:
        moves = [(p.path, bad, moved) for p in report.paths.values() if p.path not in followed
                 and (bad := p.first_bad()) and (moved := _followed(report.target, bad,
                                                                     found, params))]
        if not moves:
            return report
        path, bad, moved = moves[0]
        followed.add(path)
        plan.notes.append(f"[{host.name}] {report.target.join(path)} redirects to "
                          f"{bad.redirect}: the check follows it ({moved.note})")
        report = probe(host, params, moved, 0.0)


def _server_errors(report: HostHealth) -> bool:
    """Did the live shop answer, with server errors only (5xx)? Then the check's target is
    right and the shop is broken: refusing would block the deploy that fixes it."""
    bad = [a for p in report.paths.values() if (a := p.first_bad())]
    return not report.error and bool(bad) and all(a.status >= 500 for a in bad)


def _maintenance_page(report: HostHealth) -> bool:
    """Did the live shop answer Magento's maintenance page (and nothing worse)? The probe
    stops at the first bad answer, so later paths may not have been asked."""
    bad = [a for p in report.paths.values() if (a := p.first_bad())]
    return not report.error and bool(bad) and all(a.status == 503 for a in bad)


# --------------------------------------------------------------------------- after the switch


def watch(hosts: Iterable[Host], params: HealthParams, plan: Plan) -> HealthReport:
    """Request every path on every host (not skipped) for the window; return as soon as
    one host failed (the others are not waited for: the caller reverts now)."""
    hosts = [h for h in hosts if h.name not in plan.skipped]
    reports: dict[str, HostHealth] = {}
    if not params.paths or not hosts:
        return HealthReport(params, reports, plan.skipped)
    pool = ThreadPoolExecutor(max_workers=len(hosts))
    futures: dict[Future[HostHealth], Host] = {
        pool.submit(probe, h, params, plan.targets[h.name], params.window_seconds): h
        for h in hosts}
    pending = set(futures)
    try:
        while pending and all(r.ok for r in reports.values()):
            done, pending = wait(pending, timeout=SIGNAL_CHECK, return_when=FIRST_COMPLETED)
            for future in done:
                host = futures[future]
                try:
                    reports[host.name] = future.result()
                except Exception as exc:  # noqa: BLE001 (a host's check, reported)
                    reports[host.name] = HostHealth(host.name, plan.targets[host.name], {},
                                                    error=f"could not run the check: {exc}")
    finally:
        pool.shutdown(wait=False)
    return HealthReport(params, reports, plan.skipped,
                        cut_short=[futures[f].name for f in pending])


@dataclass
class HealthReport:
    """Every host's check; :attr:`ok` when every checked host passed."""

    params: HealthParams
    hosts: dict[str, HostHealth]
    skipped: Mapping[str, str] = field(default_factory=dict)
    cut_short: list[str] = field(default_factory=list)  # not waited for: another failed

    @property
    def ok(self) -> bool:
        return all(h.ok for h in self.hosts.values())

    def problem(self) -> str:
        """One line naming what failed where, for an error message ("" when ok)."""
        return "; ".join(h.problem() for h in self.hosts.values() if not h.ok)

    def lines(self) -> list[str]:
        """The summary: the check, then one line per host and path."""
        if not self.params.paths:
            return ["health check skipped: no paths to request (DEPLOY_HEALTH_PATHS=none)"]
        out = [f"health check: {', '.join(self.params.paths)} on {len(self.hosts)} host(s) "
               f"for {self.params.window_seconds:g} s: {'OK' if self.ok else 'FAILED'}"]
        for name, why in self.skipped.items():
            out.append(f"[{name}] storefront NOT checked: {why}")
        for h in self.hosts.values():
            if h.error:
                out.append(f"[{h.host}] health check FAILED: {h.error}")
            for p in h.paths.values():
                out.append(f"[{h.host}] {h.target.join(p.path)}: {_path_line(p)}")
        if self.cut_short:
            out.append(f"not waited for (another host failed): {', '.join(self.cut_short)}")
        return out

    def as_record(self) -> dict[str, Any]:
        """A small JSON-able dict for the release record."""
        if not self.params.paths:
            return {"ok": True, "skipped": True}
        hosts = {}
        for h in self.hosts.values():
            entry: dict[str, Any] = {"ok": h.ok, "url": h.target.url}
            if h.error:
                entry["error"] = h.error
            entry["paths"] = {p.path: _path_record(p) for p in h.paths.values()}
            hosts[h.host] = entry
        return {"ok": self.ok, "paths": list(self.params.paths),
                "window_seconds": self.params.window_seconds, "hosts": hosts,
                "not_checked": dict(self.skipped)}


def record_summary(record: Mapping[str, Any] | None) -> str:
    """A release record's ``health`` entry in a few words, for ``fab releases``:
    ``ok``, ``skipped``, ``not checked`` (older records) or ``FAILED: web1 / 500, ...``."""
    if not record:
        return "not checked"
    if record.get("skipped"):
        return "skipped"
    if record.get("ok"):
        return "ok" + (" (not checked on " + ", ".join(sorted(record["not_checked"])) + ")"
                       if record.get("not_checked") else "")
    bad = []
    for host, entry in sorted(record.get("hosts", {}).items()):
        if entry.get("error"):
            bad.append(f"{host} check did not run")
        for path, counts in entry.get("paths", {}).items():
            first = counts.get("first_failure")
            if first:
                bad.append(f"{host} {path} {first['status'] or 'no answer'}")
    return "FAILED: " + ", ".join(bad or ["unknown"])


def _path_line(p: PathHealth) -> str:
    times = [a.seconds for a in p.answers if a.ok]
    if p.ok:
        slow = sum(a.timed_out for a in p.answers)
        return (f"{len(times)} answers 2xx (slowest {max(times):.2f} s)"
                + (f", {slow} timed out first (a cold page)" if slow else ""))
    first = p.first_bad()
    if first is None:
        return "FAILED: no answer"
    return (f"FAILED at +{first.at:.2f} s: {first.describe()} "
            f"({len(p.answers)} requests, {len(times)} 2xx)")


def _path_record(p: PathHealth) -> dict[str, Any]:
    record: dict[str, Any] = {"answers": len(p.answers), "failed": len(p.failures)}
    first = None if p.ok else p.first_bad()
    if first:
        record["first_failure"] = {"at": first.at, "status": first.status,
                                   "excerpt": first.excerpt[:EXCERPT_BYTES],
                                   "error": first.error, "redirect": first.redirect}
    return record


__all__ = ["Answer", "HealthError", "HealthParams", "HealthRefused", "HealthReport",
           "HostHealth", "PathHealth", "Plan", "parse_base_urls", "parse_headers",
           "parse_output", "prepare", "probe", "record_summary", "remote_command", "watch"]
