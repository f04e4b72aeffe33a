"""Check a built release on every host before any host switches to it.

A release can be built "successfully" and still be broken where it matters: an
autoloader that does not load, ``env.php`` of a host in developer mode, a
``generated/`` that differs between hosts (one host compiled another commit, a copy was
cut short), a static version that differs (hosts would link different ``/static/``
URLs), an FPM pool that cannot run the new code (the database unreachable from it, an
``open_basedir`` that excludes the new folder). Each of these is found here while every
host still serves the old release; any failure means nobody switches.

Per host, ONE command (one SSH round trip) runs every check inside the new release
(``settings.release_dir(release)``, never through ``current``) and prints each check's
output between markers carrying a random token, so no output can fake a marker:

``boot``
    the autoloader and the application start: ``deploy:mode:show`` (below) ran, or else
    ``bin/magento --version`` says why it cannot (one boot when all is well, not two).
``mode``
    ``bin/magento deploy:mode:show`` says ``Current application mode: production.``
    (Magento's ``ShowModeCommand`` wording).
``generated``
    ``generated/code`` and ``generated/metadata`` exist (metadata not empty: that is
    what ``setup:di:compile`` writes); their digest is sha256 over the sorted list of
    ``sha256sum`` lines (path + content hash).
``static version``
    ``pub/static/deployed_version.txt`` exists and is not empty.
``fastcgi``
    one FastCGI GET, sent from the host by its own PHP CLI (``tasks/php/fcgi_request.php``)
    to the host's PHP-FPM socket (``DEPLOY_FPM_SOCKET``, else the one socket found where
    distributions put them), executing ``<release>/pub/health_check.php`` (Magento's own:
    database and cache reachable) with ``DOCUMENT_ROOT`` ``<release>/pub``. 200 passes
    (for Magento's health check only with an empty body: it prints nothing when healthy);
    anything else reports the status line and the start of the body. No file is written.

Then across hosts: the ``generated`` digests and the static versions must be identical
(``generated identical``, ``static version identical``); the hosts that differ from the
majority are named (all of them when there is no majority).
"""

from __future__ import annotations

import json
import posixpath
import re
import secrets
from collections import Counter
from dataclasses import dataclass

from .batch import section as _section
from .batch import sections
from .hosts import Host, StepFailed, on_all, q
from .opcache import SOCKET_GLOBS, TIMEOUT, _connect_problem, fastcgi_client
from .settings import Settings, SettingsError

CLIENT = fastcgi_client("fcgi_request.php")

#: The per-host checks in the order they run, with the names reports use.
CHECKS = {"boot": "boot", "mode": "mode", "generated": "generated",
          "static": "static version", "fastcgi": "fastcgi"}
SAME_GENERATED, SAME_STATIC = "generated identical", "static version identical"
RELEASE, RUN = "release", "verify"
DEFAULT_PATH = "pub/health_check.php"
MAX_BODY = 300  # bytes of the answer's body (and of FPM's stderr) kept in a detail
BOOTED = "bin/magento boots (deploy:mode:show ran)"
_MODE = re.compile(r"Current application mode: (\w+)\.")
_GENERATED = ("generated/code", "generated/metadata")


@dataclass(frozen=True)
class Check:
    """One check's outcome on one host; ``detail`` says what was seen (and why it failed)."""

    host: str
    name: str
    ok: bool
    detail: str = ""

    def line(self) -> str:
        return f"[{self.host}] {self.name}: {'ok' if self.ok else 'FAILED'} {self.detail}".rstrip()


class VerificationFailed(RuntimeError):
    """A release failed verification on some host: nobody may switch to it.

    ``str()`` has one line per failed check naming the host and the check; ``checks``
    holds every result (passed ones too).
    """

    def __init__(self, release: str, checks: list[Check]):
        self.release, self.checks = release, checks
        failed = [c for c in checks if not c.ok]
        hosts = sorted({c.host for c in failed})
        lines = [f"release {release} failed verification on {', '.join(hosts)}: "
                 "no host switches to it"]
        lines += [f"[{c.host}] {c.name}: {c.detail}" for c in failed]
        super().__init__("\n".join(lines))


# --------------------------------------------------------------------------- planning


def check_path(path: str) -> str:
    """The script FPM runs, relative to the release: a ``.php`` file inside it."""
    norm = posixpath.normpath(path)
    if (not path or path.startswith("/") or norm.startswith("..") or not norm.endswith(".php")
            or re.search(r"[\x00-\x1f]", path)):
        raise SettingsError(f"DEPLOY_VERIFY_PATH={path!r}: must be a .php file inside the "
                            "release, e.g. pub/health_check.php")
    return norm


def fcgi_job(settings: Settings, release: str, path: str = DEFAULT_PATH) -> dict:
    """What the host-side FastCGI client needs: sockets (or where to look), the script."""
    root = settings.release_dir(release)
    rel = check_path(path)
    script_name = "/" + (rel[len("pub/"):] if rel.startswith("pub/") else rel)
    return {"sockets": list(settings.fpm_sockets), "globs": list(SOCKET_GLOBS),
            "script": f"{root}/{rel}", "document_root": f"{root}/pub",
            "script_name": script_name, "timeout": TIMEOUT, "max_body": MAX_BODY,
            "silent": rel == DEFAULT_PATH}


def generated_digest_command() -> str:
    """Prints ``<sha256> <files>`` of generated/code + generated/metadata, or why not."""
    dirs = " ".join(_GENERATED)
    return (f"for d in {dirs}; do [ -d \"$d\" ] || {{ echo \"$d is missing\"; exit 1; }}; done; "
            "[ -n \"$(ls -A generated/metadata)\" ] || { echo 'generated/metadata is empty: "
            "setup:di:compile did not run'; exit 1; }; "
            f"n=$(find {dirs} -type f | wc -l); "
            f"d=$(find {dirs} -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum"
            " | sha256sum | cut -d' ' -f1) && echo \"$d $n\"")


def command(settings: Settings, release: str, token: str, *, path: str = DEFAULT_PATH,
            extra: dict[str, str] | None = None) -> str:
    """The one shell command that runs every check of :data:`CHECKS` on a host.

    The FastCGI request is always tried (``fcgi=False`` only changes how a missing socket
    is judged, see :func:`fastcgi_checks`), so an operator sees what the pool answers.
    ``mode`` runs first: when ``deploy:mode:show`` ran, bin/magento booted, and ``boot``
    does not pay a second boot (``--version`` runs only to say why it could not).
    ``extra``: more sections (``{name: command}``, run in the release) for the same round
    trip, e.g. the deploy's build check and database status (:func:`verify_asking`).
    """
    root = q(settings.release_dir(release))
    php = settings.php  # verbatim, like every bin/magento call (it may carry -d options)
    magento = f"{php} bin/magento"
    job = q(json.dumps(fcgi_job(settings, release, path or DEFAULT_PATH)))
    client = (f"{php} -d display_errors=stderr -- {job} <<'VERIFY_FCGI_EOF'\n{CLIENT}\n"
              "VERIFY_FCGI_EOF")
    bodies = {
        "mode": f"{magento} deploy:mode:show --no-interaction",
        "boot": f"if [ \"$rc\" = 0 ]; then echo {q(BOOTED)}; else {magento} --version"
                " --no-interaction; fi",
        "generated": generated_digest_command(),
        "static": "cat pub/static/deployed_version.txt",
        "fastcgi": client,
    }
    if not path:  # DEPLOY_VERIFY_PATH=none: no request through PHP-FPM
        del bodies["fastcgi"]
    bodies.update(extra or {})
    missing = (f"printf '\\n@@%s begin {RELEASE}\\n%s\\n@@%s end {RELEASE} 1\\n' {token} "
               f"{q('no such folder: ' + settings.release_dir(release))} {token}; exit 0")
    return (f"cd {root} 2>/dev/null || {{ {missing}; }}\n"
            + "".join(_section(token, name, body) for name, body in bodies.items()))


# --------------------------------------------------------------------------- parsing


def _tail(text: str, lines: int = 6) -> str:
    kept = text.strip().splitlines()[-lines:]
    return " | ".join(line.strip() for line in kept if line.strip())[:600]


def boot_check(host: str, rc: int, text: str) -> Check:
    if rc == 0 and text:
        return Check(host, CHECKS["boot"], True, text.splitlines()[0])
    return Check(host, CHECKS["boot"], False,
                 f"bin/magento --version failed (exit {rc}): {_tail(text) or 'no output'}")


def mode_check(host: str, rc: int, text: str) -> Check:
    m = _MODE.search(text)
    if rc == 0 and m and m[1] == "production":
        return Check(host, CHECKS["mode"], True, "production")
    if rc == 0 and m:
        return Check(host, CHECKS["mode"], False,
                     f"application mode is {m[1]}, not production (MAGE_MODE in app/etc/env.php;"
                     " bin/magento deploy:mode:set production --skip-compilation)")
    return Check(host, CHECKS["mode"], False,
                 f"bin/magento deploy:mode:show failed (exit {rc}): {_tail(text) or 'no output'}")


def generated_check(host: str, rc: int, text: str) -> Check:
    """Passes with ``detail`` = ``<sha256> (<n> files)``; the digest is compared later."""
    parts = text.split()
    if rc == 0 and len(parts) == 2 and re.fullmatch(r"[0-9a-f]{64}", parts[0]):
        return Check(host, CHECKS["generated"], True, f"{parts[0]} ({parts[1]} files)")
    return Check(host, CHECKS["generated"], False, _tail(text) or f"exit {rc}, no output")


def static_check(host: str, rc: int, text: str) -> Check:
    if rc == 0 and text and len(text.split()) == 1:
        return Check(host, CHECKS["static"], True, text)
    why = "is empty" if rc == 0 else _tail(text) or f"exit {rc}"
    return Check(host, CHECKS["static"], False, f"pub/static/deployed_version.txt {why}: "
                 "setup:static-content:deploy did not finish")


def fastcgi_checks(host: str, rc: int, text: str, job: dict, *, fcgi: bool = True) -> list[Check]:
    """One check per FPM socket from the client's JSON line.

    With ``fcgi=False`` a socket that cannot be found or connected to is reported but is
    not a failure (hosts without FPM); an answer other than 200 always is.
    """
    name, script = CHECKS["fastcgi"], job["script"]
    try:
        out = json.loads(text.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return [Check(host, name, False, f"the PHP client did not run (exit {rc}; DEPLOY_PHP "
                                         f"must be the PHP CLI): {_tail(text) or 'no output'}")]
    if not out.get("responses"):
        found = out.get("found", [])
        where = (f"several PHP-FPM sockets found ({', '.join(found)}): set DEPLOY_FPM_SOCKET"
                 if found else f"no PHP-FPM socket found in {' '.join(job['globs'])}: set "
                 "DEPLOY_FPM_SOCKET")
        return [Check(host, name, not fcgi, f"{script} not requested: {where}")]
    return [_answer_check(host, r, script, fcgi, job.get("silent", False))
            for r in out["responses"]]


def _answer_check(host: str, r: dict, script: str, fcgi: bool, silent: bool) -> Check:
    """``silent``: the script prints nothing when healthy (Magento's health_check.php).

    Then a 200 with a body is a failure too: with ``output_buffering=0`` (PHP's built-in
    default) an error page printed before ``http_response_code(500)`` -- app/bootstrap.php's
    "Autoload error" -- has already sent the headers, and FPM answers 200.
    """
    name, sock = CHECKS["fastcgi"], r.get("socket", "?")
    if "error" in r:
        return Check(host, name, not fcgi, f"{sock}: {_connect_problem(r['error'], 'fcgi')} "
                     f"({r['error']})" + ("" if fcgi else "; not checked (fcgi=False)"))
    status, body, stderr = r.get("status"), r.get("body", ""), r.get("stderr", "")
    if status == 200 and r.get("end") and not (silent and body.strip()):
        return Check(host, name, True, f"{sock}: {script} answered {r.get('status_line')}")
    if status is None:
        why = (f"no answer within {TIMEOUT} s" if r.get("timed_out")
               else "the connection closed without an answer")
        return Check(host, name, False, f"{sock}: {script}: {why}")
    parts = [f"{sock}: {script} answered {r.get('status_line') or status}"]
    if body.strip():
        parts.append(f"body: {_tail(body, 3)}")
    if stderr.strip():
        parts.append(f"stderr: {_tail(stderr, 3)}")
    if status == 404 and "Primary script unknown" in stderr:
        parts.append("PHP-FPM cannot see the file (chroot, another mount namespace, "
                     "permissions)")
    if status == 200 and silent:
        parts.append("it prints nothing when healthy: this is an error page sent before "
                     "PHP could set the status (output_buffering=0)")
    if status == 500 and not body.strip() and not stderr.strip():
        parts.append("see the release's var/log (Magento logs why there)")
    return Check(host, name, False, "; ".join(parts))


def parse(host: str, output: str, token: str, job: dict | None, *,
          fcgi: bool = True) -> list[Check]:
    """Every per-host :class:`Check` from the command's output (missing sections fail)."""
    found = sections(output, token)
    if RELEASE in found:
        return [Check(host, RELEASE, False, found[RELEASE][1])]
    judges = {"boot": boot_check, "mode": mode_check, "generated": generated_check,
              "static": static_check}
    checks: list[Check] = []
    for key, name in CHECKS.items():
        if key == "fastcgi" and job is None:
            continue
        if key not in found:
            checks.append(Check(host, name, False, "no result: the command stopped before this "
                                                    f"check ({_tail(output, 3) or 'no output'})"))
        elif key == "fastcgi":
            checks += fastcgi_checks(host, *found[key], job, fcgi=fcgi)
        else:
            checks.append(judges[key](host, *found[key]))
    return checks


def odd_ones(values: dict[str, str]) -> dict[str, str]:
    """Hosts whose value differs from the majority's, each with a description.

    No strict majority (two hosts that differ, three different values): every host is
    named, with every host's value, since nobody can say which one is right.
    """
    counts = Counter(values.values()).most_common()
    if len(counts) <= 1:
        return {}
    if counts[0][1] > counts[1][1]:
        usual = counts[0][0]
        others = sorted(h for h, v in values.items() if v == usual)
        return {h: f"{v} here, {usual} on {', '.join(others)}"
                for h, v in values.items() if v != usual}
    every = ", ".join(f"{v} on {h}" for h, v in sorted(values.items()))
    return {h: f"hosts disagree: {every}" for h in values}


def compare(checks: list[Check]) -> list[Check]:
    """The cross-host checks: one per host that passed ``generated`` / ``static version``."""
    result = []
    for name, same, key in ((CHECKS["generated"], SAME_GENERATED, lambda d: d.split()[0]),
                            (CHECKS["static"], SAME_STATIC, lambda d: d)):
        values = {c.host: key(c.detail) for c in checks if c.name == name and c.ok}
        odd = odd_ones(values)
        for host in values:
            if host in odd:
                result.append(Check(host, same, False, odd[host]))
            else:
                result.append(Check(host, same, True, "same on every host checked"))
    return result


# --------------------------------------------------------------------------- running


def verify_host(host: Host, settings: Settings, release: str, *, path: str = DEFAULT_PATH,
                fcgi: bool = True) -> list[Check]:
    """Run every check on one host in one command; never raises for a failed check."""
    return verify_asking(host, settings, release, path=path, fcgi=fcgi)[0]


Answers = dict[str, tuple[int, str]]  # section name -> (exit code, output)


def verify_asking(host: Host, settings: Settings, release: str, *, path: str = DEFAULT_PATH,
                  fcgi: bool = True, extra: dict[str, str] | None = None
                  ) -> tuple[list[Check], Answers]:
    """:func:`verify_host` with ``extra`` sections in the same round trip; returns the
    checks and the extra sections' answers (those that ran to the end)."""
    token = secrets.token_hex(8)
    script = command(settings, release, token, path=path, extra=extra)
    try:
        result = host.run(script, step="verify release", warn=True, echo=False)
    except StepFailed as exc:
        return [Check(host.name, RUN, False, str(exc).splitlines()[0]
                      + (f": {_tail(exc.output, 3)}" if exc.output.strip() else ""))], {}
    output = result.stdout + result.stderr
    found = sections(output, token)
    answers = {name: found[name] for name in extra or {} if name in found}
    return parse(host.name, output, token, fcgi_job(settings, release, path) if path else None,
                 fcgi=fcgi), answers


def verify(hosts: list[Host], settings: Settings, release: str, *, path: str = DEFAULT_PATH,
           fcgi: bool = True) -> list[Check]:
    """Verify ``release`` on every host at once, then compare the hosts (see the module
    docstring). Returns every check; :func:`raise_for` turns failures into an error."""
    return verify_all(hosts, settings, release, path=path, fcgi=fcgi)[0]


def verify_all(hosts: list[Host], settings: Settings, release: str, *, path: str = DEFAULT_PATH,
               fcgi: bool = True, extra: dict[str, dict[str, str]] | None = None
               ) -> tuple[list[Check], dict[str, Answers]]:
    """:func:`verify` with each host's ``extra`` sections (by host name) in its round trip;
    also returns their answers by host name."""
    if path:
        check_path(path)
    results = on_all(hosts, lambda h: verify_asking(h, settings, release, path=path, fcgi=fcgi,
                                                    extra=(extra or {}).get(h.name)))
    checks: list[Check] = []
    answers: dict[str, Answers] = {}
    for name, result in results.items():
        if isinstance(result, BaseException):
            checks.append(Check(name, RUN, False, f"{type(result).__name__}: {result}"))
        else:
            checks += result[0]
            answers[name] = result[1]
    return checks + compare(checks), answers


def raise_for(checks: list[Check], release: str = "") -> None:
    """Raise :class:`VerificationFailed` when any check failed (one line per failure)."""
    if any(not c.ok for c in checks):
        raise VerificationFailed(release or "(release)", checks)
