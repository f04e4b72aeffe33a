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


def new_token() -> str:
    return secrets.token_hex(8)


def section(token: str, name: str, command: str) -> str:
    """``command`` in a subshell without stdin, stderr with stdout, framed by markers."""
    return (f"printf '\\n@@%s begin %s\\n' {token} {name}\n"
            f"( {command}\n) </dev/null 2>&1\n"
            f"printf '\\n@@%s end %s %s\\n' {token} {name} \"$?\"\n")


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
