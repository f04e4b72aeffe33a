"""Host keys checked against known_hosts like OpenSSH, on a real sshd.

Fabric alone accepts any key. These tests connect to a rig host through an SSH config of
their own (known_hosts files, ``StrictHostKeyChecking``) and check each decision: unknown
key refused with the command to add it, known key accepted, changed key always refused,
``accept-new`` appending exactly one line, ``off`` only by explicit choice.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import fabric
import pytest
from scenario import Shop

from fabric_magento_deploy.hosts import Host, StepFailed

pytestmark = pytest.mark.real_hosts


def known_name(host) -> str:
    """How OpenSSH names a host in known_hosts: ``address``, or ``[address]:port``."""
    return host.address if host.ssh_port == 22 else f"[{host.address}]:{host.ssh_port}"


def host_key_line(host) -> str:
    """The host's key as a known_hosts line, as ``ssh`` would have written it."""
    kind, key = (host._etc / "ssh_host_ed25519_key.pub").read_text().split()[:2]
    return f"{known_name(host)} {kind} {key}\n"


def connect(rig, tmp: Path, strict: str, host_keys: str = "") -> Host:
    """Open a connection to web1 through an ssh_config that names ``tmp/known_hosts``."""
    web1 = rig.host("web1")
    config = tmp / "ssh_config"
    config.write_text(
        f"Host target\n  HostName {web1.address}\n  Port {web1.ssh_port}\n  User deployer\n"
        f"  IdentityFile {rig.key}\n  UserKnownHostsFile {tmp}/known_hosts\n"
        f"  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking {strict}\n")
    conn = fabric.Connection("target", config=fabric.Config(overrides={
        "ssh_config_path": str(config), "run": {"in_stream": False},
        "connect_kwargs": {"key_filename": [str(rig.key)], "allow_agent": False,
                           "look_for_keys": False}}))
    host = Host("target", conn, echo=False, host_keys=host_keys)
    host.open()
    assert host.output("echo connected") == "connected"
    host.close()
    return host


def test_an_unknown_key_is_refused_with_the_command_to_add_it(rig1, tmp_path: Path) -> None:
    web1 = rig1.host("web1")
    with pytest.raises(StepFailed) as err:
        connect(rig1, tmp_path, "ask")
    message = str(err.value)
    assert "is not known" in message and "SHA256:" in message
    port = "" if web1.ssh_port == 22 else f"-p {web1.ssh_port} "
    assert f"ssh-keyscan {port}-t ssh-ed25519 {web1.address}" in message
    assert not (tmp_path / "known_hosts").exists()


def test_a_known_key_is_accepted_and_a_changed_one_refused_in_every_mode(
        rig1, tmp_path: Path) -> None:
    (tmp_path / "known_hosts").write_text("# managed by hand\n" + host_key_line(rig1.host("web1")))
    connect(rig1, tmp_path, "yes")
    # Debian's ssh_config says HashKnownHosts yes: entries are |1|salt|hash, still known.
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(tmp_path / "known_hosts")], check=True)
    assert "|1|" in (tmp_path / "known_hosts").read_text()
    connect(rig1, tmp_path, "yes")
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    kind, key = (other.with_suffix(".pub")).read_text().split()[:2]
    web1 = rig1.host("web1")
    (tmp_path / "known_hosts").write_text(f"{known_name(web1)} {kind} {key}\n")
    for strict, override in (("yes", ""), ("no", ""), ("yes", "off")):
        with pytest.raises(StepFailed, match="HOST KEY CHANGED"):
            connect(rig1, tmp_path, strict, override)


def test_accept_new_appends_one_line_and_then_the_key_is_known(rig1, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("# kept as it is\n")
    connect(rig1, tmp_path, "yes", host_keys="accept-new")
    assert known.read_text() == "# kept as it is\n" + host_key_line(rig1.host("web1"))
    connect(rig1, tmp_path, "yes")  # strict now passes: the key was learnt
    connect(rig1, tmp_path, "accept-new")  # as StrictHostKeyChecking in the SSH config too
    assert known.read_text().count("ssh-ed25519") == 1


def test_off_accepts_without_recording(rig1, tmp_path: Path) -> None:
    connect(rig1, tmp_path, "no")
    connect(rig1, tmp_path, "yes", host_keys="off")
    assert not (tmp_path / "known_hosts").exists()


def test_a_deploy_to_an_unknown_host_key_changes_nothing(rig1) -> None:
    """The rig's ssh_config has ``UserKnownHostsFile /dev/null``: every key is unknown."""
    shop = Shop(rig1)
    web1 = rig1.host("web1")
    result = shop.fab("deploy", DEPLOY_HOST_KEYS="strict")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "is not known" in result.stderr and "ssh-keyscan" in result.stderr
    assert shop.log(web1) == [] and not web1.inside("/srv/shop/releases").exists()
