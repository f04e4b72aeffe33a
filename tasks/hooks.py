"""A shop's own steps at named points of a deploy (a Hyvä build, a Varnish purge, a smoke
test, a chat message), without copying the deploy.

Two ways, run in this order at each point:

* settings: ``DEPLOY_HOOK_<POINT>`` (e.g. ``DEPLOY_HOOK_BEFORE_STATIC_CONTENT="npm ci &&
  npm run build"``), a shell command run in the new release folder on every host at once,
  or on the primary only when it starts with ``primary:``;
* Python: ``@hook("after_switch")`` functions in a fabfile, or ``hooks={...}`` given to
  ``deploy_to``; each gets a :class:`HookContext`.

Points during the build (``after_code``, ``before_static_content``, ``after_build``) run
per host, inside that host's build; the others once for the deploy. A hook that fails
before the switch stops the deploy like a failed build (nobody switches); after the
switch it makes the deploy fail with the release live; ``on_failure`` hooks are told
about a failed deploy and cannot hide it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .hosts import Host, failures, on_all, q
from .redact import redact
from .settings import HOOK_POINTS as POINTS
from .settings import Settings

PER_HOST = ("after_code", "before_static_content", "after_build")
PRIMARY = "primary:"


@dataclass
class HookContext:
    """What a Python hook gets: where it runs and what is being deployed."""

    point: str
    hosts: list[Host]
    release: str
    settings: Settings
    primary: Host
    error: BaseException | None = None  # on_failure: what stopped the deploy

    def run(self, command: str, *, hosts: Iterable[Host] | None = None) -> None:
        """Run ``command`` in the release folder on ``hosts`` (default: all) at once."""
        run_command(list(hosts or self.hosts), self.settings, self.release, command,
                    f"hook {self.point}")


Hook = Callable[[HookContext], None]
_registered: dict[str, list[Hook]] = {point: [] for point in POINTS}


class HookFailed(RuntimeError):
    """A hook failed; the message names the point, the host, the command and the output,
    with every credential masked (a hook's ``curl https://user:TOKEN@...``, the value of
    a variable named in ``DEPLOY_SECRETS``): it is printed, and written to the failed
    release's record on every host."""

    def __init__(self, message: str):
        super().__init__(redact(message))


def hook(point: str) -> Callable[[Hook], Hook]:
    """Decorator: run the function at ``point`` of every deploy of this process."""
    check(point)

    def register(fn: Hook) -> Hook:
        _registered[point].append(fn)
        return fn
    return register


def check(point: str) -> None:
    if point not in POINTS:
        raise ValueError(f"unknown hook point {point!r}: use one of {', '.join(POINTS)}")


@dataclass
class Hooks:
    """The hooks of one deploy: the settings' commands, registered and given functions."""

    settings: Settings
    given: dict[str, list[Hook]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for point in self.given:
            check(point)

    def command(self, point: str) -> tuple[bool, str]:
        """``(primary only, shell command)`` of ``DEPLOY_HOOK_<POINT>``; "" when unset."""
        value = self.settings.hooks.get(point, "")
        if value.startswith(PRIMARY):
            return True, value[len(PRIMARY):].strip()
        return False, value

    def functions(self, point: str) -> list[Hook]:
        return _registered[point] + self.given.get(point, [])

    def run(self, ctx: HookContext) -> None:
        """Run the command, then the functions, of ``ctx.point``; raise :class:`HookFailed`."""
        primary_only, command = self.command(ctx.point)
        if command:
            targets = [h for h in ctx.hosts if not primary_only or h is ctx.primary]
            run_command(targets, ctx.settings, ctx.release, command, f"hook {ctx.point}")
        for fn in self.functions(ctx.point):
            try:
                fn(ctx)
            except HookFailed:
                raise
            except Exception as exc:
                raise HookFailed(f"hook {ctx.point} ({fn.__module__}.{fn.__qualname__}) "
                                 f"failed: {type(exc).__name__}: {exc}") from exc


def run_command(hosts: list[Host], settings: Settings, release: str, command: str,
                step: str) -> None:
    """``command`` in the release folder on ``hosts`` in parallel; all must succeed."""
    folder = q(settings.release_dir(release))
    errors = failures(on_all(hosts, lambda h: h.run(f"cd {folder} && {command}", step=step,
                                                   timeout=settings.timeout_build)))
    if errors:
        raise HookFailed("\n".join(str(e) for e in errors.values()))
