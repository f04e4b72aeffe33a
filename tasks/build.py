"""The slow part of a deploy, done in the new release while the live one keeps serving.

Order matters: ``composer install`` brings the code; ``setup:di:compile`` generates
classes into ``generated/``; ``composer dump-autoload -o`` runs after it so those
generated classes land in the optimized class map; static content last, with one
``--content-version`` derived from the release id, so every host serves identical
``/static/version<N>/`` URLs.
"""

from __future__ import annotations

from .hosts import q
from .plan import Step
from .settings import ADMIN_THEME, AREAS, NO_THEME, Settings, by_area


def in_release(settings: Settings, release: str, command: str) -> str:
    """``cd`` into the release first; ``DEPLOY_PHP``/``DEPLOY_COMPOSER`` are used verbatim."""
    return f"cd {q(settings.release_dir(release))} && {command}"


def magento(settings: Settings, release: str, *args: str) -> str:
    """``bin/magento`` in a release, every argument quoted, never interactive."""
    argv = " ".join(q(a) for a in args)
    return in_release(settings, release, f"{settings.php} bin/magento {argv} --no-interaction")


def static_version(release: str) -> str:
    """The ``--content-version`` of a release: its id without the dots (digits only).

    Magento accepts letters, digits and dots, but its own ``nginx.conf.sample`` strips the
    URL signature with ``version\\d*/``: any other character and every versioned CSS/JS
    URL falls through to ``static.php``, which answers 404 in production mode.
    """
    return release.replace(".", "")


def static_runs(settings: Settings) -> list[list[str]]:
    """Options and locales of each ``setup:static-content:deploy`` run, one run per area.

    Without ``DEPLOY_THEMES`` and per-area locales: one run, every theme (Magento's
    default). Otherwise each area gets its own run, because ``--theme`` filters every
    area: ``--theme=Hyva/default`` alone would leave the admin without its theme. The
    admin gets ``Magento/backend`` unless ``DEPLOY_THEMES`` names another (or ``none``).
    """
    themes = by_area(settings.themes, "DEPLOY_THEMES")
    locales = by_area(settings.locales, "DEPLOY_LOCALES")
    if not settings.themes and set(locales) == {""}:
        return [list(settings.locales)]
    runs = []
    for area in AREAS:
        chosen = themes.get(area, ()) + (themes.get("", ()) if area == "frontend" else ())
        if area == "adminhtml" and settings.themes and not chosen:
            chosen = (ADMIN_THEME,)
        if NO_THEME in chosen:
            continue
        runs.append([f"--area={area}", *(f"--theme={t}" for t in chosen),
                     *locales.get(area, locales[""])])
    return runs


def static_content(settings: Settings, release: str) -> list[Step]:
    """One step per static content run, all with the same content version."""
    common = ["setup:static-content:deploy", "-f", f"--content-version={static_version(release)}"]
    if settings.static_jobs:
        common.append(f"--jobs={settings.static_jobs}")
    common += settings.static_args
    runs = static_runs(settings)
    return [Step("static content" + (f" {run[0].split('=')[1]}" if len(runs) > 1 else ""),
                 magento(settings, release, *common, *run)) for run in runs]


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
        *static_content(settings, release),
    ]


def verify(settings: Settings, release: str) -> Step:
    """Print what a finished build must have: commit, compiled DI, static version."""
    rel = q(settings.release_dir(release))
    return Step(
        "verify build",
        f"cat {rel}/REVISION && test -d {rel}/generated/metadata"
        f" && test -f {rel}/vendor/autoload.php && cat {rel}/pub/static/deployed_version.txt",
    )
