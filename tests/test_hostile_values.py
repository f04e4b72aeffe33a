"""Hostile values in every setting and option are refused, or used literally (issue 9, 7).

Spaces, quotes, ``$()``, backticks, unicode, leading dashes and newlines in every
``DEPLOY_*`` setting and in ``--ref``, ``--to`` and ``--release``. For each value, either
``tasks.settings.load`` (or the task) refuses it with an error that names the key, or
every command the library builds from it carries it as data, never as shell code:

* the planned commands (``source.update_mirror``/``checkout``/``link_shared``,
  ``build.build``, ``switch.switch``, ``deploy.dry_run``) and the commands the library
  runs itself (lock, records, maintenance, abandon, prune, OPcache), recorded by a host
  that only records, are split into shell words by :func:`shell_words`, a small POSIX
  word splitter that also descends into ``$(...)`` (``shlex.split`` cannot: it reads
  ``"$(dirname '/a"b')"`` wrongly). A word built from an unquoted expansion is ``None``,
  so it can never pass for a literal value. The splitter is itself checked against bash;
* for a scalar value (``DEPLOY_PATH``, ``DEPLOY_BRANCH``, ``--ref``, ``--to``) the words
  of every command must be exactly the words of the same command built with a plain
  placeholder, with the placeholder replaced by the value: the value changed no word
  boundary, added no command, expanded nothing;
* for list values (locales, themes, static content options, shared paths) each item is
  one whole word; ``DEPLOY_PHP``, ``DEPLOY_COMPOSER`` and ``DEPLOY_OPCACHE_COMMAND`` are
  shell commands by design ("used verbatim"): they appear verbatim where documented.

One real-host test deploys with nasty but valid values (a branch ``feature/ü-$(touch…)``,
a tag with quotes and backticks, ``DEPLOY_PHP`` with an option, a shared directory named
``$(...)``, a ``DEPLOY_PATH`` with ``;&|()*``) and checks that the refs resolve and that
nothing was executed from them.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import secrets as random_tokens
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from invoke import Context

from fabric_magento_deploy import build, lock, magento, opcache, redact, release, source, switch
from fabric_magento_deploy.cli import RELEASE_ID
from fabric_magento_deploy.hosts import Host
from fabric_magento_deploy.release import LIVE, PREVIOUS, ReleaseRecord, Releases
from fabric_magento_deploy.rollback import RollbackRefused, plan
from fabric_magento_deploy.settings import (
    DEFAULTS,
    Settings,
    SettingsError,
    check_ref,
    load,
    split_list,
)

deploy = importlib.import_module("fabric_magento_deploy.deploy")  # the name is also the task
EMPTY = Path(__file__).resolve().parent / "fakeshop" / "app" / "code"  # no .env in there
BASE = {"DEPLOY_PATH": "/srv/shop", "DEPLOY_REPO": "git@example.invalid:shop.git",
        "DEPLOY_HOSTS": "web1 web2"}
COMMIT = "0123456789abcdef0123456789abcdef01234567"
REL = "20261201.120000.000"
LIVE_REL = "20261130.090000.000"
NOW = "2026-12-01T12:00:00.000+00:00"
PLACEHOLDER = "Q9PLACEHOLDERQ9"
PROPERTY = settings(max_examples=80, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------- shell words


def shell_words(command: str) -> list[str | None]:
    """Every word a POSIX shell would pass to a program in ``command``, after quote
    removal, including the words of command substitutions, in order; ``None`` for a word
    that contains an unquoted or double-quoted expansion (``$x``, ``$(...)``, backticks).

    Operators (``; & | < > ( )``) and blanks separate words. Enough for the commands the
    library builds (no here-documents, no arithmetic); an unbalanced quote raises.
    """
    words: list[str | None] = []
    end = _words(command, 0, words, nested=False)
    assert end == len(command)
    return words


def _words(text: str, i: int, out: list[str | None], *, nested: bool) -> int:
    word: list[str] | None = None
    expanded = False

    def finish() -> None:
        nonlocal word, expanded
        if word is not None:
            out.append(None if expanded else "".join(word))
        word, expanded = None, False

    while i < len(text):
        c = text[i]
        if c in " \t\n":
            finish()
            i += 1
            continue
        if c == ")" and nested:
            finish()
            return i + 1
        if c in ";&|<>()":
            finish()
            i += 1
            continue
        if word is None:
            if c == "#":
                newline = text.find("\n", i)
                i = len(text) if newline < 0 else newline
                continue
            word = []
        if c == "'":
            close = text.index("'", i + 1)
            word.append(text[i + 1:close])
            i = close + 1
        elif c == '"':
            i, dq_expanded = _double_quoted(text, i + 1, word, out)
            expanded = expanded or dq_expanded
        elif c == "\\":
            if text[i + 1] != "\n":
                word.append(text[i + 1])
            i += 2
        elif c in "$`":
            i, did = _expansion(text, i, out)
            if did:
                expanded = True
            else:
                word.append("$")
        else:
            word.append(c)
            i += 1
    if nested:
        raise ValueError("unterminated $(")
    finish()
    return i


def _double_quoted(text: str, i: int, word: list[str], out: list[str | None]) -> tuple[int, bool]:
    expanded = False
    while True:
        c = text[i]
        if c == '"':
            return i + 1, expanded
        if c == "\\" and text[i + 1] in '$`"\\\n':
            if text[i + 1] != "\n":
                word.append(text[i + 1])
            i += 2
        elif c in "$`":
            i, did = _expansion(text, i, out)
            if did:
                expanded = True
            else:
                word.append("$")
        else:
            word.append(c)
            i += 1


def _expansion(text: str, i: int, out: list[str | None]) -> tuple[int, bool]:
    """Skip the expansion at ``text[i]`` (collecting the words of a command substitution);
    ``(index after it, True)``, or ``(i + 1, False)`` for a lone ``$``."""
    if text[i] == "`":
        close = text.index("`", i + 1)
        _words(text[i + 1:close], 0, out, nested=False)
        return close + 1, True
    if text.startswith("$(", i):
        return _words(text, i + 2, out, nested=True), True
    if text.startswith("${", i):
        return text.index("}", i) + 1, True
    name = re.match(r"[A-Za-z_][A-Za-z0-9_]*|[0-9?#@*!$-]", text[i + 1:])
    if name:
        return i + 1 + name.end(), True
    return i + 1, False


def without_heredocs(command: str) -> str:
    """``command`` with the body of each quoted here-document left out (PHP code)."""
    return re.sub(r"<<'(\w+)'\n.*?\n\1\n", "\n", command, flags=re.S)


# --------------------------------------------------------------------------- hostile values

PIECES = [
    "'", '"', "$(touch pwned)", "`touch pwned`", "$(", "${IFS}", "$HOME", " ", "  ", "\n",
    "\t", "\r", "-", "--", "-rf", "--help", "ü", "€", "日本", "\u200b", "\u00a0", "\u2028",
    "\\", ";", "&&", "|", "*", "?", "~", "#", "!", "{", "}", "(", ")", "<", ">", "..", "/",
    ",", "=", ":", "@", "%s", "\x7f", "\x1b[31m", "٣", "１",
]
TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
               min_size=1, max_size=4)
HOSTILE = st.lists(st.one_of(st.sampled_from(PIECES), TEXT), min_size=1, max_size=6).map("".join)
LEADING = st.sampled_from(["", "", "-", "--", " ", "\n"])


def value_for(key: str) -> st.SearchStrategy[str]:
    """Hostile values for ``key``, some of them shaped so that validation may accept them."""
    shaped = {
        "DEPLOY_PATH": ["/srv/", "/srv/shop/", "//var/", "/"],
        "DEPLOY_REPO": ["https://git.example/", "ssh://git@git.example/", "/srv/git/"],
        "DEPLOY_SHARED_DIRS": ["pub/", "var/", ""],
        "DEPLOY_SHARED_FILES": ["app/etc/", ""],
        "DEPLOY_STATIC_ARGS": ["--", "-"],
        "DEPLOY_FPM_SOCKET": ["/run/php/", "127.0.0.1:"],
        "DEPLOY_OPCACHE_URL": ["https://shop.example/", "http://"],
        "DEPLOY_THEMES": ["Vendor/", "frontend:", "adminhtml:"],
        "DEPLOY_LOCALES": ["en_", "adminhtml:"],
    }.get(key, [""])
    return st.tuples(LEADING, st.sampled_from(shaped), HOSTILE).map("".join)


@contextlib.contextmanager
def isolated_secrets() -> Iterator[None]:
    """Settings register the credentials of DEPLOY_REPO for masking, process-wide; a
    generated URL must not leave masks behind for other tests."""
    saved = set(redact._secrets)
    try:
        yield
    finally:
        with redact._lock:
            redact._secrets.clear()
            redact._secrets.update(saved)


def settings_with(**values: str) -> Settings:
    with isolated_secrets():
        return load({**BASE, **values}, EMPTY)


# --------------------------------------------------------------------------- the commands


class Recorder(Host):
    """A host that runs nothing: it records each command and answers "ok, no output"."""

    def __init__(self) -> None:
        super().__init__("web1", Context(), echo=False)
        self.commands: list[str] = []

    def run(self, command: str, *, step: str = "run", **_: Any) -> Any:  # type: ignore[override]
        self.commands.append(command)
        yes = step != "check"  # a question (Host.test) is answered "no"
        return mock.Mock(stdout="", stderr="", exited=0 if yes else 1, ok=yes, failed=not yes)


def planned(s: Settings, *, rel: str = REL, ref: str = "main") -> list[str]:
    """Every command a deploy plans or runs for settings ``s``, release ``rel``, ``ref``."""
    steps = [source.update_mirror(s), source.resolve_ref(s, ref),
             *source.checkout(s, rel, COMMIT), source.link_shared(s, rel),
             *build.build(s, rel), build.verify(s, rel), switch.switch(s, rel)]
    commands = [step.command for step in steps]
    commands += [build.magento(s, rel, c) for c in ("setup:db:status", "app:config:status",
                                                     "cache:flush")]
    host = Recorder()
    record = ReleaseRecord(rel, ref=ref, commit=COMMIT, deployed_by="ops@laptop",
                           started=NOW, hosts=["web1"])
    info = {"who": "ops@laptop", "pid": 1, "since": NOW, "action": "deploy", "release": rel}
    with mock.patch.object(release, "utc_now", lambda: NOW), isolated_secrets():
        lock.acquire(host, s, info)
        lock.keep(host, s, info, "why")
        lock.release(host, s, info)
        release.write_record(host, s, record)
        release.live_release(host, s)
        release.read_records(host, s)
        release.scan(host, s)
        magento.maintenance_owner(host, s, rel)
        magento.maintenance_on(host, s, [LIVE_REL, rel], by=f"deploy {rel}")
        magento.maintenance_off(host, s, [LIVE_REL, rel])
        magento.upgrade(host, s, rel)
        switch.check_current_is_link(host, s)
        switch.point_current(host, s, rel)
        deploy.abandon([host], s, record, "why")
        deploy.prune(host, s, protect={rel})
    return commands + host.commands


def assert_same_words(hostile: list[str], plain: list[str], value: str, placeholder: str) -> None:
    """Command by command, the words with ``value`` are the words with ``placeholder``,
    the placeholder replaced (as written, or JSON-escaped inside a JSON record)."""
    assert len(hostile) == len(plain)
    escaped = json.dumps(value, ensure_ascii=True)[1:-1]
    for with_value, with_placeholder in zip(hostile, plain, strict=True):
        got = shell_words(with_value)
        wanted = shell_words(with_placeholder)
        assert len(got) == len(wanted), (value, with_value)
        for word, template in zip(got, wanted, strict=True):
            if template is None or PLACEHOLDER not in template:
                assert word == template, (value, with_value, word, template)
            else:
                assert word in (template.replace(placeholder, value),
                                template.replace(placeholder, escaped)), (
                    value, with_value, word, template)


# --------------------------------------------------------------------------- the splitter


@PROPERTY
@given(values=st.lists(st.one_of(HOSTILE, st.sampled_from(PIECES)), min_size=1, max_size=4))
def test_the_word_splitter_agrees_with_bash_on_quoted_words(values: list[str]) -> None:
    """The oracle itself: for quoted words, in plain, ``$(...)`` and ``"$(...)"`` places,
    :func:`shell_words` finds exactly the arguments bash passes."""
    quoted = " ".join(shlex.quote(v) for v in values)
    command = f'printf "%s\\0" {quoted} "$(printf %s {quoted})"'
    # bash runs only printf here: every value is quoted by shlex.quote
    out = subprocess.run(["bash", "-c", command], capture_output=True, check=True).stdout
    args = out.decode(errors="surrogateescape").split("\0")[:-1]
    assert args[:-1] == values
    words = shell_words(command)
    assert words[:2] == ["printf", "%s\\0"]
    assert words[2:2 + len(values)] == values
    assert words[2 + len(values):] == ["printf", "%s", *values, None]


def test_the_word_splitter_sees_through_unquoted_values() -> None:
    """What the properties rely on: an unquoted value changes the words."""
    assert shell_words("rm -rf /srv/$(touch x)") == ["rm", "-rf", "touch", "x", None]
    assert shell_words("cd '/a b' && ls") == ["cd", "/a b", "ls"]
    assert shell_words('mkdir -p "$(dirname \'/a"b\')"') == ["mkdir", "-p", "dirname", '/a"b',
                                                             None]
    assert shell_words("x=`id`; echo \"$x\"") == ["id", None, "echo", None]
    with pytest.raises(ValueError):
        shell_words("echo 'unbalanced")


# --------------------------------------------------------------------------- settings


@PROPERTY
@given(data=st.data())
def test_every_setting_is_refused_naming_its_key_or_taken_as_written(data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(DEFAULTS)))
    value = data.draw(value_for(key))
    try:
        s = settings_with(**{key: value})
    except SettingsError as exc:
        assert key in str(exc), (key, value, str(exc))
        return
    taken = {
        "DEPLOY_PATH": lambda: s.deploy_path == os.path.normpath(re.sub("/+", "/",
                                                                         value.strip())),
        "DEPLOY_HOSTS": lambda: s.hosts == split_list(value),
        "DEPLOY_REPO": lambda: s.repo == value.strip(),
        "DEPLOY_BRANCH": lambda: s.branch == (value.strip() or "main"),
        "DEPLOY_PHP": lambda: s.php == value.strip(),
        "DEPLOY_COMPOSER": lambda: s.composer == value.strip(),
        "DEPLOY_THEMES": lambda: s.themes == split_list(value),
        "DEPLOY_STATIC_ARGS": lambda: s.static_args == tuple(shlex.split(value)),
        "DEPLOY_FPM_SOCKET": lambda: s.fpm_sockets == split_list(value),
        "DEPLOY_OPCACHE_URL": lambda: s.opcache_url == value.strip(),
        "DEPLOY_OPCACHE_COMMAND": lambda: s.opcache_command == value.strip(),
        "DEPLOY_PRIMARY": lambda: s.primary == value.strip(),
    }
    if key in taken:
        assert taken[key](), (key, value, s)


@pytest.mark.parametrize("key", ["DEPLOY_KEEP_RELEASES", "DEPLOY_TIMEOUT_BUILD"])
def test_a_huge_number_is_refused_naming_the_key(key: str) -> None:
    with pytest.raises(SettingsError, match=key):
        settings_with(**{key: "9" * 5000})


SCALARS = {
    "DEPLOY_PATH": ("/srv/" + PLACEHOLDER, st.tuples(
        st.sampled_from(["/srv/", "/opt/shop/", "/srv/shop-"]), HOSTILE).map("".join)),
    "DEPLOY_BRANCH": (PLACEHOLDER, value_for("DEPLOY_BRANCH")),
}


def test_a_deploy_path_with_every_shell_character_it_may_have_changes_no_word() -> None:
    check_scalar("DEPLOY_PATH", "/srv/shop;(ü)&x|y*?~#!{a}<b>=c,d:e@f%s\u200b")


@PROPERTY
@given(data=st.data())
def test_a_scalar_setting_never_changes_the_words_of_a_command(data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(SCALARS)))
    check_scalar(key, data.draw(SCALARS[key][1]))


def check_scalar(key: str, value: str) -> None:
    try:
        hostile = settings_with(**{key: value})
    except SettingsError as exc:
        assert key in str(exc)
        return
    plain = settings_with(**{key: SCALARS[key][0]})
    if key == "DEPLOY_PATH":
        got, placeholder, used = planned(hostile), plain.deploy_path, hostile.deploy_path
    else:
        got, placeholder, used = (planned(hostile, ref=hostile.branch), plain.branch,
                                  hostile.branch)
    assert_same_words(got, planned(plain, ref=plain.branch), used, placeholder)
    text = deploy.dry_run(hostile, ["web1", "web2"])
    for step in (source.update_mirror(hostile), source.resolve_ref(hostile, hostile.branch),
                 switch.switch(hostile, "<release-id>")):
        assert step.command in text, "--dry shows what runs"


@PROPERTY
@given(repo=value_for("DEPLOY_REPO"))
def test_the_repository_is_one_word_wherever_it_is_used(repo: str) -> None:
    try:
        s = settings_with(DEPLOY_REPO=repo)
    except SettingsError as exc:
        assert "DEPLOY_REPO" in str(exc)
        return
    url = source.split(s.repo)[0]
    fetch = shell_words(source.update_mirror(s).command)
    assert fetch.count(url) == 2, (url, fetch)  # set-url origin URL / clone --mirror URL
    checkout = shell_words(source.checkout(s, REL, COMMIT)[0].command)
    assert checkout.count(url) == 2


LISTS = ["DEPLOY_LOCALES", "DEPLOY_THEMES", "DEPLOY_STATIC_ARGS", "DEPLOY_SHARED_DIRS",
         "DEPLOY_SHARED_FILES", "DEPLOY_STATIC_JOBS"]


@PROPERTY
@given(data=st.data())
def test_each_item_of_a_list_setting_is_one_word(data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(LISTS))
    value = data.draw(value_for(key))
    extra = {"DEPLOY_SHARED_DIRS": "", "DEPLOY_SHARED_FILES": ""}  # no overlap with defaults
    env = {k: v for k, v in extra.items() if k != key}
    try:
        s = settings_with(**env, **{key: value})
    except SettingsError as exc:
        assert key in str(exc), (key, value, str(exc))
        return
    static = [w for step in build.static_content(s, REL) for w in shell_words(step.command)]
    link = shell_words(source.link_shared(s, REL).command)
    if key == "DEPLOY_LOCALES":
        expected = [item.rpartition(":")[2] for item in s.locales]
        assert all(item in static for item in expected), (s.locales, static)
    elif key == "DEPLOY_THEMES":
        themes = [t.rpartition(":")[2] for t in s.themes if t.rpartition(":")[2] != "none"]
        assert all(f"--theme={t}" in static for t in themes), (s.themes, static)
    elif key == "DEPLOY_STATIC_ARGS":
        assert all(arg in static for arg in s.static_args), (s.static_args, static)
    elif key == "DEPLOY_STATIC_JOBS":
        assert s.static_jobs is None or f"--jobs={s.static_jobs}" in static
    else:
        paths = s.shared_dirs if key == "DEPLOY_SHARED_DIRS" else s.shared_files
        for path in paths:
            assert f"{s.shared_dir}/{path}" in link, (path, link)
            assert f"{s.release_dir(REL)}/{path}" in link, (path, link)
    assert_plans_parse(s)


def assert_plans_parse(s: Settings) -> None:
    """Every planned command splits into words (no quote left open by a value)."""
    for command in planned(s):
        shell_words(command)


@PROPERTY
@given(key=st.sampled_from(["DEPLOY_PHP", "DEPLOY_COMPOSER"]), value=HOSTILE)
def test_php_and_composer_are_used_verbatim_as_documented(key: str, value: str) -> None:
    """Commands by design (``php -d memory_limit=-1``, ``sudo -u www composer``): the
    shell runs them as written, in the release directory, before the fixed arguments."""
    try:
        s = settings_with(**{key: value})
    except SettingsError as exc:
        assert key in str(exc)
        return
    commands = [step.command for step in build.build(s, REL)]
    rel = shlex.quote(s.release_dir(REL))
    if key == "DEPLOY_PHP":
        assert f"cd {rel} && {s.php} bin/magento setup:di:compile" in commands[1]
    else:
        assert commands[0].startswith(f"cd {rel} && {s.composer} install ")


@PROPERTY
@given(socket=value_for("DEPLOY_FPM_SOCKET"), url=value_for("DEPLOY_OPCACHE_URL"),
       command=HOSTILE)
def test_opcache_targets_reach_the_client_as_data(socket: str, url: str, command: str) -> None:
    """Sockets and the URL travel in one quoted JSON word to the PHP client on the host;
    DEPLOY_OPCACHE_COMMAND is run verbatim (a command by design)."""
    for key, value, strategy in (("DEPLOY_FPM_SOCKET", socket, "fcgi"),
                                 ("DEPLOY_OPCACHE_URL", url, "url"),
                                 ("DEPLOY_OPCACHE_COMMAND", command, "command")):
        env = {key: value, "DEPLOY_OPCACHE": strategy}
        if strategy == "fcgi":
            env["DEPLOY_FPM_SOCKET"] = value
        try:
            s = settings_with(**env)
        except SettingsError as exc:
            assert key in str(exc) or (not value.strip() and "DEPLOY_OPCACHE" in str(exc))
            continue
        host = Recorder()
        with contextlib.suppress(opcache.OpcacheError):
            opcache.flush(host, s, strategy)
        if strategy == "command":
            assert host.commands == [s.opcache_command]
            continue
        client = shell_words(without_heredocs(host.commands[0]))
        job = json.loads(client[client.index("--") + 1])
        targets = s.fpm_sockets if strategy == "fcgi" else (s.opcache_url,)
        assert job["mode"] == strategy
        if strategy == "fcgi":
            assert job["target"] == targets[0]
        assert client[client.index("--") - 1] == "display_errors=stderr"


# --------------------------------------------------------------------------- options


@PROPERTY
@given(ref=st.tuples(st.sampled_from(["", "feature/", "v1."]), HOSTILE).map("".join))
def test_a_ref_option_never_changes_the_words_of_a_command(ref: str) -> None:
    """Refused like DEPLOY_BRANCH (naming --ref), or one word in every command."""
    s = settings_with()
    try:
        check_ref(ref)
    except SettingsError as exc:
        assert "--ref" in str(exc)
        with pytest.raises(SettingsError, match="--ref"):
            deploy.dry_run(s, ["web1"], ref)
        return
    got = planned(s, ref=ref)
    assert_same_words(got, planned(s, ref=PLACEHOLDER), ref, PLACEHOLDER)
    assert source.resolve_ref(s, ref).command in deploy.dry_run(s, ["web1"], ref)


@pytest.mark.parametrize("ref", ["-x", "--output=/tmp/x"])
def test_a_ref_with_a_leading_dash_is_refused_like_deploy_branch(ref: str) -> None:
    with pytest.raises(SettingsError):
        settings_with(DEPLOY_BRANCH=ref)
    try:  # refused before anything runs, or given to git as a ref, never as an option
        text = deploy.dry_run(settings_with(), ["web1"], ref)
    except SettingsError as exc:
        assert "--ref" in str(exc)
        return
    words = shell_words(source.resolve_ref(settings_with(), ref).command)
    assert source.resolve_ref(settings_with(), ref).command in text
    rev = words.index("rev-parse")
    assert "--end-of-options" in words[rev:words.index(f"{ref}^{{commit}}")], words


@PROPERTY
@given(value=HOSTILE)
@example(value="../..")
@example(value="/")
@example(value="-rf")
def test_a_release_option_is_a_release_id_or_refused(value: str) -> None:
    """``--release`` of the step tasks (checked by tasks.cli.chosen_release) and ``--to``
    of rollback: a path, an option or shell text is refused; a folder that is really
    there (another tool may name folders as it likes) is switched to as one word."""
    from fabric_magento_deploy.cli import chosen_release

    s = settings_with()
    host = Recorder()
    with isolated_secrets(), pytest.raises((SettingsError, LookupError)) as refused:
        chosen_release(host, s, value)
    if not RELEASE_ID.fullmatch(value):
        assert refused.type is SettingsError and "--release" in str(refused.value)
    records = {LIVE_REL: ReleaseRecord(LIVE_REL, status=LIVE, started=NOW),
               value: ReleaseRecord(value, status=PREVIOUS, started="2026-11-01T00:00:00")}
    present = Releases((value, LIVE_REL), (), {})
    with pytest.raises(RollbackRefused):
        plan(LIVE_REL, records, Releases((LIVE_REL,), (), {}), to=value)
    if value == LIVE_REL:
        return
    chosen = plan(LIVE_REL, records, present, to=value)
    assert chosen.target == value
    assert_same_words([switch.switch(s, value).command], [switch.switch(s, PLACEHOLDER).command],
                      value, PLACEHOLDER)


# --------------------------------------------------------------------------- a real host


@pytest.mark.real_hosts
def test_nasty_but_valid_values_deploy_and_execute_nothing(rig1) -> None:
    from scenario import Shop

    shop = Shop(rig1)
    web1 = rig1.host("web1")
    mark = f"pwned{random_tokens.token_hex(4)}"
    branch = f"feature/ü-$(touch${{IFS}}{mark})"
    tag = f"v2-'\"-`touch${{IFS}}{mark}`"
    git = ["git", "-C", str(shop.repo)]
    subprocess.run([*git, "checkout", "-q", "-b", branch], check=True)
    on_branch = shop.commit(label="from a hostile branch")
    subprocess.run([*git, "checkout", "-q", "main"], check=True)
    tagged = shop.commit(label="from a hostile tag")
    subprocess.run([*git, "tag", tag], check=True)
    odd_dir = f"var/$(touch${{IFS}}{mark})"

    result = shop.fab("deploy", f"--ref={branch}", "--quiet", php="php -d memory_limit=-1",
                      composer="composer --no-ansi",
                      shared_dirs=f"{DEFAULTS['DEPLOY_SHARED_DIRS']} {odd_dir}")
    assert result.returncode == 0, result.stdout + result.stderr
    live = shop.live(web1)
    assert shop.release_path(web1, live, "REVISION").read_text().strip() == on_branch
    assert web1.inside(f"/srv/shop/shared/{odd_dir}").is_dir(), "the directory, literally"

    path = "/srv/shop;(ü)&x|y*"
    web1.sh(f"mkdir -p {shlex.quote(path + '/shared/app/etc')} && cp -p "
            f"/srv/shop/shared/app/etc/env.php {shlex.quote(path + '/shared/app/etc/')} && "
            f"chown -R deployer: {shlex.quote(path)}")
    result = shop.fab("deploy", f"--ref={tag}", "--quiet", path=path)
    assert result.returncode == 0, result.stdout + result.stderr
    current = web1.inside(f"{path}/current")
    assert current.is_symlink()
    assert (current.parent / os.readlink(current) / "REVISION").read_text().strip() == tagged

    refused = {
        "dash ref": shop.fab("deploy", "--ref=-x"),
        "rollback --to": shop.fab("rollback", f"--to=$(touch${{IFS}}{mark})"),
        "switch --release": shop.fab("switch-symlink", "--release=../..", "-H", "web1"),
    }
    for what, proc in refused.items():
        assert proc.returncode in (1, 2), (what, proc.stdout + proc.stderr)
        assert "Traceback" not in proc.stderr, (what, proc.stderr)
    assert "--release='../..'" in refused["switch --release"].stderr
    assert shop.live(web1) == live, "nothing switched by a refused option"

    found = subprocess.run(["find", str(rig1.base), os.path.expanduser("~deployer"), "/tmp",
                            "-name", f"{mark}*", "-not", "-path", "*/shared/var/*"],
                           capture_output=True, text=True).stdout
    assert found == "", f"a value was executed: {found}"
