"""``fab check-gitignore``: the shop repository's ``.gitignore`` is part of the deploy.

A deploy unpacks ``git archive`` of a commit into each release, so whatever is tracked
ships: a tracked ``vendor/`` or ``generated/`` fights ``composer install`` and
``setup:di:compile``, a tracked ``app/etc/env.php`` or ``auth.json`` is a leaked secret,
a tracked ``pub/media`` is customer uploads in git. And whatever is ignored does not
ship: an ignored ``composer.lock`` lets every host resolve its own versions, an ignored
``pub/static/.htaccess`` is a file Magento ships and Apache needs.

Git decides every question here (``git check-ignore --no-index``, ``git ls-files``), so
negations, nested ``.gitignore`` files, ``.git/info/exclude`` and ``core.excludesFile``
count exactly as git counts them. The audit and the plan are pure functions of what git
answered; only :func:`gather`, :func:`apply_fix` and the task touch the repository.
"""

from __future__ import annotations

import posixpath
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from invoke import Context, task
from invoke.exceptions import Exit

from .cli import clean_errors
from .hosts import q
from .settings import SettingsError

HEADER = "# Added by `fab check-gitignore`: build output and secrets stay out of git"

# Every .htaccess Magento 2.4 keeps in its own repository (magento/magento2 .gitignore:
# `/pub/static/*` + `!/pub/static/.htaccess` and so on). Tracked, they are not offenders.
SHIPPED_HTACCESS = (
    "pub/static/.htaccess", "pub/media/.htaccess", "var/.htaccess", "generated/.htaccess",
    "vendor/.htaccess", "pub/media/attribute/.htaccess", "pub/media/catalog/.htaccess",
    "pub/media/customer/.htaccess", "pub/media/downloadable/.htaccess",
    "pub/media/import/.htaccess", "pub/media/theme_customization/.htaccess",
    "pub/media/wysiwyg/.htaccess", "pub/media/tmp/.htaccess",
)
# These four must never be ignored, tracked yet or not: Magento ships them in git.
REQUIRED_HTACCESS = SHIPPED_HTACCESS[:4]
# `.env.example` and friends hold no secrets: tracked, they are not offenders.
TEMPLATE_SUFFIXES = (".example", ".sample", ".dist")


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/")


def _node_modules_root(path: str) -> str:
    parts = path.split("/")
    return "/".join(parts[:parts.index("node_modules") + 1]) if "node_modules" in parts else path


@dataclass(frozen=True)
class Rule:
    """Paths that must be ignored AND not tracked.

    ``probes`` are files Magento (or Composer, npm, us) writes there: each must be
    ignored. ``pathspecs`` select the tracked offenders (``git ls-files``); ``root_of``
    maps one to the path ``git rm -r --cached`` should name. ``lines`` are what ``--fix``
    appends when a probe or an offender is not ignored.
    """

    name: str
    why: str
    probes: tuple[str, ...]
    pathspecs: tuple[str, ...]
    lines: tuple[str, ...]
    root: str = ""                     # the directory or file this rule covers, if one
    secret: bool = False               # tracked = leaked: say so
    templates: bool = False            # `.example`/`.sample`/`.dist` files are fine
    root_of: Callable[[str], str] | None = field(default=None, compare=False)

    def removal_root(self, path: str) -> str:
        if self.root_of is not None:
            return self.root_of(path)
        return self.root or path

    def exempt(self, path: str) -> bool:
        """Tracked but fine: a Magento-shipped .htaccess, or a secret-free template."""
        return path in SHIPPED_HTACCESS or (
            self.templates and path.endswith(TEMPLATE_SUFFIXES))


def _dir_rule(root: str, why: str, probes: Iterable[str], keep: bool = True) -> Rule:
    """Magento's own pattern: ``/root/*`` + ``!/root/.htaccess`` (``/root/`` alone would
    ignore the directory, and git cannot re-include a file of an ignored directory)."""
    lines = (f"/{root}/*", f"!/{root}/.htaccess") if keep else (f"/{root}/",)
    return Rule(f"{root}/", why, tuple(f"{root}/{p}" for p in probes),
                (f":(top,literal){root}",), lines, root=root)


RULES: tuple[Rule, ...] = (
    _dir_rule("vendor", "composer install writes it on every host", (
        "autoload.php", "magento/framework/registration.php", "bin/phpunit"), keep=False),
    _dir_rule("generated", "setup:di:compile writes it in every release", (
        "code/Magento/Framework/App/Http/Interceptor.php", "metadata/global.php")),
    _dir_rule("var", "cache, logs, sessions, the maintenance flag", (
        "cache/mage--0/mage---x", "log/system.log", "view_preprocessed/pub/static/x.css",
        ".maintenance.flag", "composer_home/auth.json")),
    _dir_rule("pub/static", "setup:static-content:deploy writes it in every release", (
        "deployed_version.txt", "frontend/Magento/luma/en_US/css/styles-m.css",
        "_cache/merged/x.css")),
    _dir_rule("pub/media", "customer uploads and catalog images: shared between releases", (
        "catalog/product/a/b/ab.jpg", "wysiwyg/banner.jpg", "logo/default/logo.png",
        "customer/a/b/upload.pdf", "import/products.csv", "downloadable/files/x.zip")),
    Rule("app/etc/env.php", "database password, crypt key: per host, never in git",
         ("app/etc/env.php",), (":(top,literal)app/etc/env.php",), ("/app/etc/env.php",),
         root="app/etc/env.php", secret=True),
    Rule("auth.json", "repo.magento.com and private Composer credentials",
         ("auth.json",), (":(top,literal)auth.json",), ("/auth.json",),
         root="auth.json", secret=True),
    Rule(".env files", "DEPLOY_* settings and their credentials (DEPLOY_REPO may hold one)",
         (".env", ".env.production", "deploy/.env"),
         (":(top,glob)**/.env", ":(top,glob)**/.env.*"), (".env", ".env.*"),
         secret=True, templates=True, root_of=lambda path: path),
    Rule("node_modules/", "npm output of theme builds (Hyva/Tailwind, Grunt)",
         ("node_modules/x/package.json",
          "app/design/frontend/Shop/theme/web/tailwind/node_modules/x/package.json"),
         (":(top,glob)**/node_modules/**",), ("node_modules/",),
         root_of=_node_modules_root),
)


@dataclass(frozen=True)
class Keep:
    """A file that must stay trackable (never ignored); ``must_track``: and tracked."""

    path: str
    why: str
    must_track: bool = False
    required: bool = True              # checked even when it is not tracked


KEEPS: tuple[Keep, ...] = (
    Keep("composer.json", "composer install needs it", must_track=True),
    Keep("composer.lock", "without it every host resolves its own versions", must_track=True),
    Keep("app/etc/config.php", "the module list setup:di:compile and static content need",
         must_track=True),
    *(Keep(path, "Magento ships it in git", required=path in REQUIRED_HTACCESS)
      for path in SHIPPED_HTACCESS),
)


# -- what git said ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Match:
    """``git check-ignore -v -n`` for one path: the last pattern that matched, if any."""

    path: str
    source: str = ""
    line: int = 0
    pattern: str = ""
    via: str = ""          # a symlink on the way: git was asked about the link itself

    @property
    def label(self) -> str:
        return f"{self.via} (a symlink in this work tree)" if self.via else self.path

    @property
    def ignored(self) -> bool:
        return bool(self.source) and not self.pattern.startswith("!")

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line} `{self.pattern}`"

    @property
    def local_only(self) -> bool:
        """Matched by ``.git/info/exclude`` or ``core.excludesFile``: this clone only,
        the next clone (a colleague's, CI's) does not have the rule."""
        name = posixpath.basename(self.source)
        return self.ignored and (name != ".gitignore" or posixpath.isabs(self.source))


def parse_check_ignore(output: bytes, asked: Sequence[str]) -> dict[str, Match]:
    """``check-ignore --stdin -z -v -n`` answers: 4 NUL-terminated fields per path asked,
    in the order asked (source, line, pattern, path; empty fields when nothing matched)."""
    fields = output.split(b"\0")
    if fields and fields[-1] == b"":
        fields.pop()
    if len(fields) != 4 * len(asked):
        raise RuntimeError(f"git check-ignore gave {len(fields)} fields for {len(asked)} "
                           "paths: cannot read its answer")
    result = {}
    for i, path in enumerate(asked):
        source, line, pattern, _ = (f.decode("utf-8", "surrogateescape")
                                    for f in fields[4 * i:4 * i + 4])
        result[path] = Match(path, source, int(line) if line else 0, pattern)
    return result


@dataclass(frozen=True)
class Facts:
    """Everything the audit needs from git, gathered once."""

    top: str
    tracked: Mapping[str, tuple[str, ...]]     # rule name -> tracked files it selects
    tracked_keeps: frozenset[str]
    matches: Mapping[str, Match]               # every probe, offender and keep path


# -- the audit (pure) -------------------------------------------------------------------------

@dataclass(frozen=True)
class RuleResult:
    rule: Rule
    first: Match                               # the first probe: what ignores it, if any
    not_ignored: tuple[str, ...]               # probes and offenders no rule ignores
    offenders: tuple[str, ...]                 # tracked, not exempt
    exempt_tracked: tuple[str, ...]
    links: tuple[str, ...] = ()                # symlinks git would record, not ignored

    @property
    def ok(self) -> bool:
        return not self.not_ignored and not self.offenders


@dataclass(frozen=True)
class KeepResult:
    keep: Keep
    match: Match
    tracked: bool

    @property
    def relevant(self) -> bool:
        return self.keep.required or self.keep.must_track or self.tracked

    @property
    def checked(self) -> bool:
        """Behind a symlink of this work tree git can neither add nor judge the file."""
        return self.relevant and not self.match.via

    @property
    def ok(self) -> bool:
        return not self.checked or (not self.match.ignored
                                    and (self.tracked or not self.keep.must_track))


@dataclass(frozen=True)
class Audit:
    top: str
    rules: tuple[RuleResult, ...]
    keeps: tuple[KeepResult, ...]

    @property
    def problems(self) -> int:
        return sum(not r.ok for r in self.rules) + sum(not k.ok for k in self.keeps)


def audit(facts: Facts, rules: Sequence[Rule] = RULES, keeps: Sequence[Keep] = KEEPS) -> Audit:
    """Judge what git answered: no I/O, so every case is a unit of data."""
    results = []
    for rule in rules:
        tracked = facts.tracked.get(rule.name, ())
        offenders = tuple(p for p in tracked if not rule.exempt(p))
        escaping = [facts.matches[p] for p in dict.fromkeys(rule.probes + offenders)
                     if not facts.matches[p].ignored]
        results.append(RuleResult(
            rule, facts.matches[rule.probes[0]],
            tuple(dict.fromkeys(m.label for m in escaping)),
            offenders, tuple(p for p in tracked if rule.exempt(p)),
            tuple(dict.fromkeys(m.via for m in escaping if m.via))))
    return Audit(facts.top, tuple(results), tuple(
        KeepResult(k, facts.matches[k.path], k.path in facts.tracked_keeps) for k in keeps))


def paths_to_ask(tracked: Mapping[str, tuple[str, ...]], rules: Sequence[Rule] = RULES,
                 keeps: Sequence[Keep] = KEEPS) -> list[str]:
    """Every path whose ignore status the audit reads, each once, in a stable order."""
    wanted = [p for r in rules for p in r.probes + tracked.get(r.name, ())]
    wanted += [k.path for k in keeps]
    return list(dict.fromkeys(wanted))


def removal_targets(offenders: Sequence[str], exempt: Sequence[str], root: str) -> list[str]:
    """The fewest paths ``git rm -r --cached`` can name to untrack ``offenders`` (all under
    ``root``) without untracking ``exempt`` ones: ``root`` itself when nothing exempt lies
    under it, else its children, recursively."""
    if not any(_under(e, root) for e in exempt) or root in offenders:
        return [root]
    children = sorted({root + "/" + p[len(root) + 1:].split("/")[0]
                       for p in offenders if _under(p, root)})
    return [t for child in children for t in removal_targets(
        [p for p in offenders if _under(p, child)], exempt, child)]


def removal_command(result: RuleResult) -> str:
    """What the user runs to untrack a rule's offenders (we never run ``git rm``)."""
    roots = sorted({result.rule.removal_root(p) for p in result.offenders})
    targets = [t for root in roots for t in removal_targets(
        [p for p in result.offenders if _under(p, root)], result.exempt_tracked, root)]
    recursive = "-r " if any(t not in result.offenders for t in targets) else ""
    # git rm takes pathspecs: a `*` in a name would also match (and untrack) other files
    literal = ("--literal-pathspecs " if any(set(t) & set("*?[\\") or t.startswith(":")
                                             for t in targets) else "")
    return f"git {literal}rm {recursive}--cached -- {' '.join(q(t) for t in targets)}"


# -- the fix plan (pure) ----------------------------------------------------------------------

def reinclude_lines(path: str, rules: Sequence[Rule] = RULES) -> list[str]:
    """Lines that make an ignored ``path`` trackable again.

    Git cannot re-include a file whose directory is ignored, so under a rule's directory
    each level is re-included and its contents ignored again (``!/pub/media/customer/``,
    ``/pub/media/customer/*``), which keeps everything else there ignored; outside them
    a plain negation is all we may add (``!/composer.lock``).
    """
    roots = [r.root for r in rules if r.root and r.root != path and _under(path, r.root)]
    if not roots:
        return [f"!/{path}"]
    root = max(roots, key=len)
    levels = path[len(root) + 1:].split("/")[:-1]
    dirs = [root] + ["/".join([root, *levels[:i + 1]]) for i in range(len(levels))]
    return [line for d in dirs for line in (f"!/{d}/", f"/{d}/*")] + [f"!/{path}"]


def our_lines(content: str) -> list[str]:
    """The lines at and after our first comment line: what earlier ``--fix`` runs added."""
    lines = content.splitlines()
    return lines[lines.index(HEADER):] if HEADER in lines else []


def missing_lines(result: Audit, present: Iterable[str]) -> list[str]:
    """What ``--fix`` appends: the lines of each rule something escapes, then what makes
    each ignored keep path trackable, minus the ``present`` ones (:func:`our_lines`: so a
    second run adds nothing, even when a nested ``.gitignore`` overrides ours). A user's
    own identical line does not count: a later line of theirs may undo it."""
    wanted: list[str] = []
    for r in result.rules:
        if r.not_ignored:
            wanted += r.rule.lines
    for k in result.keeps:
        if k.checked and k.match.ignored:
            wanted += reinclude_lines(k.keep.path)
    have = {line.strip() for line in present}
    return [line for line in dict.fromkeys(wanted) if line not in have]


def appended(content: bytes, lines: Sequence[str]) -> bytes:
    """``content`` unchanged, byte for byte, then our comment and ``lines``: a final
    newline is added only where the user's file lacked one; CRLF files get CRLF."""
    if not lines:
        return content
    eol = b"\r\n" if b"\r\n" in content else b"\n"
    head = content
    if head and not head.endswith(b"\n"):
        head += eol
    if head:
        head += eol
    body = [HEADER, *lines]
    return head + eol.join(s.encode("utf-8", "surrogateescape") for s in body) + eol


# -- the report (pure) ------------------------------------------------------------------------

def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def rule_lines(r: RuleResult) -> list[str]:
    rule = r.rule
    status = "ok  " if r.ok else "FAIL"
    if not r.not_ignored:
        how = f"ignored ({r.first.where})"
        if r.first.local_only:
            how += " - only in this clone: add it to .gitignore so every clone has it"
    else:
        more = len(r.not_ignored) - 2
        how = "NOT ignored: " + ", ".join(r.not_ignored[:2]) + (
            f" and {_plural(more, 'more path')}" if more > 0 else "")
    out = [f"  {status} {rule.name:<22} {how}"]
    for link in r.links:
        out.append(f"       {link} is a symlink here: `git add` would record the link itself;"
                   f" ignore it in this clone only with `/{link}` in .git/info/exclude")
    if r.offenders:
        out.append(f"       {rule.name}: {_plural(len(r.offenders), 'file')} tracked"
                   f" - remove with `{removal_command(r)}`")
        if rule.secret:
            out.append("       they stay in the git history: treat the credentials in them"
                       " as leaked and rotate them")
    return out


def keep_line(k: KeepResult) -> str:
    state = "tracked" if k.tracked else "not tracked"
    if k.match.via:
        return (f"  ok   {k.keep.path:<22} {state}; behind the symlink {k.match.via} here:"
                " git cannot judge it in this work tree")
    if k.match.ignored:
        how = (f"IGNORED by {k.match.where}, but {k.keep.why}: `--fix` adds"
               f" {', '.join(reinclude_lines(k.keep.path))}")
    elif k.keep.must_track and not k.tracked:
        how = f"NOT tracked, but {k.keep.why}: commit it (`git add -- {q(k.keep.path)}`)"
    else:
        how = f"{state}, not ignored"
    return f"  {'ok  ' if k.ok else 'FAIL'} {k.keep.path:<22} {how}"


def render(result: Audit) -> str:
    out = [f"git repository: {result.top}", "must be ignored and not tracked:"]
    for r in result.rules:
        out += rule_lines(r)
    out.append("must stay trackable (never ignored):")
    out += [keep_line(k) for k in result.keeps if k.relevant]
    return "\n".join(out)


# -- git (I/O) --------------------------------------------------------------------------------

def git(top: str | Path, *args: str, data: bytes | None = None) -> bytes:
    """Run git in ``top``; its own message, not a traceback, when it fails."""
    proc = subprocess.run(["git", "-C", str(top), *args], input=data, capture_output=True,
                          check=False)
    if proc.returncode not in (0, 1) or (proc.returncode == 1 and args[0] != "check-ignore"):
        raise RuntimeError(f"git {' '.join(args[:2])} in {top} failed: "
                           + proc.stderr.decode(errors="replace").strip())
    return proc.stdout


def toplevel(path: str | None) -> Path:
    """The repository's top level: of ``--path`` when given, else of the current
    directory. Anything that is not inside a git work tree is refused, naming it."""
    where = Path(path) if path else Path.cwd()
    setting = f"--path {path}" if path else f"the current directory {where}"
    if not where.is_dir():
        raise SettingsError(f"{setting}: no such directory")
    proc = subprocess.run(["git", "-C", str(where), "rev-parse", "--show-toplevel"],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        why = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "no work tree"
        raise SettingsError(f"{setting}: not a git repository with a work tree ({why})")
    return Path(proc.stdout.strip())


def tracked_files(top: Path, pathspecs: Sequence[str]) -> tuple[str, ...]:
    out = git(top, "ls-files", "-z", "--", *pathspecs)
    names = (n.decode("utf-8", "surrogateescape") for n in out.split(b"\0") if n)
    return tuple(dict.fromkeys(names))  # an unmerged file is listed once per stage


def symlink_on_the_way(top: Path, path: str, seen: dict[str, bool]) -> str:
    """The first leading directory of ``path`` that is a symlink in the work tree, or "".

    Git refuses to answer for a path beyond a symlink ("beyond a symbolic link"), and
    ``git add`` would record the link itself, never what lies behind it: so the link is
    what we ask about (a ``pub/media`` linked to a shared folder on a developer's box).
    """
    parts = path.split("/")
    for i in range(1, len(parts)):
        prefix = "/".join(parts[:i])
        if prefix not in seen:
            seen[prefix] = (top / prefix).is_symlink()
        if seen[prefix]:
            return prefix
    return ""


def check_ignore(top: Path, paths: Sequence[str]) -> dict[str, Match]:
    """One ``git check-ignore`` for all ``paths``; each is sent as ``./path`` so a name
    starting with ``:`` is a file name, never pathspec magic."""
    seen: dict[str, bool] = {}
    via = {p: symlink_on_the_way(top, p, seen) for p in paths}
    asked = list(dict.fromkeys(via[p] or p for p in paths))
    data = b"".join(b"./" + p.encode("utf-8", "surrogateescape") + b"\0" for p in asked)
    out = git(top, "check-ignore", "--no-index", "--stdin", "-z", "-v", "-n", data=data)
    answers = parse_check_ignore(out, asked)
    return {p: replace(answers[via[p] or p], path=p, via=via[p]) for p in paths}


def gather(top: Path, rules: Sequence[Rule] = RULES, keeps: Sequence[Keep] = KEEPS) -> Facts:
    tracked = {r.name: tracked_files(top, r.pathspecs) for r in rules}
    tracked_keeps = frozenset(tracked_files(
        top, [f":(top,literal){k.path}" for k in keeps]))
    return Facts(str(top), tracked, tracked_keeps,
                 check_ignore(top, paths_to_ask(tracked, rules, keeps)))


def apply_fix(top: Path, *, passes: int = 3) -> list[str]:
    """Append what is missing to ``top/.gitignore`` and return the lines added.

    Git judges each pass: a rule added for ``pub/media`` may newly ignore a tracked
    ``pub/media/customer/.htaccess``, which the next pass re-includes. The user's bytes
    are written back unchanged in front of one block, whatever the number of passes.
    """
    path = top / ".gitignore"
    original = path.read_bytes() if path.exists() else b""
    added: list[str] = []
    for _ in range(passes):
        current = appended(original, added)
        new = missing_lines(audit(gather(top)),
                            our_lines(current.decode("utf-8", "surrogateescape")))
        if not new:
            break
        added += new
        path.write_bytes(appended(original, added))
    return added


# -- the task ---------------------------------------------------------------------------------

@task(help={"path": "a directory of the shop's git repository (default: the current one)",
            "fix": "append the missing rules to .gitignore (never runs git rm)"})
@clean_errors
def check_gitignore(c: Context, path: str | None = None, fix: bool = False) -> None:
    """Audit the shop repository's .gitignore (local): build output and secrets untracked.

    vendor/, generated/, var/, pub/static/, pub/media/, app/etc/env.php, auth.json, .env
    and node_modules/ must be ignored and not tracked; composer.json, composer.lock,
    app/etc/config.php and Magento's .htaccess files never ignored. Exit 1 on any problem.
    --fix appends the missing rules to .gitignore and says which `git rm --cached` to run.
    """
    top = toplevel(path)
    if fix:
        added = apply_fix(top)
        if added:
            print(f"added to {top / '.gitignore'} ({_plural(len(added), 'line')}, under"
                  f" '{HEADER}'):\n" + "\n".join(f"  {line}" for line in added)
                  + "\ncommit .gitignore so every clone has the rules")
        else:
            print(f"nothing to add to {top / '.gitignore'}")
    result = audit(gather(top))
    print(render(result))
    if result.problems:
        hint = "" if fix else "; `fab check-gitignore --fix` adds the missing rules"
        raise Exit(f"check-gitignore: {_plural(result.problems, 'problem')} in {top}{hint}",
                   code=1)
    print(f"check-gitignore: {top} is clean")


__all__ = ["check_gitignore", "audit", "gather", "missing_lines", "appended", "render",
           "apply_fix", "RULES", "KEEPS"]
