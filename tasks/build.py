"""The slow part of a deploy, done in the new release while the live one keeps serving.

Order matters: ``composer install`` brings the code; ``setup:di:compile`` generates
classes into ``generated/``; ``composer dump-autoload -o`` runs after it so those
generated classes land in the optimized class map; static content last, with the release
id as ``--content-version`` so every host serves identical ``/static/version<id>/`` URLs.
"""

from __future__ import annotations

from .hosts import q
from .plan import Step
from .settings import Settings


def in_release(settings: Settings, release: str, command: str) -> str:
    """``cd`` into the release first; ``DEPLOY_PHP``/``DEPLOY_COMPOSER`` are used verbatim."""
    return f"cd {q(settings.release_dir(release))} && {command}"


def magento(settings: Settings, release: str, *args: str) -> str:
    """``bin/magento`` in a release, every argument quoted, never interactive."""
    argv = " ".join(q(a) for a in args)
    return in_release(settings, release, f"{settings.php} bin/magento {argv} --no-interaction")


def static_content_args(settings: Settings, release: str) -> list[str]:
    args = ["setup:static-content:deploy", "-f", f"--content-version={release}"]
    if settings.static_jobs:
        args.append(f"--jobs={settings.static_jobs}")
    for theme in settings.themes:
        args.append(f"--theme={theme}")
    return args + list(settings.locales)


def build(settings: Settings, release: str) -> list[Step]:
    """The build plan of one release (same on every host)."""
    composer = settings.composer
    return [
        Step("composer install", in_release(
            settings, release,
            f"{composer} install --no-dev --prefer-dist --no-interaction --no-progress")),
        Step("di:compile", magento(settings, release, "setup:di:compile")),
        Step("dump-autoload", in_release(
            settings, release, f"{composer} dump-autoload -o --no-dev --no-interaction")),
        Step("static content", magento(settings, release, *static_content_args(settings, release))),
    ]


def verify(settings: Settings, release: str) -> Step:
    """Print what a finished build must have: commit, compiled DI, static version."""
    rel = q(settings.release_dir(release))
    return Step(
        "verify build",
        f"cat {rel}/REVISION && test -d {rel}/generated/metadata"
        f" && test -f {rel}/vendor/autoload.php && cat {rel}/pub/static/deployed_version.txt",
    )
