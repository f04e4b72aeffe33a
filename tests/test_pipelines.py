"""The CI pipelines of docs/pipelines/ (GitHub Actions, GitLab CI, Bitbucket Pipelines).

Two kinds of checks:

* static: each YAML file parses, has the keys its CI requires, and every ``fab ...`` line
  in it names tasks and options that exist in OUR command line (read from ``fab --list``
  and ``fab --help TASK`` of this repository, so a renamed task or option fails here);
  host keys are pinned (``DEPLOY_HOST_KEYS=strict`` and a known_hosts), the key file is
  made 0600, ``DEPLOY_BUILD=local`` is set, no secret can reach the log, one deploy runs at
  a time per environment, the JSON summary is kept as an artifact, rollback is manual.
  ``test_a_breakage_is_caught`` applies a deliberate breakage to a copy of each file and
  requires the matching check to fail.
* on the rig: the deploy job's own shell (everything but the tooling install, which the
  test machine already has) runs against three real sshd hosts, as each CI would run it,
  with the secrets given as each CI gives them: the release is built once, is live on
  every host, the summary lands in the file the artifact keeps, no secret is printed; a
  failed deploy fails the job with exit 1; an unpinned host key stops it.
"""

from __future__ import annotations

import base64
import functools
import glob
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PIPELINES = ROOT / "docs" / "pipelines"
FAB = str(Path(sys.executable).with_name("fab"))
FILES = {"github": "github-actions.yml", "gitlab": "gitlab-ci.yml",
         "bitbucket": "bitbucket-pipelines.yml"}
SECRETS = ("SSH_PRIVATE_KEY", "COMPOSER_AUTH")  # prefixes: SSH_PRIVATE_KEY_B64 too
TOOLING = "# tooling"  # first line of a shell block that installs tools (skipped on the rig)
GITLAB_KEYWORDS = {"stages", "variables", "default", "include", "workflow", "image",
                   "services", "cache", "before_script", "after_script"}


# --------------------------------------------------------------------------- our CLI


@dataclass
class Option:
    names: set[str]
    takes_value: bool


@dataclass
class Cli:
    """What ``fab`` of this repository accepts: tasks, their options, core options."""

    tasks: set[str]
    core: list[Option]
    options: dict[str, list[Option]] = field(default_factory=dict)

    def task_options(self, task: str) -> list[Option]:
        if task not in self.options:
            self.options[task] = parse_options(fab_output("--help", task))
        return self.options[task]


def fab_output(*args: str) -> str:
    done = subprocess.run([FAB, "-r", str(ROOT), *args], text=True, capture_output=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


OPTION_LINE = re.compile(r"^\s{2}(?:(-\w)(?: \[?[A-Z]+\]?)?, )?(--[\w-]+)(\[?=[A-Z]+\]?)?\s")


def parse_options(help_text: str) -> list[Option]:
    """``-r STRING, --ref=STRING`` / ``-j, --json`` lines of ``fab --help``."""
    found = []
    for line in help_text.splitlines():
        match = OPTION_LINE.match(line)
        if match:
            short, long, value = match.groups()
            found.append(Option({n for n in (short, long) if n},
                                bool(value) and not value.startswith("[")))
    return found


@functools.cache
def our_cli() -> Cli:
    listing = fab_output("--list")
    tasks = {line.split()[0] for line in listing.splitlines()
             if line.startswith("  ") and not line.startswith("   ")}
    return Cli(tasks, parse_options(fab_output("--help")))


def positional(task: str) -> list[str]:
    """Invoke's positional arguments of a task (``fab --help`` does not show them)."""
    from fabric_magento_deploy import ns
    return list(ns[task].positional)


# --------------------------------------------------------------------------- the YAML


@dataclass
class Chunk:
    """One shell block of a job, as the CI would run it."""

    job: str
    text: str
    env: dict[str, str]


@dataclass
class Job:
    name: str
    config: dict
    chunks: list[Chunk]

    @property
    def text(self) -> str:
        return "\n".join(c.text for c in self.chunks)

    def env(self) -> dict[str, str]:
        """Variables the CI sets for the job's shell, plus ``export A=x`` in its blocks."""
        env: dict[str, str] = {}
        for chunk in self.chunks:
            env.update(chunk.env)
            for line in logical_lines(chunk.text):
                if line.startswith("export "):
                    for word in shlex.split(line)[1:]:
                        name, _, value = word.partition("=")
                        env[name] = value
        return env

    def fab_lines(self) -> list[str]:
        return [line for c in self.chunks for line in fab_lines(c.text)]


def load(ci: str, text: str | None = None) -> dict:
    data = yaml.safe_load(text if text is not None else (PIPELINES / FILES[ci]).read_text())
    assert isinstance(data, dict), f"{FILES[ci]}: not a mapping"
    return data


def as_text(value: object) -> str:
    return value if isinstance(value, str) else "\n".join(map(str, value or []))


def env_of(mapping: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in (mapping or {}).items()} if isinstance(mapping, dict) else {}


def github_jobs(data: dict) -> Iterator[Job]:
    base = env_of(data.get("env"))
    for name, job in data["jobs"].items():
        env = {**base, **env_of(job.get("env"))}
        chunks = [Chunk(name, step["run"], {**env, **env_of(step.get("env"))})
                  for step in job["steps"] if "run" in step]
        yield Job(name, job, chunks)


def gitlab_resolved(data: dict, name: str) -> dict:
    """A job with its ``extends`` merged in (hashes deep, the rest replaced), as GitLab does."""
    job = data[name]
    parents = job.get("extends", [])
    merged: dict = {}
    for parent in [parents] if isinstance(parents, str) else parents:
        merged = deep_merge(merged, gitlab_resolved(data, parent))
    return deep_merge(merged, {k: v for k, v in job.items() if k != "extends"})


def deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for key, value in b.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(
            out.get(key), dict) else value
    return out


def gitlab_jobs(data: dict) -> Iterator[Job]:
    base = env_of(data.get("variables"))
    for name in data:
        if name in GITLAB_KEYWORDS or name.startswith("."):
            continue
        job = gitlab_resolved(data, name)
        env = {**base, **env_of(job.get("variables"))}
        blocks = [*job.get("before_script", []), *job.get("script", [])]
        yield Job(name, job, [Chunk(name, as_text(b), env) for b in blocks])


def bitbucket_jobs(data: dict) -> Iterator[Job]:
    pipelines = data["pipelines"]
    groups = {"default": pipelines.get("default")} if "default" in pipelines else {}
    for kind in ("branches", "custom", "tags", "pull-requests"):
        groups.update({f"{kind}:{k}": v for k, v in (pipelines.get(kind) or {}).items()})
    for group, items in groups.items():
        for index, item in enumerate(items):
            if "step" in item:
                step = item["step"]
                name = f"{group}[{index}]"
                yield Job(name, {**step, "group": group},
                          [Chunk(name, as_text(b), {}) for b in step["script"]])


JOBS = {"github": github_jobs, "gitlab": gitlab_jobs, "bitbucket": bitbucket_jobs}


def jobs(ci: str, data: dict) -> list[Job]:
    return list(JOBS[ci](data))


def fab_jobs(ci: str, data: dict, task: str | None = None) -> list[Job]:
    """Jobs that run ``fab`` (with ``task`` among its tasks, if given)."""
    return [j for j in jobs(ci, data)
            if any(task is None or task in fab_tasks(line) for line in j.fab_lines())]


# --------------------------------------------------------------------------- the shell


def logical_lines(text: str) -> list[str]:
    return [line.strip() for line in text.replace("\\\n", " ").splitlines() if line.strip()]


FAB_CALL = re.compile(r"(?:^|[;&|(]\s*)(fab\s.*)")


def fab_lines(text: str) -> list[str]:
    return [m.group(1) for line in logical_lines(text) if (m := FAB_CALL.search(line))]


def fab_words(line: str) -> list[str]:
    """The arguments of ``fab`` on a line: up to its redirection or ``||``; a
    ``${X:+--to "$X"}`` counts as its words."""
    line = re.sub(r"\$\{\w+:\+([^}]*)\}", r"\1", line)
    words = shlex.split(line, posix=True, comments=True)
    end = next((i for i, w in enumerate(words) if w in ("||", "&&", "|", ";", ">", "2>")
                or w.startswith(">")), len(words))
    return words[1:end]


def check_fab_line(line: str, cli: Cli) -> list[str]:
    """The tasks on one ``fab`` line; an AssertionError names what our CLI lacks."""
    words = fab_words(line)
    tasks: list[str] = []
    left: list[str] = []
    i = 0

    def option(options: list[Option], where: str) -> None:
        nonlocal i
        word = words[i]
        name = word.split("=", 1)[0]
        found = next((o for o in options if name in o.names), None)
        assert found, f"{line!r}: {where} has no option {name} in our fab"
        i += 1
        if found.takes_value and "=" not in word:
            assert i < len(words), f"{line!r}: {name} needs a value"
            i += 1

    while i < len(words) and words[i].startswith("-"):
        option(cli.core, "fab itself")
    while i < len(words):
        word = words[i]
        if word.startswith("-"):
            assert tasks, f"{line!r}: {word} before any task"
            option(cli.task_options(tasks[-1]), f"task {tasks[-1]!r}")
        elif left:
            left.pop(0)
            i += 1
        else:
            assert word in cli.tasks, (f"{line!r}: no task {word!r} in our fab --list "
                                       f"({', '.join(sorted(cli.tasks))})")
            tasks.append(word)
            left = positional(word)
            i += 1
    assert tasks, f"{line!r}: no task"
    return tasks


def fab_tasks(line: str) -> list[str]:
    return [w for w in fab_words(line) if w in our_cli().tasks]


# --------------------------------------------------------------------------- the checks


def check_structure(ci: str, data: dict) -> None:
    if ci == "github":
        on = data.get("on", data.get(True))  # YAML 1.1 reads a bare `on` as true
        assert isinstance(on, dict) and "push" in on, "github: `on: push` missing"
        assert data.get("jobs"), "github: no jobs"
        for name, job in data["jobs"].items():
            assert job.get("runs-on"), f"github: job {name} has no runs-on"
            steps = job.get("steps")
            assert steps and all("run" in s or "uses" in s for s in steps), \
                f"github: job {name}: every step needs run or uses"
    elif ci == "gitlab":
        stages = data.get("stages")
        assert isinstance(stages, list) and stages, "gitlab: no stages"
        found = jobs(ci, data)
        assert found, "gitlab: no jobs"
        for job in found:
            assert job.config.get("script"), f"gitlab: job {job.name} has no script"
            assert job.config.get("stage", "test") in stages, \
                f"gitlab: job {job.name}: stage {job.config.get('stage')!r} not in stages"
    else:
        assert isinstance(data.get("pipelines"), dict), "bitbucket: no pipelines"
        found = jobs(ci, data)
        assert found, "bitbucket: no step"
        for job in found:
            assert isinstance(job.config.get("script"), list) and job.config["script"], \
                f"bitbucket: {job.name} has no script"


def check_fab_lines(ci: str, data: dict) -> None:
    cli = our_cli()
    lines = [line for job in jobs(ci, data) for line in job.fab_lines()]
    assert lines, f"{ci}: no fab line"
    tasks = {t for line in lines for t in check_fab_line(line, cli)}
    assert {"deploy", "rollback"} <= tasks, f"{ci}: deploy and rollback expected, got {tasks}"
    for line in lines:
        words = fab_words(line)
        assert "-S" in words or "--ssh-config" in words, \
            f"{ci}: {line!r} must use the pinned ssh config (-S)"
        if "deploy" in fab_tasks(line) or "rollback" in fab_tasks(line):
            assert "--json" in words and re.search(r"\s>\s*\S+\.json\b", line), \
                f"{ci}: {line!r} must keep the summary: --json > FILE.json"


def check_settings(ci: str, data: dict) -> None:
    for job in fab_jobs(ci, data, "deploy"):
        env = job.env()
        assert env.get("DEPLOY_BUILD") == "local", f"{ci}: {job.name}: DEPLOY_BUILD=local not set"
    for job in fab_jobs(ci, data):
        env, text = job.env(), job.text
        assert env.get("DEPLOY_HOST_KEYS") == "strict", \
            f"{ci}: {job.name}: DEPLOY_HOST_KEYS=strict not set"
        assert re.search(r"(>|\bcp\s+\S+)\s*\"?\$ssh_dir/known_hosts\"?", text) and \
            "UserKnownHostsFile $ssh_dir/known_hosts" in text, \
            f"{ci}: {job.name}: no known_hosts written and used"
        assert "StrictHostKeyChecking yes" in text, f"{ci}: {job.name}: host keys not strict"
        assert "ssh-keyscan" not in text, f"{ci}: {job.name}: keys must be pinned, not scanned"


def check_key_file(ci: str, data: dict) -> None:
    for job in fab_jobs(ci, data):
        lines = logical_lines(job.text)
        written = [m.group(1) for line in lines if "SSH_PRIVATE_KEY" in line
                   and (m := re.search(r">\s*(\"?\$ssh_dir/[\w.-]+\"?)\s*$", line))]
        assert written, f"{ci}: {job.name}: the key is not written to a file"
        key = written[0]
        first_fab = next(i for i, line in enumerate(lines) if FAB_CALL.search(line))
        assert any(line == f"chmod 600 {key}" for line in lines[:first_fab]), \
            f"{ci}: {job.name}: {key} never gets mode 600 before fab runs"
        assert "umask 077" in lines[:first_fab], f"{ci}: {job.name}: umask 077 missing"
        assert f"IdentityFile {key.strip(chr(34))}" in job.text, \
            f"{ci}: {job.name}: the ssh config does not use {key}"


def check_no_secret_printed(ci: str, data: dict) -> None:
    for job in jobs(ci, data):
        for line in logical_lines(job.text):
            assert not re.search(r"\bset\s+-\w*x|set\s+-o\s+xtrace|\b(ba)?sh\s+-\w*x", line), \
                f"{ci}: {job.name}: {line!r} traces commands (secrets would be printed)"
            assert "${{ secrets." not in line, \
                f"{ci}: {job.name}: {line!r}: a secret pasted into the script text"
            if any(f"${s}" in line or f"${{{s}" in line for s in SECRETS):
                assert not re.search(r"\becho\b", line), \
                    f"{ci}: {job.name}: {line!r} echoes a secret"
                assert re.search(r">\s*\"?\$ssh_dir/", line), \
                    f"{ci}: {job.name}: {line!r} sends a secret elsewhere than a key file"


def check_one_at_a_time(ci: str, data: dict) -> None:
    groups: dict[str, set[str]] = {}
    for job in fab_jobs(ci, data):
        if ci == "github":
            conc = job.config.get("concurrency")
            assert isinstance(conc, dict) and conc.get("group"), \
                f"{ci}: {job.name}: no concurrency group"
            assert conc.get("cancel-in-progress") is False, \
                f"{ci}: {job.name}: a running deploy must never be cancelled"
            environment = str(job.config.get("environment", ""))
            assert environment and environment in conc["group"], \
                f"{ci}: {job.name}: the concurrency group must name the environment"
            key = conc["group"].replace(environment, "<environment>")
        elif ci == "gitlab":
            key = job.config.get("resource_group")
            assert key, f"{ci}: {job.name}: no resource_group"
            assert job.config.get("interruptible") is False, f"{ci}: {job.name}: interruptible"
        else:
            key = job.config.get("deployment")
            assert key, f"{ci}: {job.name}: no deployment (Bitbucket's concurrency control)"
        tasks = {t for line in job.fab_lines() for t in fab_tasks(line)}
        groups.setdefault(str(key), set()).update(tasks & {"deploy", "rollback"})
    for key, tasks in groups.items():
        assert tasks == {"deploy", "rollback"}, \
            f"{ci}: {key}: deploy and rollback of an environment must share it ({tasks})"


def check_artifacts_and_rollback(ci: str, data: dict) -> None:
    for job in fab_jobs(ci, data):
        files = {m.group(1) for line in job.fab_lines()
                 if (m := re.search(r">\s*(\S+\.json)", line))}
        if ci == "github":
            kept = {s["with"]["path"] for s in job.config["steps"]
                    if str(s.get("uses", "")).startswith("actions/upload-artifact")
                    and s.get("if") == "always()"}
        elif ci == "gitlab":
            art = job.config.get("artifacts") or {}
            kept = set(art.get("paths", [])) if art.get("when") == "always" else set()
        else:
            kept = set(job.config.get("artifacts") or [])
        assert files <= kept, f"{ci}: {job.name}: {files - kept} not kept (on failure too)"
    for job in fab_jobs(ci, data, "rollback"):
        if ci == "github":
            assert job.config.get("if") == "github.event_name == 'workflow_dispatch'", \
                f"{ci}: {job.name}: rollback must only run by hand"
        elif ci == "gitlab":
            rules = job.config.get("rules") or []
            assert rules and all(r.get("when") == "manual" for r in rules), \
                f"{ci}: {job.name}: rollback must be manual"
        else:
            assert job.config["group"].startswith("custom:"), \
                f"{ci}: {job.name}: rollback must be a custom (manual) pipeline"


CHECKS = [check_structure, check_fab_lines, check_settings, check_key_file,
          check_no_secret_printed, check_one_at_a_time, check_artifacts_and_rollback]


@pytest.mark.parametrize("check", CHECKS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("ci", FILES)
def test_pipeline_file(ci: str, check) -> None:
    check(ci, load(ci))


#: (file, text replaced, replacement, the check that must fail, words of its message)
BREAKAGES = [
    ("github", "\njobs:", "\nwork:", check_structure, "no jobs"),
    ("gitlab", "stages:\n  - deploy\n", "", check_structure, "no stages"),
    ("bitbucket", "          script:\n            - export DEPLOY_STAGE=staging",
     "          scripts:\n            - export DEPLOY_STAGE=staging", check_structure, "script"),
    ("github", 'deploy --ref "$GITHUB_SHA"', 'ship --ref "$GITHUB_SHA"', check_fab_lines,
     "no task 'ship'"),
    ("gitlab", "deploy --ref", "deploy --reference", check_fab_lines, "no option --reference"),
    ("bitbucket", "rollback --json", "rollback --as-json", check_fab_lines, "--as-json"),
    ("gitlab", 'fab -S "$DEPLOY_SSH_CONFIG" stage', 'fab --ssh-conf "$DEPLOY_SSH_CONFIG" stage',
     check_fab_lines, "fab itself has no option --ssh-conf"),
    ("github", 'stage "$DEPLOY_STAGE" rollback', 'stage "$DEPLOY_STAGE" roll-back',
     check_fab_lines, "no task 'roll-back'"),
    ("github", "  DEPLOY_HOST_KEYS: strict", "  DEPLOY_HOST_KEYS: accept-new", check_settings,
     "DEPLOY_HOST_KEYS=strict"),
    ("bitbucket", " DEPLOY_BUILD=local ", " ", check_settings, "DEPLOY_BUILD=local"),
    ("gitlab", '"  UserKnownHostsFile $ssh_dir/known_hosts"', '"  UserKnownHostsFile /dev/null"',
     check_settings, "known_hosts"),
    ("gitlab", 'chmod 600 "$ssh_dir/id_deploy"', 'chmod 644 "$ssh_dir/id_deploy"',
     check_key_file, "mode 600"),
    ("github", "          umask 077\n", "", check_key_file, "umask"),
    ("github", "          status=0\n", "          set -x\n          status=0\n",
     check_no_secret_printed, "traces commands"),
    ("bitbucket", "  umask 077\n", '  echo "$SSH_PRIVATE_KEY_B64"\n              umask 077\n',
     check_no_secret_printed, "echoes a secret"),
    ("github", '"$SSH_PRIVATE_KEY" | tr', '"${{ secrets.SSH_PRIVATE_KEY }}" | tr',
     check_no_secret_printed, "pasted"),
    ("github", "cancel-in-progress: false", "cancel-in-progress: true", check_one_at_a_time,
     "never be cancelled"),
    ("gitlab", "  resource_group: staging\n", "", check_one_at_a_time, "no resource_group"),
    ("bitbucket", "          deployment: staging\n", "", check_one_at_a_time, "no deployment"),
    ("gitlab", "    when: always\n    expire_in: 90 days\n    paths:\n      - deploy-summary",
     "    expire_in: 90 days\n    paths:\n      - deploy-summary", check_artifacts_and_rollback,
     "not kept"),
    ("gitlab", "      when: manual\n", "", check_artifacts_and_rollback, "manual"),
]


@pytest.mark.parametrize("ci,old,new,check,message", BREAKAGES,
                         ids=[f"{b[0]}-{b[3].__name__}-{i}" for i, b in enumerate(BREAKAGES)])
def test_a_breakage_is_caught(ci: str, old: str, new: str, check, message: str) -> None:
    """Each check goes red on a copy of the file with a deliberate breakage."""
    text = (PIPELINES / FILES[ci]).read_text()
    assert old in text, f"breakage {old!r} no longer applies to {FILES[ci]}"
    check(ci, load(ci, text))  # the real file passes this check
    broken = text.replace(old, new)
    with pytest.raises((AssertionError, KeyError, TypeError)) as failed:
        check(ci, load(ci, broken))
    assert message in str(failed.value), str(failed.value)


# --------------------------------------------------------------------------- on the rig


GITHUB_EXPRESSIONS = {  # what GitHub substitutes for ${{ ... }} on a push to main
    "github.ref_name == 'main' && 'production' || 'staging'": "production",
    "github.token": "ghs_JOBTOKEN", "github.repository": "acme/shop",
}


@dataclass
class Runner:
    """A CI runner on this machine: the checkout, a temp dir, the secrets as the CI gives
    them, our ``fab`` on PATH (what the skipped tooling block installs)."""

    shop: object
    checkout: Path
    temp: Path
    key: str
    known_hosts: str
    composer_password: str = "MAGENTO-PRIVATE-KEY-0123456789"

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DEPLOY_", "GITHUB_"))}
        env.pop("SSH_AUTH_SOCK", None)
        env["PATH"] = f"{Path(FAB).parent}:{env['PATH']}"
        env["TMPDIR"] = str(self.temp)
        env["COMPOSER_AUTH"] = json.dumps({"http-basic": {"repo.magento.com": {
            "username": "public", "password": self.composer_password}}})
        return env

    def secrets(self, ci: str) -> dict[str, str]:
        files = self.temp / "ci-files"
        files.mkdir(exist_ok=True)
        (files / "key").write_text(self.key)
        (files / "known_hosts").write_text(self.known_hosts)
        sha = self.shop.commits[-1]  # type: ignore[attr-defined]
        if ci == "github":
            return {"RUNNER_TEMP": str(self.temp), "GITHUB_SHA": sha,
                    "GITHUB_ENV": str(files / "github_env"), "GITHUB_PATH": str(files / "path")}
        if ci == "gitlab":  # File variables: the value is a path
            return {"CI_COMMIT_SHA": sha, "SSH_PRIVATE_KEY": str(files / "key"),
                    "SSH_KNOWN_HOSTS": str(files / "known_hosts")}
        return {"BITBUCKET_COMMIT": sha,
                "SSH_PRIVATE_KEY_B64": base64.b64encode(self.key.encode()).decode(),
                "SSH_KNOWN_HOSTS_B64": base64.b64encode(self.known_hosts.encode()).decode()}

    def expand(self, value: str) -> str:
        """GitHub's ``${{ }}`` in env values; an expression not in the table fails."""
        table = {**GITHUB_EXPRESSIONS, "secrets.SSH_PRIVATE_KEY": self.key,
                 "vars.SSH_KNOWN_HOSTS": self.known_hosts,
                 "secrets.COMPOSER_AUTH": self.base_env()["COMPOSER_AUTH"]}
        return re.sub(r"\$\{\{\s*(.*?)\s*\}\}", lambda m: table[m.group(1)], value)

    def run_job(self, ci: str, job: Job) -> subprocess.CompletedProcess[str]:
        """The job's shell blocks (not the tooling), in one shell as GitLab and Bitbucket
        run them, or step by step with $GITHUB_ENV carried over as GitHub does."""
        env = {**self.base_env(), **self.secrets(ci)}
        blocks = [c for c in job.chunks if not c.text.lstrip().startswith(TOOLING)]
        repo = str(self.shop.repo)  # type: ignore[attr-defined]
        if ci != "github":
            script = "\n".join(c.text for c in blocks)
            return self.bash(script, {**env, **blocks[0].env, "DEPLOY_REPO": repo})
        out, err, done = "", "", None
        for chunk in blocks:
            step_env = {**env, **{k: self.expand(v) for k, v in chunk.env.items()}}
            github_env = Path(env["GITHUB_ENV"])
            if github_env.exists():
                step_env.update(line.split("=", 1) for line in github_env.read_text().split("\n")
                                if "=" in line)
            step_env["DEPLOY_REPO"] = repo  # the git host replaced by the rig's repository
            done = self.bash(chunk.text, step_env)
            out, err = out + done.stdout, err + done.stderr
            if done.returncode:
                break
        assert done is not None
        return subprocess.CompletedProcess(done.args, done.returncode, out, err)

    def bash(self, script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-e", "-c", script], cwd=self.checkout, env=env,
                              text=True, capture_output=True, timeout=600)


@pytest.fixture
def runner(rig3, tmp_path) -> Runner:
    from scenario import Shop

    shop = Shop(rig3)
    checkout = rig3.base / "checkout"
    checkout.mkdir()
    (checkout / "fabfile.py").write_text("from fabric_magento_deploy import ns  # noqa: F401\n")
    hosts = ",".join(f"{rig3.user}@{h.address}:{h.ssh_port}" for h in rig3.hosts)
    (checkout / ".env.production").write_text(
        f"DEPLOY_PATH={rig3.deploy_path}\nDEPLOY_HOSTS={hosts}\nDEPLOY_OPCACHE=none\n"
        "DEPLOY_HEALTH_PATHS=none\n")  # the rig runs sshd only: no web server to ask
    scanned = [subprocess.run(["ssh-keyscan", "-p", str(h.ssh_port), h.address], text=True,
                              capture_output=True, timeout=30, check=True).stdout
               for h in rig3.hosts]
    temp = tmp_path / "runner-temp"
    temp.mkdir()
    return Runner(shop, checkout, temp, rig3.key.read_text(), "".join(scanned))


def deploy_job(ci: str) -> Job:
    data = load(ci)
    found = fab_jobs(ci, data, "deploy")  # GitHub: one job for both environments
    return next((j for j in found if j.env().get("DEPLOY_STAGE") == "production"), found[0])


@pytest.mark.slow
@pytest.mark.real_hosts
@pytest.mark.parametrize("ci", FILES)
def test_the_deploy_job_deploys_on_real_hosts(ci: str, runner: Runner) -> None:
    shop = runner.shop
    done = runner.run_job(ci, deploy_job(ci))
    log = done.stdout + done.stderr
    assert done.returncode == 0, log
    summary = json.loads((runner.checkout / "deploy-summary.json").read_text())
    assert summary["commit"] == shop.commits[-1]
    assert summary["built_once_seconds"] is not None, "not built once (DEPLOY_BUILD=local)"
    assert set(summary["sent_bytes"]) == {f"{shop.rig.user}@{h.address}:{h.ssh_port}"
                                          for h in shop.rig.hosts} or \
        len(summary["sent_bytes"]) == 3, summary["sent_bytes"]
    assert {shop.live(h) for h in shop.rig.hosts} == {summary["release"]}
    secret_line = runner.key.strip().splitlines()[1]
    for secret in (secret_line, runner.composer_password, "ghs_JOBTOKEN"):
        assert secret not in log, f"a secret reached the {ci} log"
    keys = [Path(p) for p in glob.glob(f"{runner.temp}/**/id_deploy", recursive=True)]
    if ci == "github":
        assert keys == [], "the key is removed at the end of the job"
    else:
        assert keys and all(k.stat().st_mode & 0o777 == 0o600 for k in keys)


@pytest.mark.real_hosts
def test_a_failed_deploy_fails_the_job(runner: Runner) -> None:
    shop = runner.shop
    primary = shop.rig.hosts[0]
    shop.faults(primary, {"setup:db:status": {"exit": 1, "message": "SQLSTATE[HY000] gone"}})
    done = runner.run_job("gitlab", deploy_job("gitlab"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "deploy FAILED" in done.stderr
    assert all(shop.live(h) is None for h in shop.rig.hosts)


@pytest.mark.real_hosts
def test_an_unpinned_host_key_stops_the_job(runner: Runner) -> None:
    shop = runner.shop
    last = shop.rig.hosts[-1]
    names = {last.address, f"[{last.address}]:{last.ssh_port}"}
    before = len(runner.known_hosts.splitlines())
    runner.known_hosts = "".join(line + "\n" for line in runner.known_hosts.splitlines()
                                 if line.split()[0] not in names)
    assert 0 < len(runner.known_hosts.splitlines()) < before, "one host's keys left out"
    done = runner.run_job("github", deploy_job("github"))
    assert done.returncode != 0, done.stdout + done.stderr
    assert last.address in done.stdout + done.stderr
    assert all(shop.live(h) is None for h in shop.rig.hosts)
