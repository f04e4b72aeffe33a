"""Make PHP-FPM serve the new release after the ``current`` switch, without root.

OPcache keys compiled scripts by resolved path, and every FPM worker keeps its own
realpath cache (``realpath_cache_ttl``, 120 s by default). With nginx's usual
``SCRIPT_FILENAME $document_root$fastcgi_script_name`` and
``opcache.validate_timestamps=0``, workers keep running the old release after the
symlink moved. ``opcache_reset()`` from the CLI resets the CLI's own (usually disabled)
cache, not FPM's. Executed *inside* the FPM pool it schedules an OPcache restart, and
every worker then also empties its realpath cache at its next request. So each strategy
here gets an ``opcache_reset()`` executed by FPM itself:

``fcgi``
    a FastCGI request straight to each FPM socket, sent from the web host by a small
    client run with the host's PHP CLI (no Python, no cachetool needed there), executing
    a one-time PHP file written under ``DEPLOY_PATH``.
``url``
    the same one-time file, placed in the live release's ``pub/`` and fetched over
    HTTP(S) from the web host itself (never through the load balancer, which would
    reach one host at random), with the shop's ``Host:`` header / SNI and a token.
``command``
    ``DEPLOY_OPCACHE_COMMAND`` (``sudo systemctl reload php8.2-fpm``, cachetool ...).
``none``
    nothing, with a warning in the report.

The one-time file has an unguessable name, answers only with the right token, and is
removed by the client (try/finally), by the shell command around it, and from Python
when the command did not confirm the removal. See docs/opcache.md.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .hosts import Host, StepFailed, q
from .redact import redact
from .settings import Settings

if TYPE_CHECKING:
    from invoke.runners import Result

STRATEGIES = ("fcgi", "url", "command", "none")

#: Where distributions put PHP-FPM sockets (Debian/Ubuntu, RHEL/Fedora, Alpine, Remi).
SOCKET_GLOBS = (
    "/run/php/*.sock",
    "/var/run/php/*.sock",
    "/run/php-fpm/*.sock",
    "/var/run/php-fpm/*.sock",
    "/run/php*-fpm*.sock",
    "/var/run/php*-fpm*.sock",
    "/var/opt/remi/php*/run/php-fpm/*.sock",
)

NOT_FLUSHED = "OPcache not flushed (DEPLOY_OPCACHE={}): PHP may keep serving the old release"

#: Seconds the host-side client waits to connect to / hear from FPM or the web server.
TIMEOUT = 10

# The PHP that runs on the hosts lives in tasks/php/ (checked with `php -l` by the tests):
# opcache_reset.php is the one-time script FPM executes (``op=reset`` reports the status,
# then resets; ``op=status`` only reports; 403 without the request's token);
# opcache_client.php runs in the web host's PHP CLI: writes the one-time script, requests
# it over FastCGI or HTTP once per op, always deletes it, and prints one JSON line. After
# a reset it asks for the status again (briefly polling while the restart is pending:
# OPcache restarts only once no worker is in the middle of a request).
PHP = resources.files(__package__) / "php"
RESET_SCRIPT = (PHP / "opcache_reset.php").read_text()


def fastcgi_client(name: str) -> str:
    """A PHP client run on the hosts (piped to ``php``, never uploaded): the shared
    FastCGI primitives of ``php/fastcgi.php``, then the client's own code."""
    return (PHP / "fastcgi.php").read_text() + (PHP / name).read_text().removeprefix("<?php\n")


CLIENT = fastcgi_client("opcache_client.php")


@dataclass(frozen=True)
class FlushReport:
    """What one flush did on one host for one FPM pool (socket), URL or command."""

    host: str
    strategy: str  # 'fcgi' | 'url' | 'command' | 'none'
    target: str  # socket / URL / command / ''
    scripts_before: int | None
    scripts_after: int | None
    memory_freed: int | None  # bytes
    warning: str = ""

    def line(self) -> str:
        """One human line for summaries and ``fab flush-opcache`` (callers add ``[host]``)."""
        if self.strategy == "none":
            return "OPcache not flushed"
        if self.strategy == "command":
            return f"OPcache flushed by command: {self.target}"
        after = "?" if self.scripts_after is None else self.scripts_after
        text = f"OPcache reset via {self.strategy} {self.target}: "
        text += f"{self.scripts_before} -> {after} cached scripts"
        if self.memory_freed is not None:
            text += f", {_size(self.memory_freed)} freed"
        return text


class OpcacheError(RuntimeError):
    """A flush or its preflight failed: host, strategy, socket/URL/command, and the answer."""

    def __init__(self, host: str, strategy: str, target: str, problem: str, answer: str = ""):
        self.host, self.strategy, self.target = host, strategy, target
        self.problem, self.answer = problem, answer
        self.reports: list[FlushReport] = []  # pools reset before another one failed
        where = f" {target}" if target else ""
        text = f"[{host}] OPcache flush ({strategy}{where}): {problem}"
        if answer.strip():
            text += "\n" + "\n".join(f"  | {line}" for line in answer.strip().splitlines()[-12:])
        super().__init__(redact(text))  # the URL or command may carry a token


def _size(n: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def choose(host: Host, settings: Settings, *, probe: bool = True,
           found: list[str] | None = None) -> str:
    """Resolve ``DEPLOY_OPCACHE`` for ``host``; call it before the switch, errors come first.

    ``auto`` means ``fcgi`` when ``DEPLOY_FPM_SOCKET`` is set or exactly one FPM socket
    exists in the usual places (:data:`SOCKET_GLOBS`). None found is an error, not a quiet
    ``none``: the deploy would exit 0 with PHP serving the old release. Several sockets are
    an error too: resetting another PHP version's pool would leave the shop's stale. With
    ``probe`` (default), ``fcgi`` and ``url`` make one status-only request the way the
    flush will, so a missing socket, socket permissions, PrivateTmp, open_basedir,
    limit_extensions or a pool without OPcache stop the deploy while nothing has changed.
    ``found``: the sockets :func:`discover_command` printed, when the caller already asked.
    """
    strategy, sockets = settings.opcache, settings.fpm_sockets
    if strategy in ("auto", "fcgi"):
        sockets = _sockets(host, settings, strategy, found)
        strategy = "fcgi"
    if strategy not in STRATEGIES:
        raise OpcacheError(host.name, strategy, "", f"unknown strategy, use one of {STRATEGIES}")
    if probe and strategy == "fcgi":
        for sock in sockets:
            request(host, settings, "fcgi", sock, ("status",))
    # Before the first release there is no live pub/ to probe through; the flush will have one.
    if probe and strategy == "url" and host.test(f"test -d {q(settings.current + '/pub')}"):
        request(host, settings, "url", settings.opcache_url, ("status",))
    return strategy


def flush(host: Host, settings: Settings, strategy: str) -> list[FlushReport]:
    """Reset OPcache of the PHP-FPM pool(s) serving ``host``; one report per pool/socket.

    Call it right after the switch with the strategy :func:`choose` returned. Every
    pool is tried even when one fails; the :class:`OpcacheError` raised then names each
    failure, and its ``reports`` hold the pools that were reset.
    """
    if strategy == "none":
        return [FlushReport(host.name, "none", "", None, None, None, _none_warning(settings))]
    if strategy == "command":
        return [_run_command(host, settings)]
    if strategy == "url":
        url = settings.opcache_url
        return [_report(host, "url", url, request(host, settings, "url", url))]
    if strategy != "fcgi":
        raise OpcacheError(host.name, strategy, "", f"unknown strategy, use one of {STRATEGIES}")
    reports, errors = [], []
    for sock in _sockets(host, settings, strategy):
        try:
            reports.append(_report(host, "fcgi", sock, request(host, settings, "fcgi", sock)))
        except OpcacheError as exc:
            errors.append(exc)
    if errors:
        error = errors[0] if len(errors) == 1 else OpcacheError(
            host.name, "fcgi", "", f"{len(errors)} pools failed", "\n".join(map(str, errors)))
        error.reports = reports
        raise error
    return reports


def _none_warning(settings: Settings) -> str:
    return NOT_FLUSHED.format(settings.opcache)


def discover_sockets(host: Host) -> list[str]:
    """FPM sockets in the usual places, symlinks resolved (Debian's php-fpm.sock alias)."""
    out = host.run(discover_command(), step="find PHP-FPM sockets", warn=True, echo=False)
    return out.stdout.split()


def discover_command() -> str:
    """Prints the FPM sockets found in :data:`SOCKET_GLOBS` (read now: tests point it at
    their own hosts), one per line."""
    return (f"for s in {' '.join(SOCKET_GLOBS)}; do [ -S \"$s\" ] && readlink -f \"$s\";"
            " done | sort -u")


def _sockets(host: Host, settings: Settings, strategy: str,
             found: list[str] | None = None) -> tuple[str, ...]:
    """``DEPLOY_FPM_SOCKET``, else the one socket found; several found is an error.
    ``found``: what :func:`discover_command` printed, when the caller already asked."""
    if settings.fpm_sockets:
        return settings.fpm_sockets
    found = discover_sockets(host) if found is None else found
    if len(found) > 1:
        raise OpcacheError(
            host.name, strategy, "",
            f"several PHP-FPM sockets found: {', '.join(found)}; set DEPLOY_FPM_SOCKET to the "
            "pool(s) serving the shop (separate several with spaces)")
    if not found:
        raise OpcacheError(
            host.name, strategy, "",
            f"no PHP-FPM socket found in {' '.join(SOCKET_GLOBS)}. Without an OPcache flush "
            "PHP keeps serving the old release after the switch, so nothing was deployed. "
            "Set DEPLOY_FPM_SOCKET to the shop's pool (a unix socket path, or host:port such "
            "as 127.0.0.1:9000 for a TCP pool), or DEPLOY_OPCACHE=url or command; "
            "DEPLOY_OPCACHE=none only if PHP runs without OPcache")
    return tuple(found)


def _run_command(host: Host, settings: Settings) -> FlushReport:
    """Run ``DEPLOY_OPCACHE_COMMAND``: the operator's own way (sudo reload, cachetool)."""
    command = settings.opcache_command
    try:
        result = host.run(command, step="flush OPcache", warn=True, echo=False)
    except StepFailed as exc:
        raise OpcacheError(host.name, "command", command, "could not run", exc.output) from exc
    if result.failed:
        raise OpcacheError(host.name, "command", command, f"exit {result.exited}",
                           result.stdout + result.stderr)
    return FlushReport(host.name, "command", command, None, None, None)


def _job(host: Host, settings: Settings, mode: str, target: str, ops: tuple[str, ...]) -> dict:
    """What the host-side client needs: where to write the one-time file, whom to ask."""
    token, name = secrets.token_hex(16), secrets.token_hex(16)
    job = {"mode": mode, "target": target, "token": token, "ops": list(ops), "copies": "",
           "timeout": TIMEOUT, "code": RESET_SCRIPT.replace("@TOKEN@", token)}
    if mode == "fcgi":
        file = f"{settings.deploy_path}/.opcache-{name}.php"
        return job | {"file": file, "cleanup": f"rm -f {q(file)}"}
    url = urlsplit(target)
    tls = url.scheme == "https"
    port = url.port or (443 if tls else 80)
    base = url.path if url.path.endswith("/") else url.path + "/"
    address = "127.0.0.1" if host.is_local else host.runner.host  # type: ignore[attr-defined]
    address = f"[{address}]" if ":" in address else address
    name = f"opcache-reset-{name}.php"
    file = f"{settings.current}/pub/{name}"
    return job | {
        "file": file, "copies": f"{settings.releases_dir}/*/pub",
        "cleanup": f"rm -f {q(file)} {q(settings.releases_dir)}/*/pub/{q(name)}",
        "target": f"{address}:{port}", "tls": tls, "sni": url.hostname,
        "host_header": url.netloc.rpartition("@")[2], "path": base + name,
    }


def request(host: Host, settings: Settings, mode: str, target: str,
            ops: tuple[str, ...] = ("reset", "status"), step: str = "flush OPcache") -> list[dict]:
    """Run the client on the host; return its responses once they prove the ops worked.

    The client is piped to ``php`` through a quoted here-document: nothing is uploaded,
    and the one-time file is deleted by the client, by the shell after it, and from here
    when neither could confirm it (the client died, SSH dropped).
    """
    job = _job(host, settings, mode, target, ops)
    command = (f"{settings.php} -d display_errors=stderr -- {q(json.dumps(job))} "
               f"<<'OPCACHE_CLIENT_EOF'\n{CLIENT}\nOPCACHE_CLIENT_EOF\n"
               f"rc=$?; {job['cleanup']}; exit $rc")
    removed = False
    try:
        result = host.run(command, step=step, warn=True, echo=False)
        out = _client_output(host, mode, target, settings, result)
        removed = bool(out.get("removed"))
        return _check(host, mode, target, job, out)
    except StepFailed as exc:
        raise OpcacheError(host.name, mode, target, "the PHP client did not run to the end",
                           exc.output) from exc
    finally:
        if not removed:  # best effort: with SSH gone this fails too, keep the first error
            with contextlib.suppress(StepFailed):
                host.run(job["cleanup"], step="remove OPcache script", warn=True, echo=False)


def _client_output(host: Host, mode: str, target: str, settings: Settings,
                   result: Result) -> dict:
    """The client's JSON line; anything else means PHP itself did not run."""
    lines = result.stdout.strip().splitlines()
    if lines:
        try:
            return json.loads(lines[-1])
        except ValueError:
            pass
    raise OpcacheError(
        host.name, mode, target,
        f"the PHP client did not run (`{settings.php}`, exit {result.exited}; DEPLOY_PHP must "
        "be the PHP CLI on the web host)", result.stdout + result.stderr)


def _check(host: Host, mode: str, target: str, job: dict, out: dict) -> list[dict]:
    """Raise :class:`OpcacheError` unless every op ran the script and the reset happened."""
    if "write_error" in out:
        raise OpcacheError(host.name, mode, target,
                           f"cannot write the one-time script {job['file']}", out["write_error"])
    responses = out.get("responses", [])
    for response in responses:
        problem = _diagnose(response, job)
        if problem:
            raise OpcacheError(host.name, mode, target, problem, _answer(response))
    return responses


def _diagnose(r: dict, job: dict) -> str:
    """Why a response is not a successful run of our script ('' when it is)."""
    data = r["json"] if isinstance(r.get("json"), dict) else {}
    text = f"{r.get('stderr', '')}\n{r.get('body', '')}"
    server = "PHP-FPM" if job["mode"] == "fcgi" else "the web server"
    if "error" in r:
        return _connect_problem(r["error"], job["mode"])
    if data.get("magic") == "opcache-flush/1":
        if not data.get("loaded"):
            return "OPcache is not loaded in this PHP-FPM pool (no zend_extension=opcache)"
        if "restrict_api" in data.get("warning", ""):
            return (f"opcache.restrict_api={data.get('restrict_api')!r} of the pool does not "
                    f"allow {job['file']}: set it to a prefix of DEPLOY_PATH")
        if not data.get("enabled"):
            return f"OPcache is disabled in this pool (opcache.enable={data.get('enable')!r})"
        if r["op"] == "reset" and data.get("reset") is not True:
            return f"opcache_reset() did not reset ({data.get('warning') or 'restrict_api?'})"
        return ""
    if r.get("status") == 403 and '"forbidden"' in r.get("body", ""):
        return "the one-time script refused the token (403)"
    if "security.limit_extensions" in text:
        return "PHP-FPM refuses to run .php files of this pool (see security.limit_extensions)"
    if "open_basedir" in text:
        return f"the pool's open_basedir does not include {job['file']}"
    if any(s in text for s in ("Primary script unknown", "File not found.", "No input file")):
        return (f"{server} cannot see {job['file']}: chroot, PrivateTmp or another mount "
                "namespace, a file the pool user cannot read"
                + ("" if job["mode"] == "fcgi" else ", or a URL not mapped to the live pub/"))
    if not r.get("end"):
        if r.get("timed_out"):
            return f"{server} did not answer within {TIMEOUT} s (pool busy or hanging?)"
        return f"{server} closed the connection without an answer" + (
            " (listen.allowed_clients?)" if job["mode"] == "fcgi" else "")
    if job["mode"] == "url" and r.get("status") in (403, 404):
        return (f"the web server answered {r['status']} without running the script: it must "
                "pass /opcache-reset-<hex>.php in pub/ to PHP (see docs/opcache.md)")
    return f"unexpected answer (status {r.get('status')}) instead of the reset report"


def _connect_problem(error: str, mode: str) -> str:
    if "certificate" in error.lower() or "SSL" in error:
        return ("TLS refused: the web server's certificate must be valid for the URL's host "
                "name (private CA: DEPLOY_PHP='php -d openssl.cafile=/path/to/ca.pem')")
    if "Permission denied" in error:
        return ("permission denied on the socket: put the deploy user in the socket's group "
                "(listen.group) and set listen.mode = 0660 in the pool")
    if "No such file" in error:
        return "no such socket: is PHP-FPM running, and is this its `listen` path?"
    if mode == "fcgi":
        return "cannot connect: is PHP-FPM listening there?"
    return "cannot connect to the web server on this host"


def _answer(r: dict) -> str:
    """What FPM / the web server answered, shortened for the error message."""
    if "error" in r:
        return r["error"]
    parts = [f"status {r['status']}" if r.get("status") else "no answer"]
    for key in ("stderr", "body"):
        if r.get(key, "").strip():
            parts.append(f"{key}: {r[key].strip()[:500]}")
    return "\n".join(parts)


def _report(host: Host, strategy: str, target: str, responses: list[dict]) -> FlushReport:
    """Scripts and free memory before (reset request) and after (next status request)."""
    before = responses[0]["json"]
    after = responses[1]["json"] if len(responses) > 1 else {}
    freed = None
    if after.get("free") is not None and before.get("free") is not None:
        freed = after["free"] - before["free"]
    warning = ""
    if after.get("pending"):
        warning = "OPcache restart still pending (busy workers): it happens once they finish"
        freed = None
    return FlushReport(host.name, strategy, target, before.get("scripts"),
                       after.get("scripts"), freed, warning)
