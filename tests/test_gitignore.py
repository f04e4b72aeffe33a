"""``fab check-gitignore``: real git repositories in tmp dirs, the real ``fab`` command line.

Git is the judge in the assertions too: after a ``--fix`` we ask ``git check-ignore``
ourselves whether ``pub/static/.htaccess`` is trackable, and we run the very
``git rm --cached`` command the report printed, then check the repository is clean.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fabric_magento_deploy.gitignore import (
    HEADER,
    appended,
    missing_lines,
    parse_check_ignore,
    reinclude_lines,
    removal_targets,
)

FAB = str(Path(sys.executable).with_name("fab"))
FABFILE = "from fabric_magento_deploy.gitignore import check_gitignore\n"

# A .gitignore a careful shop would have: Magento's own way for the directories it
# ships an .htaccess in, and the secrets.
GOOD = b"""\
/vendor/
/generated/*
!/generated/.htaccess
/var/*
!/var/.htaccess
/pub/static/*
!/pub/static/.htaccess
/pub/media/*
!/pub/media/.htaccess
/app/etc/env.php
/auth.json
.env
.env.*
node_modules/
"""

# What a Magento 2.4 project holds, built or not: code, lock, module list, the .htaccess
# files Magento ships, and (untracked when the rules are right) what a build writes.
SHOP = {
    "composer.json": "{}\n",
    "composer.lock": "{}\n",
    "app/etc/config.php": "<?php return ['modules' => []];\n",
    "app/code/Shop/Catalog/registration.php": "<?php\n",
    "pub/index.php": "<?php\n",
    "pub/static/.htaccess": "Options -Indexes\n",
    "pub/media/.htaccess": "Options -Indexes\n",
    "var/.htaccess": "Require all denied\n",
    "generated/.htaccess": "Require all denied\n",
}
BUILT = {
    "vendor/autoload.php": "<?php\n",
    "generated/code/Shop/Catalog/Model/Product/Interceptor.php": "<?php\n",
    "pub/static/deployed_version.txt": "1700000000\n",
    "pub/media/catalog/product/a/b/ab.jpg": "jpg\n",
    "var/log/system.log": "log\n",
    "app/etc/env.php": "<?php return ['db' => ['password' => 'secret']];\n",
}


@pytest.fixture(autouse=True)
def no_user_git_config(tmp_path_factory: pytest.TempPathFactory,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither this machine's ~/.gitconfig (a core.excludesFile) nor /etc/gitconfig may
    decide what our repositories ignore; fab's git calls inherit the same environment."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / "gitconfig"))
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(name, raising=False)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
                           *args], check=True, capture_output=True, text=True).stdout


def write(repo: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)


def make_repo(path: Path, gitignore: bytes | None, files: dict[str, str],
              force: tuple[str, ...] = ()) -> Path:
    """A committed repository: ``git add -A`` as a user would (the rules decide what is
    tracked), then ``force`` added past them, as a hurried ``git add -f`` would."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    if gitignore is not None:
        (path / ".gitignore").write_bytes(gitignore)
    write(path, files)
    git(path, "add", "-A")
    if force:
        git(path, "add", "-f", "--", *force)
    git(path, "commit", "-q", "-m", "shop")
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A user's project with a fabfile importing only our task."""
    path = tmp_path / "project"
    path.mkdir()
    (path / "fabfile.py").write_text(FABFILE)
    return path


@pytest.fixture
def fab(project: Path) -> Iterator:
    def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([FAB, "-r", str(project), "check-gitignore", *args],
                              cwd=cwd or project, env=os.environ.copy(), text=True,
                              capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    yield run


def row(out: str, name: str) -> str:
    """The report's line for rule or file ``name``."""
    lines = [line for line in out.splitlines() if re.match(rf"\s+(ok|FAIL)\s+{re.escape(name)}\s",
                                                           line)]
    assert len(lines) == 1, f"no single row for {name!r} in:\n{out}"
    return lines[0]


def ignored(repo: Path, path: str) -> bool:
    """Git's own answer, not ours."""
    return subprocess.run(["git", "-C", str(repo), "check-ignore", "-q", "--no-index", path],
                          check=False).returncode == 0


# -- through the fab command line -------------------------------------------------------------

def test_a_clean_shop_passes_with_exit_0(tmp_path: Path, fab) -> None:
    repo = make_repo(tmp_path / "shop", GOOD, {**SHOP, **BUILT})
    result = fab("--path", str(repo))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout and f"{repo} is clean" in result.stdout
    assert row(result.stdout, "vendor/").endswith("ignored (.gitignore:1 `/vendor/`)")
    assert "tracked, not ignored" in row(result.stdout, "pub/static/.htaccess")
    assert set(git(repo, "ls-files").split()) == set(SHOP) | {".gitignore"}


def test_tracked_vendor_is_counted_and_the_printed_command_cleans_it(tmp_path: Path,
                                                                      fab) -> None:
    vendor = {f"vendor/magento/module-{i}/registration.php": "<?php\n" for i in range(1233)}
    repo = make_repo(tmp_path / "shop", GOOD.replace(b"/vendor/\n", b""),
                     {**SHOP, **vendor, "vendor/autoload.php": "<?php\n"})
    result = fab("--path", str(repo))
    assert result.returncode == 1, result.stdout + result.stderr
    assert row(result.stdout, "vendor/").startswith("  FAIL vendor/")
    assert "NOT ignored: vendor/autoload.php" in row(result.stdout, "vendor/")
    line = "vendor/: 1,234 files tracked - remove with `git rm -r --cached -- vendor`"
    assert line in result.stdout
    assert "1 problem in" in result.stderr and "--fix" in result.stderr
    for name in ("generated/", "var/", "pub/static/", "app/etc/env.php", ".env files"):
        assert row(result.stdout, name).startswith("  ok"), name

    fixed = fab("--path", str(repo), "--fix")
    assert fixed.returncode == 1, "--fix adds the rule but never untracks"
    assert len(git(repo, "ls-files", "vendor").split()) == 1234
    assert row(fixed.stdout, "vendor/").startswith("  FAIL vendor/                ignored")

    command = re.search(r"remove with `([^`]+)`", fixed.stdout).group(1)
    subprocess.run(command, shell=True, cwd=repo, check=True, capture_output=True)
    git(repo, "commit", "-q", "-am", "untrack vendor")
    clean = fab("--path", str(repo))
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert git(repo, "ls-files", "vendor") == "" and (repo / "vendor/autoload.php").exists()


def test_a_tracked_env_php_is_a_leak_even_when_ignored(tmp_path: Path, fab) -> None:
    repo = make_repo(tmp_path / "shop", GOOD, SHOP, force=())
    write(repo, {"app/etc/env.php": BUILT["app/etc/env.php"]})
    git(repo, "add", "-f", "app/etc/env.php")
    git(repo, "commit", "-q", "-m", "oops")
    result = fab("--path", str(repo))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "ignored (.gitignore:10 `/app/etc/env.php`)" in row(result.stdout, "app/etc/env.php")
    assert ("app/etc/env.php: 1 file tracked - remove with"
            " `git rm --cached -- app/etc/env.php`") in result.stdout
    assert "treat the credentials in them as leaked" in result.stdout
    assert "1 problem in" in result.stderr


def test_env_files_anywhere_but_templates(tmp_path: Path, fab) -> None:
    files = {**SHOP, ".env": "DEPLOY_REPO=https://u:tok@git.example/shop.git\n",
             "deploy/.env.production": "DEPLOY_HOSTS=web1\n", ".env.example": "DEPLOY_PATH=\n"}
    repo = make_repo(tmp_path / "shop", GOOD, files,
                     force=(".env", "deploy/.env.production", ".env.example"))
    result = fab("--path", str(repo))
    assert result.returncode == 1, result.stdout + result.stderr
    assert (".env files: 2 files tracked - remove with"
            " `git rm --cached -- .env deploy/.env.production`") in result.stdout


def test_fix_appends_to_a_file_without_final_newline_byte_for_byte_and_twice_adds_nothing(
        tmp_path: Path, fab) -> None:
    mine = b"# our shop\n/.idea\n*.log  "
    repo = make_repo(tmp_path / "shop", mine, SHOP)
    write(repo, BUILT)
    before = fab("--path", str(repo))
    assert before.returncode == 1 and before.stdout.count("FAIL") == 9, before.stdout

    first = fab("--path", str(repo), "--fix")
    assert first.returncode == 0, first.stdout + first.stderr
    content = (repo / ".gitignore").read_bytes()
    assert content.startswith(mine + b"\n\n" + HEADER.encode() + b"\n")
    assert content.endswith(b"\n") and content.count(HEADER.encode()) == 1
    assert "/vendor/" in first.stdout and "is clean" in first.stdout
    for path in BUILT:
        assert ignored(repo, path), path
    for path in ("pub/static/.htaccess", "var/.htaccess", "composer.lock", "pub/index.php"):
        assert not ignored(repo, path), path

    second = fab("--path", str(repo), "--fix")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "nothing to add" in second.stdout
    assert (repo / ".gitignore").read_bytes() == content


def test_fix_creates_a_missing_gitignore(tmp_path: Path, fab) -> None:
    repo = make_repo(tmp_path / "shop", None, SHOP)
    result = fab("--path", str(repo), "--fix")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (repo / ".gitignore").read_bytes().startswith(HEADER.encode() + b"\n/vendor/\n")


def test_a_directory_rule_that_swallows_magentos_htaccess_is_refused_and_fixed(
        tmp_path: Path, fab) -> None:
    repo = make_repo(tmp_path / "shop", b"/vendor/\n/pub/static/\nvar\n/app/etc/env.php\n",
                     SHOP, force=("pub/static/.htaccess", "var/.htaccess"))
    write(repo, BUILT)
    result = fab("--path", str(repo))
    assert result.returncode == 1
    static = row(result.stdout, "pub/static/.htaccess")
    assert static.startswith("  FAIL") and "IGNORED by .gitignore:2 `/pub/static/`" in static
    assert "IGNORED by .gitignore:3 `var`" in row(result.stdout, "var/.htaccess")
    assert row(result.stdout, "pub/static/").startswith("  ok")  # the directory IS ignored

    fixed = fab("--path", str(repo), "--fix")
    assert "!/pub/static/\n  /pub/static/*\n  !/pub/static/.htaccess" in fixed.stdout
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert not ignored(repo, "pub/static/.htaccess") and not ignored(repo, "var/.htaccess")
    assert ignored(repo, "pub/static/deployed_version.txt") and ignored(repo, "var/log/x.log")


def test_a_tracked_htaccess_in_a_media_subfolder_stays_trackable_after_fix(
        tmp_path: Path, fab) -> None:
    gitignore = GOOD.replace(b"/pub/media/*\n!/pub/media/.htaccess\n", b"")
    repo = make_repo(tmp_path / "shop", gitignore,
                     {**SHOP, "pub/media/customer/.htaccess": "Require all denied\n"})
    write(repo, {"pub/media/customer/a/b/upload.pdf": "pdf", "pub/media/wysiwyg/x.jpg": "j"})
    fixed = fab("--path", str(repo), "--fix")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "!/pub/media/customer/\n  /pub/media/customer/*\n" in fixed.stdout
    assert not ignored(repo, "pub/media/customer/.htaccess")
    assert not ignored(repo, "pub/media/.htaccess")
    for path in ("pub/media/customer/a/b/upload.pdf", "pub/media/wysiwyg/x.jpg"):
        assert ignored(repo, path), path
    assert git(repo, "status", "--porcelain", "--", "pub") == ""


def test_negations_nested_gitignore_and_info_exclude_count_as_git_counts_them(
        tmp_path: Path, fab) -> None:
    gitignore = GOOD.replace(b"/vendor/\n", b"/vendor/\n!/vendor/\n")  # undone
    repo = make_repo(tmp_path / "shop", gitignore, SHOP)
    result = fab("--path", str(repo))
    assert result.returncode == 1
    assert "NOT ignored: vendor/autoload.php" in row(result.stdout, "vendor/")

    fixed = fab("--path", str(repo), "--fix")  # the user's own `/vendor/` line is undone
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert (repo / ".gitignore").read_bytes().endswith(HEADER.encode() + b"\n/vendor/\n")

    (repo / ".git/info/exclude").write_text("/auth.json\n")
    (repo / ".gitignore").write_bytes(GOOD.replace(b"/auth.json\n", b""))
    local = fab("--path", str(repo))
    assert local.returncode == 0, local.stdout + local.stderr
    assert ("ignored (.git/info/exclude:1 `/auth.json`) - only in this clone"
            in row(local.stdout, "auth.json"))

    (repo / "pub/static/.gitignore").write_text("*\n")  # nested: wins over the top file
    nested = fab("--path", str(repo))
    assert nested.returncode == 1
    assert "IGNORED by pub/static/.gitignore:1 `*`" in row(nested.stdout, "pub/static/.htaccess")
    once = fab("--path", str(repo), "--fix")
    assert once.returncode == 1, "a root rule cannot beat a nested .gitignore"
    content = (repo / ".gitignore").read_bytes()
    twice = fab("--path", str(repo), "--fix")
    assert twice.returncode == 1 and "nothing to add" in twice.stdout
    assert (repo / ".gitignore").read_bytes() == content


def test_magento_core_style_rules_ignore_config_php_which_a_shop_must_track(
        tmp_path: Path, fab) -> None:
    core = GOOD + b"/app/etc/config.php\n"  # magento/magento2's own repo ignores it
    repo = make_repo(tmp_path / "shop", core, {k: v for k, v in SHOP.items()
                                               if k not in ("app/etc/config.php",
                                                            "composer.lock")})
    write(repo, {"app/etc/config.php": SHOP["app/etc/config.php"]})
    result = fab("--path", str(repo))
    assert result.returncode == 1
    config = row(result.stdout, "app/etc/config.php")
    assert "IGNORED by .gitignore:15 `/app/etc/config.php`" in config
    assert "NOT tracked" in row(result.stdout, "composer.lock")
    assert "2 problems" in result.stderr

    fixed = fab("--path", str(repo), "--fix")
    assert fixed.returncode == 1, "still untracked: --fix never runs git add either"
    assert not ignored(repo, "app/etc/config.php")
    assert "`git add -- composer.lock`" in row(fixed.stdout, "composer.lock")


def test_default_is_the_top_level_of_the_current_directory(tmp_path: Path, fab) -> None:
    repo = make_repo(tmp_path / "shop", GOOD, SHOP)
    result = fab(cwd=repo / "app/etc")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"git repository: {repo}\n" in result.stdout


def test_a_directory_that_is_not_a_repository_is_a_clear_error(tmp_path: Path, fab) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    result = fab("--path", str(plain))
    assert result.returncode == 2
    assert f"--path {plain}: not a git repository" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not (plain / ".gitignore").exists()
    here = fab("--fix", cwd=plain)
    assert here.returncode == 2 and f"the current directory {plain}: not a git" in here.stderr
    missing = fab("--path", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "no such directory" in missing.stderr


def test_odd_file_names_are_quoted_and_literal_in_the_command(tmp_path: Path, fab) -> None:
    repo = make_repo(tmp_path / "shop", GOOD.replace(b"/pub/media/*\n", b""),
                     {**SHOP, "pub/media/wysiwyg/it's a banner.jpg": "j", "pub/media/.h*": "x"})
    result = fab("--path", str(repo))
    command = re.search(r"pub/media/: 2 files tracked - remove with `([^`]+)`",
                        result.stdout).group(1)
    assert command == ("git --literal-pathspecs rm -r --cached -- 'pub/media/.h*'"
                       " pub/media/wysiwyg")
    subprocess.run(command, shell=True, cwd=repo, check=True, capture_output=True)
    assert git(repo, "ls-files", "pub/media").split() == ["pub/media/.htaccess"]


def test_a_symlinked_media_folder_is_asked_about_as_the_link_git_would_record(
        tmp_path: Path, fab) -> None:
    repo = make_repo(tmp_path / "shop", GOOD, SHOP)
    shared = tmp_path / "shared-media"
    (shared / "catalog").mkdir(parents=True)
    (shared / "catalog/a.jpg").write_text("j")
    subprocess.run(["rm", "-r", str(repo / "pub/media")], check=True)
    (repo / "pub/media").symlink_to(shared)
    result = fab("--path", str(repo))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "NOT ignored: pub/media (a symlink" in row(result.stdout, "pub/media/")
    assert "`/pub/media` in .git/info/exclude" in result.stdout

    (repo / ".git/info/exclude").write_text("/pub/media\n")
    local = fab("--path", str(repo))
    assert local.returncode == 0, local.stdout + local.stderr
    assert "only in this clone" in row(local.stdout, "pub/media/")


# -- the pure parts ---------------------------------------------------------------------------

def test_appended_keeps_every_byte_and_the_line_endings() -> None:
    assert appended(b"a\r\nb", ["/x"]) == b"a\r\nb\r\n\r\n" + HEADER.encode() + b"\r\n/x\r\n"
    assert appended(b"a\n", ["/x"]) == b"a\n\n" + HEADER.encode() + b"\n/x\n"
    assert appended(b"", ["/x"]) == HEADER.encode() + b"\n/x\n"
    assert appended(b"a", []) == b"a"


def test_removal_targets_spare_the_htaccess_magento_ships() -> None:
    offenders = ["pub/media/customer/a/b/x.pdf", "pub/media/logo.png", "pub/media/wysiwyg/1.jpg"]
    exempt = ["pub/media/.htaccess", "pub/media/customer/.htaccess"]
    assert removal_targets(offenders, exempt, "pub/media") == [
        "pub/media/customer/a", "pub/media/logo.png", "pub/media/wysiwyg"]
    assert removal_targets(["vendor/a", "vendor/b/c"], [], "vendor") == ["vendor"]


def test_reinclude_lines_reopen_each_level_under_a_rule_directory_only() -> None:
    assert reinclude_lines("pub/media/customer/.htaccess") == [
        "!/pub/media/", "/pub/media/*", "!/pub/media/customer/", "/pub/media/customer/*",
        "!/pub/media/customer/.htaccess"]
    assert reinclude_lines("app/etc/config.php") == ["!/app/etc/config.php"]


def test_a_short_check_ignore_answer_is_an_error_not_a_guess() -> None:
    with pytest.raises(RuntimeError, match="2 paths"):
        parse_check_ignore(b".gitignore\x001\x00/v/\x00v/a\x00", ["v/a", "v/b"])


def test_missing_lines_skip_only_what_an_earlier_fix_added() -> None:
    from fabric_magento_deploy.gitignore import RULES, Audit, Match, RuleResult
    vendor = RuleResult(RULES[0], Match("vendor/autoload.php"), ("vendor/autoload.php",), (), ())
    result = Audit("/shop", (vendor,), ())
    assert missing_lines(result, []) == ["/vendor/"]
    assert missing_lines(result, [HEADER, "/vendor/"]) == []
