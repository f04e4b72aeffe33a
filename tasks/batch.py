"""Several questions to a host in ONE command: one SSH round trip instead of one each.

Each SSH command costs a round trip (~13 ms on a LAN with TCP_NODELAY, far more across
the internet) before it does anything. Where a deploy asks a host several independent
things, it sends one script whose sections each run in a subshell and print their
output between markers with the section's exit code. The markers carry a random token,
so no output (a file's content, a hostile path) can fake a section; a section that did
not reach its end marker is missing from the result, never guessed.
"""

from __future__ import annotations

import re
import secrets

from .hosts import Host, StepFailed, q
from .plan import Step


def new_token() -> str:
    return secrets.token_hex(8)


def section(token: str, name: str, command: str) -> str:
    """``command`` in a subshell without stdin, stderr with stdout, framed by markers.
    Afterwards ``$rc`` holds its exit code (a next section may act on it)."""
    return (f"printf '\\n@@%s begin %s\\n' {token} {name}\n"
            f"( {command}\n) </dev/null 2>&1; rc=$?\n"
            f"printf '\\n@@%s end %s %s\\n' {token} {name} \"$rc\"\n")


def script(token: str, commands: dict[str, str]) -> str:
    """One section per ``{name: command}``, in order; every section runs."""
    return "".join(section(token, name, command) for name, command in commands.items())


def sections(output: str, token: str) -> dict[str, tuple[int, str]]:
    """``{name: (exit code, output)}`` of every section that ran to its end marker."""
    begin = re.compile(rf"@@{re.escape(token)} begin (\S+)")
    end = re.compile(rf"@@{re.escape(token)} end (\S+) (\d+)")
    found: dict[str, tuple[int, str]] = {}
    name, lines = None, []
    for line in output.splitlines():
        if m := begin.fullmatch(line):
            name, lines = m[1], []
        elif (m := end.fullmatch(line)) and m[1] == name:
            found[name] = (int(m[2]), "\n".join(lines).strip())
            name = None
        elif name is not None:
            lines.append(line)
    return found


def chain(steps: list[Step], token: str) -> Step:
    """Several steps as one command (one round trip), in order, stopping at the first that
    fails; that one names itself on stderr (see :func:`run_chain`). Each step runs in a
    subshell, as it did alone: an ``exit`` in it ends that step. The steps' inputs are
    sent one after the other; a step without input reads ``/dev/null``, so it can never
    swallow the input of a later step (a credential read by ``checkout``)."""
    parts = [f"( {step.command}\n){'' if step.stdin else ' </dev/null'} || {{ rc=$?; "
             f"printf '\\n@@%s failed %s\\n' {token} {q(step.name)} >&2; exit $rc; }}"
             for step in steps]
    stdin = "".join(step.stdin or "" for step in steps) or None
    return Step(" + ".join(step.name for step in steps), "\n".join(parts), stdin)


def run_chain(host: Host, steps: list[Step], timeout: int | None = None) -> None:
    """Run ``steps`` in one round trip; a failure is raised as the failing step's own
    :class:`StepFailed` (its name and command), as if it had run alone."""
    token = new_token()
    try:
        host.step(chain(steps, token), timeout=timeout)
    except StepFailed as exc:
        failed = re.search(rf"@@{re.escape(token)} failed (.+)", exc.output)
        step = next((s for s in steps if failed and s.name == failed[1].strip()), None)
        if step is None:  # no exit code, timed out, or cut short: the chain as a whole
            raise
        output = exc.output.replace(failed[0], "") if failed else exc.output
        raise StepFailed(host.name, step.name, step.command, exc.exit_code, output,
                         timed_out=exc.timed_out) from exc


def ask(host: Host, commands: dict[str, str], step: str) -> dict[str, tuple[int, str]]:
    """Run ``commands`` as sections of one script on ``host``; their answers by name (a
    section that did not run to its end is missing). Raises :class:`StepFailed` only
    when the round trip itself failed (connection lost, timed out)."""
    token = new_token()
    result = host.run(script(token, commands), step=step, warn=True, echo=False)
    return sections(result.stdout + result.stderr, token)
