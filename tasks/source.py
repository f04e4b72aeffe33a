"""Getting the code into a new release folder: mirror, archive, shared links.

The host keeps a bare mirror of ``DEPLOY_REPO`` (``repo.git``) and only fetches into it,
so a release costs one ``git archive`` of the wanted commit, not a clone.
"""

from __future__ import annotations

import posixpath

from .batch import new_token
from .hosts import Host, q
from .plan import Step
from .redact import split
from .settings import Settings


def with_credentials(settings: Settings, name: str, command: str) -> Step:
    """A step whose git commands may use the credentials of an http(s) ``DEPLOY_REPO``.

    They are not part of the URL git stores or of any argument: they arrive on stdin,
    read first thing (so the channel is never closed under them), and reach git as an
    ``http.extraHeader`` through ``GIT_CONFIG_*`` variables of this one shell.
    """
    header = split(settings.repo)[1]
    if not header:
        return Step(name, command)
    return Step(name, "IFS= read -r h && export GIT_CONFIG_COUNT=1"
                ' GIT_CONFIG_KEY_0=http.extraHeader GIT_CONFIG_VALUE_0="Authorization: $h"'
                f" && {{ {command}; }}", header + "\n")


def fetch_mirror(settings: Settings) -> str:
    """Clone the mirror the first time, fetch (pruning deleted refs) afterwards."""
    mirror, repo = q(settings.mirror), q(split(settings.repo)[0])
    return (f"if [ -d {mirror} ]; then git -C {mirror} remote set-url origin {repo}"
            f" && git -C {mirror} fetch --prune --quiet origin;"
            f" else git clone --mirror --quiet {repo} {mirror}; fi")


def update_mirror(settings: Settings) -> Step:
    return with_credentials(settings, "fetch code", fetch_mirror(settings))


def resolve_ref(settings: Settings, ref: str) -> Step:
    """Branch, tag or commit -> full commit id (what every host then checks out)."""
    return Step("resolve ref",
                f"git -C {q(settings.mirror)} rev-parse --verify --quiet {q(ref + '^{commit}')}")


def resolve_commit(host: Host, settings: Settings, ref: str) -> str:
    """Update the mirror on ``host`` and return the commit ``ref`` names there, in one
    round trip (the fetch fails as the step ``fetch code``; a ref that names nothing is a
    :class:`LookupError`)."""
    mark = f"@@resolved {new_token()}"
    resolve = resolve_ref(settings, ref).command
    step = with_credentials(settings, "fetch code", f"{fetch_mirror(settings)} && {{ printf"
                                                    f" '\\n%s\\n' {q(mark)}; {resolve}; true; }}")
    out = host.step(step, echo=False).stdout
    commit = out.partition(f"{mark}\n")[2].strip()
    if not commit:
        raise LookupError(f"[{host.name}] DEPLOY_BRANCH={ref!r} names no branch, tag or commit"
                          f" in {split(settings.repo)[0]}")
    return commit


def checkout(settings: Settings, release: str, commit: str) -> list[Step]:
    """Create the release folder and unpack ``commit`` into it: one round trip (a host
    whose mirror lacks the commit fetches once more first)."""
    rel, mirror = q(settings.release_dir(release)), q(settings.mirror)
    return [with_credentials(
        settings, "checkout",
        f"{{ git -C {mirror} cat-file -e {q(commit + '^{commit}')} 2>/dev/null"
        f" || {{ {fetch_mirror(settings)}; }}; }}"
        f" && mkdir -p {q(settings.releases_dir)} {q(settings.shared_dir)} && mkdir {rel}"
        f" && git -C {mirror} archive --format=tar {q(commit)} | tar -x -f - -C {rel}"
        f" && printf '%s\\n' {q(commit)} > {rel}/REVISION")]


def guard(settings: Settings, release: str, path: str) -> str:
    """Shell test that stops the linking of ``path`` before it removes anything it must not.

    Where ``path``'s parent resolves (through links already made) into ``shared/`` or
    out of the release, the ``rm -rf`` that replaces it with a link would delete shared
    data: refuse, naming the path. Settings validation already refuses nested entries;
    this also covers links the checkout itself brings.
    """
    rel = q(settings.release_dir(release))
    parent = q(posixpath.dirname(posixpath.join(settings.release_dir(release), path)))
    why = (q(f"refusing to link {path}: its parent resolves to"), '"$p"',
           q("(under shared/ or outside the release), so shared data would be deleted"))
    return (
        f"r=$(realpath -e {rel}) && s=$(realpath -m {q(settings.shared_dir)})"
        f" && p=$(realpath -m {parent}) && case \"$p/\" in \"$s\"/*) false;;"
        f" \"$r\"/*) true;; *) false;; esac || {{ printf '%s %s %s\\n' {' '.join(why)} >&2;"
        " exit 3; }"
    )


def link_shared_dir(settings: Settings, release: str, path: str) -> str:
    """Link ``shared/<path>`` into the release; never lose files the checkout brought.

    A first deploy seeds ``shared/`` from the checkout. Later, files the checkout has in
    that directory are merged into shared without overwriting it, and we say so.
    """
    shared = q(posixpath.join(settings.shared_dir, path))
    target = q(posixpath.join(settings.release_dir(release), path))
    note = f"note: {path} from the release merged into shared/{path} (shared files kept)"
    return (
        f"{guard(settings, release, path)} && if [ -d {target} ] && [ ! -L {target} ]; then"
        f" if [ ! -e {shared} ]; then mkdir -p \"$(dirname {shared})\" && mv {target} {shared};"
        f" elif [ -n \"$(ls -A {target})\" ]; then cp -an {target}/. {shared}/ && rm -rf {target}"
        f" && echo {q(note)};"
        f" else rmdir {target}; fi; fi"
        f" && mkdir -p {shared} \"$(dirname {target})\""
        f" && rm -rf {target} && ln -s {shared} {target}"
    )


def link_shared_file(settings: Settings, release: str, path: str) -> str:
    """Link ``shared/<path>``; seed it from the checkout, else create it empty."""
    shared = q(posixpath.join(settings.shared_dir, path))
    target = q(posixpath.join(settings.release_dir(release), path))
    return (
        f"{guard(settings, release, path)} && mkdir -p \"$(dirname {shared})\""
        f" \"$(dirname {target})\" && if [ ! -e {shared} ]; then"
        f" if [ -f {target} ] && [ ! -L {target} ]; then cp -p {target} {shared};"
        f" else touch {shared}"
        f" && echo {q(f'warning: shared/{path} did not exist, created it empty')}; fi; fi"
        f" && rm -rf {target} && ln -s {shared} {target}"
    )


def link_shared(settings: Settings, release: str) -> Step:
    """One step for all shared links (one SSH round trip)."""
    parts = [link_shared_dir(settings, release, d) for d in settings.shared_dirs]
    parts += [link_shared_file(settings, release, f) for f in settings.shared_files]
    return Step("link shared", " && ".join(f"( {p} )" for p in parts) or "true")
