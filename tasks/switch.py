"""The moment a release goes live: ``current`` replaced atomically.

A temporary symlink is renamed over ``current`` (``mv -T`` = ``rename(2)``), so there
is never an instant without ``current``; ``ln -sfn`` alone unlinks then links.
The link is relative (``releases/<id>``) so the tree can be moved or bind-mounted.
"""

from __future__ import annotations

from .hosts import Host, q
from .plan import Step
from .settings import Settings


def switch(settings: Settings, release: str) -> Step:
    tmp = q(f"{settings.deploy_path}/.current-{release}.tmp")
    return Step(
        "switch",
        f"test -d {q(settings.release_dir(release))}"
        f" && ln -sfn {q('releases/' + release)} {tmp} && mv -Tf {tmp} {q(settings.current)}",
    )


def point_current(host: Host, settings: Settings, release: str) -> None:
    """Make ``current`` point at ``release`` on ``host``."""
    step = switch(settings, release)
    host.step(step, echo=False)


def check_current_is_link(host: Host, settings: Settings) -> None:
    """``current`` must be a symlink or absent; a real directory would be replaced wholesale."""
    if host.test(real_dir_test(settings)):
        raise RuntimeError(real_dir_refusal(host.name, settings))


def real_dir_test(settings: Settings) -> str:
    """Exits 0 when ``current`` is a real directory (or file), not a symlink."""
    cur = q(settings.current)
    return f"test -e {cur} && ! test -L {cur}"


def real_dir_refusal(host: str, settings: Settings) -> str:
    return (f"[{host}] {settings.current} is a real directory, not a symlink: move it into "
            f"{settings.releases_dir}/ and link it, or deploy to another DEPLOY_PATH")
