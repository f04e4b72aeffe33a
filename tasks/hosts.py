"""Where commands run: a web host over SSH, or this machine (the host named ``local``).

A :class:`Host` wraps a Fabric ``Connection`` (or an Invoke ``Context`` for ``local``)
so every step runs the same way: no stdin, output streamed with a ``[host]`` prefix a
whole line at a time, and a failure raised as :class:`StepFailed` carrying host, step,
command and the tail of the output. :func:`on_all` runs one function on many hosts in
parallel and waits for all of them: that wait is the barrier between deploy phases.
"""

from __future__ import annotations

import functools
import io
import re
import shlex
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, TypeVar

import paramiko
from fabric import Config, Connection
from invoke import Context

from . import hostkeys
from .plan import Step
from .redact import redact
from .settings import DEFAULTS, Settings, SettingsError

if TYPE_CHECKING:
    from invoke.runners import Result

LOCAL = "local"
T = TypeVar("T")
_print_lock = threading.Lock()

q = shlex.quote
DEFAULT_TIMEOUT = int(DEFAULTS["DEPLOY_TIMEOUT_COMMAND"])
_HOST_ENTRY = re.compile(r"(?:(?P<user>[^@]+)@)?(?P<host>\[[^\]]+\]|[^:@]+)(?::(?P<port>\d+))?")
SIGNAL_CHECK = 0.1  # seconds between the waiting thread's looks at pending signals
CONNECT_DELAYS = (1.0, 3.0)  # seconds before the 2nd and 3rd connection attempt
KEEPALIVE = 15  # seconds between SSH keepalives: a dead link is noticed, NAT state kept
NO_EXIT_STATUS = -1  # what paramiko reports when the channel closed without an exit status
TIMED_OUT, TIMED_OUT_KILLED = 124, 137  # coreutils timeout: TERM'd, then KILLed after -k


def say(line: str, *, stream: Any = None) -> None:
    """Print one line (credentials masked) without interleaving with other threads' lines."""
    with _print_lock:
        print(redact(line), file=stream or sys.stdout, flush=True)


class StepFailed(RuntimeError):
    """A command failed on a host. ``str()`` is the whole story for the operator."""

    def __init__(self, host: str, step: str, command: str, exit_code: int | None, output: str,
                 *, timed_out: bool = False):
        self.host, self.step, self.command = host, step, command
        self.exit_code, self.output, self.timed_out = exit_code, output, timed_out
        tail = "\n".join(output.strip().splitlines()[-15:])
        code = "no exit code" if exit_code is None else f"exit {exit_code}"
        super().__init__(redact(
            f"[{host}] {step} failed ({code})\n  command: {command}\n"
            + "".join(f"  | {line}\n" for line in tail.splitlines())
        ))


class _LinePrefixer(io.TextIOBase):
    """A stream that writes whole lines to stdout, each prefixed with the host name."""

    def __init__(self, prefix: str, sink: Any):
        self.prefix, self.sink, self.buffer = prefix, sink, ""

    def write(self, text: str) -> int:
        self.buffer += text.replace("\r\n", "\n").replace("\r", "\n")
        *lines, self.buffer = self.buffer.split("\n")
        for line in lines:
            say(f"{self.prefix}{line}", stream=self.sink)
        return len(text)

    def flush(self) -> None:
        if self.buffer:
            say(f"{self.prefix}{self.buffer}", stream=self.sink)
            self.buffer = ""


class Host:
    """One target of a deploy.

    ``key`` is its identity, ``user@host:port`` (``local`` for this machine): two targets
    with the same key are the same machine and account. ``name`` is what the operator
    reads (``web1``); :func:`distinct` makes names unique within one deploy, because
    results are reported and keyed by name.
    """

    def __init__(self, name: str, runner: Context, *, echo: bool = True, host_keys: str = ""):
        self.name = name
        self.runner = runner
        self.echo = echo
        self.host_keys = host_keys  # DEPLOY_HOST_KEYS; "" = as the host's SSH config says
        self.timeout = DEFAULT_TIMEOUT  # seconds a command may take unless told otherwise
        self.verbose = False  # print each command before it runs (``--verbose``)
        self._guarded = False
        self._lost = False  # every attempt to connect failed: later ones try once

    def configure(self, settings: Settings) -> Host:
        """Apply ``DEPLOY_HOST_KEYS`` (when set) and ``DEPLOY_TIMEOUT_COMMAND``."""
        self.host_keys = settings.host_keys or self.host_keys
        self.timeout = settings.timeout_command
        return self

    def matches(self, entry: str) -> bool:
        """Is this the host ``entry`` of ``DEPLOY_HOSTS`` names (``[user@]host[:port]``)?"""
        if not isinstance(self.runner, Connection):
            return entry == LOCAL
        m = _HOST_ENTRY.fullmatch(entry)
        c = self.runner
        return bool(m) and m["host"] == c.original_host and m["user"] in (None, c.user) and (
            m["port"] is None or int(m["port"]) == c.port)

    @property
    def key(self) -> str:
        if isinstance(self.runner, Connection):
            c = self.runner
            return f"{c.user}@{c.original_host}:{c.port}"
        return LOCAL

    @classmethod
    def from_context(cls, c: Context, *, echo: bool = True) -> Host:
        """The host a Fabric task was called with; a plain Context means ``local``."""
        if isinstance(c, Connection):
            return cls(c.original_host, c, echo=echo)
        return cls(LOCAL, c, echo=echo)

    @classmethod
    def named(cls, name: str, config: Config | None = None, *, echo: bool = True) -> Host:
        """A host from a name in ``DEPLOY_HOSTS``; Fabric's ssh_config/user/key apply."""
        config = config or Config()
        if name == LOCAL:
            return cls(LOCAL, Context(config=config), echo=echo)
        return cls(name, Connection(name, config=config), echo=echo)

    @property
    def is_local(self) -> bool:
        return not isinstance(self.runner, Connection)

    def open(self) -> None:
        """Connect now (threads sharing a lazily opened Connection race) and set TCP_NODELAY.

        Paramiko never sets TCP_NODELAY; with Nagle + delayed ACK each short command
        costs ~45 ms instead of ~13 ms, which adds up over a deploy's hundred commands.
        A connection that is refused, times out or drops before SSH starts is tried again
        (:data:`CONNECT_DELAYS`): nothing ran yet. Commands are never retried. Once a
        host could not be reached after those attempts, later steps of the same deploy
        (switching back, unlocking, flushing) try it once: a host lost mid-deploy is
        named in seconds, not after every step waited the delays again.
        """
        if self.is_local or self.runner.is_connected:  # type: ignore[attr-defined]
            return
        conn: Connection = self.runner  # type: ignore[assignment]
        if not self._guarded:
            hostkeys.guard(conn, self.host_keys)
            self._guarded = True
        for delay in (*(() if self._lost else CONNECT_DELAYS), None):
            try:
                conn.open()
                conn.transport.set_keepalive(KEEPALIVE)
                self._lost = False
                break
            except paramiko.BadHostKeyException as exc:
                raise StepFailed(self.name, "connect", f"ssh {self.key}", None,
                                 hostkeys.describe_changed(conn.host, exc)) from exc
            except Exception as exc:  # paramiko raises many types; all mean "cannot reach"
                if delay is None or not _transient(exc):
                    self._lost = self._lost or delay is None  # all attempts failed
                    raise StepFailed(self.name, "connect", f"ssh {self.key}", None,
                                     f"{type(exc).__name__}: {exc}") from exc
                conn.close()
                time.sleep(delay)
        sock = getattr(conn.transport, "sock", None)
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self) -> None:
        if not self.is_local:
            self.runner.close()  # type: ignore[attr-defined]

    def step(self, step: Step, *, warn: bool = False, echo: bool | None = None,
             timeout: int | None = None) -> Result:
        """Run one planned :class:`Step` (its stdin included)."""
        return self.run(step.command, step=step.name, warn=warn, echo=echo, stdin=step.stdin,
                        timeout=timeout)

    def run(self, command: str, *, step: str = "run", warn: bool = False,
            echo: bool | None = None, stdin: str = "", timeout: int | None = None) -> Result:
        """Run ``command`` in a shell on the host; raise :class:`StepFailed` unless ``warn``.

        ``stdin`` is the command's input (never echoed); without it the command gets none.
        ``timeout`` (default :attr:`timeout`) is enforced on the host by coreutils
        ``timeout``, which kills the command's whole process group there: closing our end
        of an SSH channel would leave a hung ``composer`` running. A timeout is a failure
        even with ``warn``.
        """
        if threading.current_thread() is threading.main_thread():  # see in_threads()
            call = functools.partial(self.run, command, step=step, warn=warn, echo=echo,
                                     stdin=stdin, timeout=timeout)
            return in_threads([self], {self.name: call})[self.name].result()
        self.open()  # never let Fabric open lazily: it would skip the host key check
        if self.verbose:
            say(f"[{self.name}] $ {command}")
        limit = timeout or self.timeout
        show = self.echo if echo is None else echo
        out = _LinePrefixer(f"[{self.name}] ", sys.stdout) if show else None
        err = _LinePrefixer(f"[{self.name}] ", sys.stderr) if show else None
        started = time.monotonic()
        try:
            result = self.runner.run(
                _bounded(command, limit), warn=True, hide=True,
                in_stream=_WholeInput(stdin) if stdin else False,
                out_stream=out, err_stream=err, timeout=limit + 60,
            )
        except Exception as exc:  # SSH dropped, channel closed, our own backstop timeout
            problem = f"{type(exc).__name__}: {exc}"
            raise StepFailed(self.name, step, command, None, problem) from exc
        finally:
            for stream in (out, err):
                if stream:
                    stream.flush()
        self._judge(step, command, result.exited, result.stdout + result.stderr,
                    time.monotonic() - started, limit, warn)
        return result

    def _judge(self, step: str, command: str, exited: int, output: str, took: float,
               limit: int, warn: bool) -> None:
        """Raise :class:`StepFailed` for a lost outcome, a timeout (even with ``warn``) or,
        unless ``warn``, a failure: one verdict for every way a command is sent."""
        if exited == NO_EXIT_STATUS:  # paramiko: channel closed without an exit status
            raise StepFailed(self.name, step, command, None,
                             f"{output}\nno exit status: the connection was lost or the "
                             "command was killed; its outcome is unknown")
        if exited in (TIMED_OUT, TIMED_OUT_KILLED) and took >= limit:
            raise StepFailed(self.name, step, command, exited,
                             f"{output}\ntimed out after {limit} s and was stopped "
                             "(DEPLOY_TIMEOUT_* sets the limits)", timed_out=True)
        if exited != 0 and not warn:
            raise StepFailed(self.name, step, command, exited, output)

    def run_together(self, command: str, barrier: threading.Barrier, *, step: str,
                     timeout: int | None = None) -> Result | SimpleResult:
        """Run ``command`` at the same moment as the other hosts waiting on ``barrier``.

        Everything that takes time is done first (connection, SSH channel opened: a round
        trip); at the barrier only the exec request remains to be sent, so the commands of
        several hosts start within a few milliseconds of each other (the switch). Called
        from worker threads (:func:`on_all`); raises :class:`StepFailed` naming the host,
        also when another host could not get ready (then nothing was sent from here).
        A local host runs it with :meth:`run` after the barrier.
        """
        if self.is_local:
            barrier.wait()
            return self.run(command, step=step, echo=False, timeout=timeout)
        limit = timeout or self.timeout
        if self.verbose:
            say(f"[{self.name}] $ {command}")
        try:
            self.open()
            channel = self.runner.transport.open_session(timeout=limit)  # type: ignore[attr-defined]
        except Exception as exc:
            barrier.abort()
            raise StepFailed(self.name, step, command, None, f"{type(exc).__name__}: {exc}") \
                from exc
        try:
            try:
                barrier.wait(timeout=limit)
            except threading.BrokenBarrierError as exc:
                raise StepFailed(self.name, step, command, None, "not sent: another host could "
                                 "not get ready for it at the same time") from exc
            return self._exec(channel, command, step, limit)
        finally:
            channel.close()

    def _exec(self, channel: paramiko.Channel, command: str, step: str,
              limit: int) -> SimpleResult:
        """Run ``command`` on an open channel; the result or :class:`StepFailed`."""
        started = time.monotonic()
        try:
            channel.settimeout(limit + 60)
            channel.exec_command(_bounded(command, limit))
            out = channel.makefile("r").read().decode(errors="replace")
            err = channel.makefile_stderr("r").read().decode(errors="replace")
            exited = channel.recv_exit_status()
        except Exception as exc:  # the connection dropped: the outcome is unknown
            raise StepFailed(self.name, step, command, None,
                             f"{type(exc).__name__}: {exc}") from exc
        self._judge(step, command, exited, out + err, time.monotonic() - started, limit,
                    warn=False)
        return SimpleResult(out, err, exited)

    def test(self, command: str) -> bool:
        """True when ``command`` exits 0 (a question, never an error)."""
        return self.run(command, step="check", warn=True, echo=False).ok

    def output(self, command: str, *, step: str = "run") -> str:
        """Stripped stdout of a command that must succeed."""
        return self.run(command, step=step, echo=False).stdout.strip()

    def __repr__(self) -> str:
        return f"Host({self.name!r})"


def _bounded(command: str, limit: int) -> str:
    """``command`` under coreutils ``timeout`` on the host (see :meth:`Host.run`)."""
    return f'timeout -k 30 {limit} "${{SHELL:-sh}}" -c {q(command)}'


class SimpleResult:
    """What :meth:`Host.run_together` returns: like Invoke's Result, the parts we read."""

    def __init__(self, stdout: str, stderr: str, exited: int):
        self.stdout, self.stderr, self.exited = stdout, stderr, exited
        self.ok, self.failed = exited == 0, exited != 0


class _WholeInput(io.StringIO):
    """A command's input handed over in one piece: Invoke reads a stream that is not a
    terminal one character per ``input_sleep`` (10 ms), so 3 KB took 30 s."""

    def read(self, size: int | None = -1) -> str:
        return super().read()


def _transient(exc: Exception) -> bool:
    """Worth another try: refused, timed out, reset, or sshd dropped us before the banner
    (``MaxStartups``). Never authentication or host key problems: those do not pass."""
    if isinstance(exc, (paramiko.AuthenticationException, hostkeys.HostKeyRefused)):
        return False
    if isinstance(exc, paramiko.SSHException):
        return "banner" in str(exc).lower()
    return isinstance(exc, (OSError, EOFError))


class DuplicateHost(SettingsError):
    """The same host (user@host:port) was given twice."""


def distinct(hosts: Iterable[Host], settings: Settings) -> list[Host]:
    """The hosts of one operation, each once, each with a name no other host has.

    The same ``user@host:port`` twice is refused (it would be built, locked and switched
    twice). Different hosts that share a short name (``deploy@lb:2201`` and
    ``deploy@lb:2202`` are both ``lb``) are named by their full identity instead.
    Every host gets the settings' host key mode and timeout (:meth:`Host.configure`).
    """
    hosts = [host.configure(settings) for host in hosts]
    keys = [h.key for h in hosts]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise DuplicateHost(f"host given more than once: {', '.join(repeated)}")
    names = [h.name for h in hosts]
    for host in hosts:
        if names.count(host.name) > 1:
            host.name = host.key
    return hosts


def on_all(hosts: Iterable[Host], fn: Callable[[Host], T]) -> dict[str, T | BaseException]:
    """Run ``fn(host)`` on every host at once; return each host's result or exception.

    Returns only when every host finished: callers decide what a partial failure
    means (for a deploy: nobody switches). Results are keyed by host name, so two
    hosts with one name are refused rather than one result hiding the other.
    """
    hosts = list(hosts)
    names = [h.name for h in hosts]
    if len(set(names)) < len(names):
        raise DuplicateHost(f"two hosts share a name in {names}: use hosts.distinct()")
    futures = in_threads(hosts, {host.name: (lambda h=host: fn(h)) for host in hosts})
    return {name: future.exception() or future.result() for name, future in futures.items()}


def in_threads(hosts: list[Host], calls: dict[str, Callable[[], T]]) -> dict[str, Future[T]]:
    """Run ``calls`` in worker threads while this thread only waits; return when all end.

    Why threads even for one call: Invoke swallows a KeyboardInterrupt that arrives while
    it waits for a command (it forwards it to the remote end, which ignores it without a
    pty). Here the interrupt reaches the waiting thread instead, which closes the hosts'
    connections so their commands end now, and re-raises it. Signal handlers therefore
    only have to raise; they never touch a connection themselves.
    """
    pool = ThreadPoolExecutor(max_workers=max(1, len(calls)))
    futures = {name: pool.submit(call) for name, call in calls.items()}
    try:
        # Short waits, not one long one: a signal that arrives while a worker starts a
        # thread can be left to the main thread's restarted futex wait, and CPython runs
        # the handler only when this thread next runs bytecode.
        while wait(futures.values(), timeout=SIGNAL_CHECK).not_done:
            pass
    except BaseException:
        for host in hosts:
            host.close()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return futures


def failures(results: dict[str, T | BaseException]) -> dict[str, BaseException]:
    """The hosts whose :func:`on_all` result is an exception."""
    return {name: r for name, r in results.items() if isinstance(r, BaseException)}
