"""A small, bounded HTTP load on the rig's hosts, to see what a deploy does to visitors.

Why: "zero downtime" is a claim about responses, not about exit codes. While a deploy
runs, :class:`HttpLoad` keeps requesting every host and records each response with its
time, so a test can assert that no request failed, that maintenance lasted only as long
as intended, and that no host served the old release after the switch.

A page is not all a visitor gets: like a browser, the load then fetches every ``/static/``
stylesheet and script the page links, from the same host, and records those answers
apart (:meth:`HttpLoad.assets`). A page that renders while its CSS 404s is a broken shop
(issue 8: a dotted ``--content-version`` did exactly that on Magento's nginx rules), so
tests count broken assets just like failed pages.

Bounds: requests only go to loopback URLs (refused otherwise), a few threads per host,
short timeouts, a small pause between requests, and the load stops by itself after
``max_seconds`` or ``max_requests``, whatever a test forgets.

Times are ``time.time()`` (wall clock) so they compare with timestamps printed by a ``fab``
subprocess or written in logs.
"""

from __future__ import annotations

import html
import http.client
import ipaddress
import re
import threading
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

Kind = Literal["ok", "maintenance", "failed"]

LABEL_RE = re.compile(r"^label=(.*?)\s*$", re.MULTILINE)
# The URL a <link href> or <script src> loads; only /static/ ones are fetched.
ASSET_RE = re.compile(r"<(?:link|script)\b[^>]*?\b(?:href|src)=[\"']([^\"']+)[\"']", re.I)
VERSION_RE = re.compile(r"^/static/version([^/]+)/")
MAINTENANCE_RE = re.compile(r"Service Temporarily Unavailable|maintenance", re.IGNORECASE)
BODY_LIMIT = 65536
EXCERPT = 300


@dataclass(frozen=True)
class Sample:
    """One request: when, which host, what came back (status 0 = no HTTP response).

    For an asset (``asset=True``) ``path`` is the URL path fetched and ``label`` the label
    of the page that linked it (which release's page referenced a broken file).
    """

    t_start: float
    t_end: float
    host: str
    status: int
    label: str | None
    excerpt: str
    kind: Kind
    error: str = ""
    path: str = ""
    asset: bool = False

    @property
    def static_version(self) -> str | None:
        """The ``/static/version<V>/`` signature of an asset URL (None without one)."""
        match = VERSION_RE.match(self.path)
        return match.group(1) if match else None

    def __str__(self) -> str:
        if self.error:
            what = self.error
        elif self.label is not None:
            what = f"label={self.label}"
        else:
            what = self.excerpt[:80]
        where = f" {self.path}" if self.asset else ""
        return f"{self.t_start:.3f} {self.host}{where} {self.status} {self.kind}: {what!r}"


def classify(status: int, body: str) -> Kind:
    """``ok`` for 2xx/3xx, ``maintenance`` for Magento's 503 page, else ``failed``.

    4xx counts as failed: a storefront URL that answers 404 in the middle of a deploy
    (missing static file, missing front controller) is downtime for that visitor.
    """
    if 200 <= status < 400:
        return "ok"
    if status == 503 and MAINTENANCE_RE.search(body):
        return "maintenance"
    return "failed"


def classify_asset(status: int) -> Kind:
    """``ok`` only for 200: a stylesheet answered 404 (or a maintenance page) is broken."""
    return "ok" if status == 200 else "failed"


def linked_assets(body: str) -> list[str]:
    """The ``/static/`` URL paths a page links (stylesheets, scripts), in page order.

    Relative to the host that served the page, as a browser resolves ``href="/static/..."``;
    absolute URLs and anything outside ``/static/`` are left alone (never another host).
    """
    found = []
    for url in ASSET_RE.findall(body):
        path = html.unescape(url)
        if path.startswith("/static/") and path not in found:
            found.append(path)
    return found


def _check_loopback(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"{url!r}: only http:// URLs are supported")
    host = parts.hostname
    if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"{url!r}: load is only ever sent to loopback addresses")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return host, parts.port or 80, path


class HttpLoad:
    """Background GET requests to every target until :meth:`stop` (or the bounds hit).

    ``targets`` maps a host name to a URL; :meth:`on_rig` builds it from a rig. Use as a
    context manager, or call :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        targets: Mapping[str, str],
        *,
        threads_per_host: int = 2,
        timeout: float = 5.0,
        pause: float = 0.01,
        max_seconds: float = 120.0,
        max_requests: int = 150_000,
    ) -> None:
        if not targets:
            raise ValueError("HttpLoad needs at least one target")
        self.targets = {name: _check_loopback(url) for name, url in targets.items()}
        self.urls = dict(targets)
        self.threads_per_host = threads_per_host
        self.timeout = timeout
        self.pause = pause
        self.max_seconds = max_seconds
        self.max_requests = max_requests
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self._samples: list[Sample] = []
        self._assets: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @classmethod
    def on_rig(cls, rig: object, path: str = "/", **options: float) -> HttpLoad:
        """Load on every host of ``rig`` that runs nginx, at ``path``."""
        hosts = [h for h in rig.hosts if h.http_port]  # type: ignore[attr-defined]
        if not hosts:
            raise ValueError("no host of this rig runs nginx: call rig.start_web() first")
        return cls({h.name: h.url(path) for h in hosts}, **options)  # type: ignore[arg-type]

    # ---- running

    def start(self) -> HttpLoad:
        if self._threads:
            raise RuntimeError("HttpLoad already started")
        self.started_at = time.time()
        deadline = time.monotonic() + self.max_seconds
        for name in self.targets:
            for i in range(self.threads_per_host):
                thread = threading.Thread(
                    target=self._run, args=(name, deadline), name=f"load-{name}-{i}", daemon=True
                )
                thread.start()
                self._threads.append(thread)
        return self

    def stop(self) -> HttpLoad:
        """Stop and wait for the threads (at most one request timeout)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        if self.stopped_at is None:
            self.stopped_at = time.time()
        return self

    def __enter__(self) -> HttpLoad:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def _run(self, name: str, deadline: float) -> None:
        """One visitor: a page, then every /static/ file it links, then a short pause."""
        host, port, path = self.targets[name]
        while not self._stop.is_set() and time.monotonic() < deadline:
            with self._lock:
                if len(self._samples) + len(self._assets) >= self.max_requests:
                    return
            page, body = self._get(name, host, port, path)
            self._record(page)
            for asset in linked_assets(body):
                fetched, _ = self._get(name, host, port, asset, referrer=page)
                self._record(fetched)
            self._stop.wait(self.pause)

    def _get(
        self, name: str, host: str, port: int, path: str, referrer: Sample | None = None
    ) -> tuple[Sample, str]:
        """GET ``path``; a page sample (``referrer=None``) or an asset sample, and the body."""
        t_start = time.time()
        conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
        label = referrer.label if referrer else None
        asset = referrer is not None
        try:
            conn.request("GET", path, headers={"Connection": "close", "User-Agent": "magerig"})
            resp = conn.getresponse()
            body = resp.read(BODY_LIMIT).decode(errors="replace")
            status = resp.status
        except Exception as exc:  # every failure is a data point
            failed = Sample(t_start, time.time(), name, 0, label, "", "failed", repr(exc),
                            path, asset)
            return failed, ""
        finally:
            conn.close()
        if asset:
            kind = classify_asset(status)
        else:
            match = LABEL_RE.search(body)
            label, kind = (match.group(1) if match else None), classify(status, body)
        sample = Sample(t_start, time.time(), name, status, label, body[:EXCERPT], kind, "",
                        path, asset)
        return sample, body

    def _record(self, sample: Sample) -> None:
        with self._lock:
            (self._assets if sample.asset else self._samples).append(sample)

    def wait_ok(self, timeout: float = 10.0, since: float | None = None) -> None:
        """Block until every target has answered ``ok`` (after ``since``); else raise.

        Start a deploy only after this, so "no failure" is not "no request yet".
        """
        since = self.started_at if since is None else since
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = {s.host for s in self.samples if s.kind == "ok" and s.t_start >= (since or 0)}
            if seen >= set(self.targets):
                return
            time.sleep(0.01)
        raise TimeoutError(f"not every host answered ok within {timeout}s:\n{self.summary()}")

    def wait_after(self, t: float, count: int = 5, timeout: float = 20.0) -> None:
        """Block until every target has answered ``count`` pages *started* after ``t``.

        Why: "nothing stale after the deploy" needs answers after it; polling for them to a
        deadline replaces a fixed sleep that is too short on a busy machine and wasted on
        an idle one. Raises if the load cannot deliver them (a host stopped answering).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = {name: 0 for name in self.targets}
            for sample in self.samples:
                if sample.t_start > t:
                    seen[sample.host] += 1
            if min(seen.values()) >= count:
                return
            if not self.running:
                break
            time.sleep(0.01)
        raise TimeoutError(f"not {count} answers per host after {t:.3f} within {timeout}s:\n"
                           f"{self.summary()}")

    # ---- results

    @property
    def samples(self) -> list[Sample]:
        """Every page response so far, in order of start time (assets: :meth:`assets`)."""
        with self._lock:
            return sorted(self._samples, key=lambda s: s.t_start)

    def assets(self, host: str | None = None) -> list[Sample]:
        """Every /static/ file fetched after a page, in order of start time."""
        with self._lock:
            chosen = [s for s in self._assets if host is None or s.host == host]
        return sorted(chosen, key=lambda s: s.t_start)

    def broken_assets(self, host: str | None = None) -> list[Sample]:
        """Linked static files that did not come back 200: what a visitor sees unstyled."""
        return [s for s in self.assets(host) if s.kind != "ok"]

    def static_versions(self) -> dict[str, list[str]]:
        """Per host, the distinct ``/static/version<V>/`` signatures pages linked, in order
        of first appearance (every host of one release must link the same one)."""
        out: dict[str, list[str]] = {name: [] for name in self.targets}
        for s in self.assets():
            version = s.static_version
            if version is not None and version not in out[s.host]:
                out[s.host].append(version)
        return out

    def _select(self, kind: Kind | None = None, host: str | None = None) -> list[Sample]:
        return [
            s
            for s in self.samples
            if (kind is None or s.kind == kind) and (host is None or s.host == host)
        ]

    def ok(self, host: str | None = None) -> list[Sample]:
        return self._select("ok", host)

    def failed(self, host: str | None = None) -> list[Sample]:
        """No HTTP response (status 0), or an error status that is not the maintenance page."""
        return self._select("failed", host)

    def maintenance(self, host: str | None = None) -> list[Sample]:
        """503 responses with maintenance wording (Magento's maintenance page)."""
        return self._select("maintenance", host)

    def labels(self) -> dict[str, list[str]]:
        """Per host, the distinct ``label=`` values seen, in order of first appearance."""
        out: dict[str, list[str]] = {name: [] for name in self.targets}
        for s in self.samples:
            if s.label is not None and s.label not in out[s.host]:
                out[s.host].append(s.label)
        return out

    def window(
        self, kind: Kind | None = None, *, label: str | None = None, host: str | None = None
    ) -> tuple[float, float] | None:
        """(first start, last end) of the responses of ``kind`` and/or ``label``; None if none.

        ``window("maintenance")`` is how long visitors saw the maintenance page.
        """
        chosen = [s for s in self._select(kind, host) if label is None or s.label == label]
        if not chosen:
            return None
        return min(s.t_start for s in chosen), max(s.t_end for s in chosen)

    def within(self, t0: float, t1: float, host: str | None = None) -> list[Sample]:
        """Pages whose whole request (start to end) lay inside ``[t0, t1]``: what visitors
        were shown while something (e.g. ``setup:upgrade``) was running."""
        return [s for s in self._select(None, host) if s.t_start >= t0 and s.t_end <= t1]

    def stale_after(
        self, t: float, label: str | Collection[str], host: str | None = None
    ) -> list[Sample]:
        """Responses *started* after ``t`` that still show ``label`` (an old release).

        ``t`` is typically when the switch finished (plus the flush); anything here is a
        visitor served the old code after the deploy said it was done.
        """
        old = {label} if isinstance(label, str) else set(label)
        return [s for s in self._select(None, host) if s.t_start > t and s.label in old]

    def summary(self, limit: int = 10) -> str:
        """Counts per host and kind, labels seen, and the first failures: for assert messages."""
        lines = []
        for name in self.targets:
            mine = self._select(None, name)
            counts = {
                k: sum(1 for s in mine if s.kind == k) for k in ("ok", "maintenance", "failed")
            }
            assets = self.assets(name)
            broken = sum(1 for s in assets if s.kind != "ok")
            lines.append(f"{name}: {len(mine)} requests {counts} labels={self.labels()[name]}; "
                         f"{len(assets)} assets, {broken} broken, "
                         f"versions={self.static_versions()[name]}")
        lines += [f"  {s}" for s in self.failed()[:limit]]
        lines += [f"  asset {s}" for s in self.broken_assets()[:limit]]
        return "\n".join(lines)


def timeline(samples: Iterable[Sample]) -> list[tuple[float, str, str]]:
    """Collapse samples to (time, host, "kind/label") at each change, per host: for reports."""
    last: dict[str, str] = {}
    out = []
    for s in sorted(samples, key=lambda s: s.t_start):
        state = f"{s.kind}/{s.label}" if s.label else f"{s.kind}/{s.status}"
        if last.get(s.host) != state:
            last[s.host] = state
            out.append((s.t_start, s.host, state))
    return out
