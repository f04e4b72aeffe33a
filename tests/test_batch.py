"""tasks/batch.py: several questions or steps in one SSH round trip, answers never guessed.

The parser is pure; the chain runs on a real host, because what matters is what a shell
does with the script: which step stops it, whose stdin a step reads.
"""

from __future__ import annotations

import pytest
from rig import Rig

from fabric_magento_deploy import batch
from fabric_magento_deploy.hosts import Host, StepFailed
from fabric_magento_deploy.plan import Step


def test_sections_keep_each_answer_and_its_exit_code_and_ignore_forged_markers() -> None:
    token = "a1b2"
    output = ("noise\n@@a1b2 begin uid\n1000\n@@a1b2 end uid 0\n"
              "@@a1b2 begin link\n@@ffff end link 0\nnot a link\n@@a1b2 end link 1\n"
              "@@a1b2 begin cut\nhalf an answer\n")
    assert batch.sections(output, token) == {
        "uid": (0, "1000"),
        "link": (1, "@@ffff end link 0\nnot a link"),  # another token is output, not a marker
    }  # "cut" never reached its end: missing, not guessed


def web1(rig: Rig) -> Host:
    """web1, with ``/srv/t`` writable by the deploy user."""
    rig.host("web1").sh(f"mkdir -p /srv/t && chown {rig.user}: /srv/t")
    return Host("web1", rig.connection("web1"), echo=False)


@pytest.mark.real_hosts
def test_every_section_runs_without_stdin_and_answers_by_name(rig1: Rig) -> None:
    host = web1(rig1)
    answers = batch.ask(host, {"one": "echo yes", "two": "cat; echo read; exit 3",
                               "three": "echo still runs >&2"}, step="questions")
    assert answers == {"one": (0, "yes"), "two": (3, "read"), "three": (0, "still runs")}


@pytest.mark.real_hosts
def test_a_chain_stops_at_the_failing_step_and_fails_as_that_step(rig1: Rig) -> None:
    host = web1(rig1)
    steps = [Step("first", "echo 1 >> /srv/t/chain.log"),
             Step("second", "echo 2 >> /srv/t/chain.log; echo broken >&2; exit 4"),
             Step("third", "echo 3 >> /srv/t/chain.log")]
    with pytest.raises(StepFailed) as failed:
        batch.run_chain(host, steps)
    assert (failed.value.step, failed.value.exit_code) == ("second", 4)
    assert failed.value.command == steps[1].command and "broken" in failed.value.output
    assert "@@" not in failed.value.output
    assert rig1.host("web1").inside("/srv/t/chain.log").read_text() == "1\n2\n"


@pytest.mark.real_hosts
def test_each_step_of_a_chain_reads_only_its_own_input(rig1: Rig) -> None:
    """A step without input reads /dev/null: it cannot swallow the credential a later
    step reads (the record step before a checkout with a token)."""
    host = web1(rig1)
    steps = [Step("greedy", "cat > /srv/t/greedy.txt"),
             Step("token", "IFS= read -r t && printf '%s' \"$t\" > /srv/t/token.txt", "s3cret\n"),
             Step("other", "IFS= read -r t && printf '%s' \"$t\" > /srv/t/other.txt", "two\n")]
    batch.run_chain(host, steps)
    files = {name: rig1.host("web1").inside(f"/srv/t/{name}.txt").read_text()
             for name in ("greedy", "token", "other")}
    assert files == {"greedy": "", "token": "s3cret", "other": "two"}
