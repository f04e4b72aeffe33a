"""Host identity: ``user@host:port``; two hosts never share a result, one host never counts twice.

Behind a load balancer or a NAT, several web servers are often reached on one address
with different SSH ports. Named by address alone they would be one host: one's failed
build hidden by the other's success, and a switch of a host that did not build.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest
from fabric import Connection
from scenario import Shop

from fabric_magento_deploy import deploy_to
from fabric_magento_deploy.deploy import DeployError
from fabric_magento_deploy.hosts import DuplicateHost, Host, distinct, on_all
from fabric_magento_deploy.settings import Settings

SETTINGS = Settings(deploy_path="/srv/shop")


def test_identity_is_user_host_port_and_names_stay_short_when_unambiguous() -> None:
    hosts = distinct([Host("lb", Connection("deploy@lb:2201")),
                      Host("lb", Connection("deploy@lb:2202")),
                      Host("web3", Connection("deploy@web3"))], SETTINGS)
    assert [h.key for h in hosts] == ["deploy@lb:2201", "deploy@lb:2202", "deploy@web3:22"]
    assert [h.name for h in hosts] == ["deploy@lb:2201", "deploy@lb:2202", "web3"]


def test_the_same_host_twice_is_refused() -> None:
    with pytest.raises(DuplicateHost, match="deploy@web1:22"):
        distinct([Host("web1", Connection("deploy@web1")),
                  Host("web1", Connection("deploy@web1:22"))], SETTINGS)


def test_results_of_two_hosts_with_one_name_cannot_overwrite_each_other() -> None:
    same = [Host("lb", Connection("deploy@lb:2201")), Host("lb", Connection("deploy@lb:2202"))]
    with pytest.raises(DuplicateHost):
        on_all(same, lambda h: h.key)


@contextlib.contextmanager
def forwarded(targets: list[tuple[str, int]]) -> Iterator[list[int]]:
    """Listen on 127.0.0.1, one port per target, and relay each connection to its target:
    several hosts behind one address, as behind a NAT. Yields the ports."""
    listeners, stop = [], threading.Event()

    def pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def serve(listener: socket.socket, target: tuple[str, int]) -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pipe, args=(a, b), daemon=True).start()

    for target in targets:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)
        threading.Thread(target=serve, args=(listener, target), daemon=True).start()
    try:
        yield [sock.getsockname()[1] for sock in listeners]
    finally:
        stop.set()
        for sock in listeners:
            sock.close()


@pytest.mark.real_hosts
def test_a_failed_build_behind_a_shared_address_switches_nobody(rig3) -> None:
    shop = Shop(rig3)
    web1, web2 = rig3.host("web1"), rig3.host("web2")
    shop.deploy(hosts=["web1", "web2"], DEPLOY_HOSTS="web1,web2")
    live = shop.live(web1)
    shop.commit(label="v2")
    shop.faults(web2, {"setup:di:compile": {"exit": 1, "message": "Fatal: boom on web2"}})
    with forwarded([(h.address, h.ssh_port) for h in (web1, web2)]) as ports:
        hosts = [Host.from_context(Connection(f"deployer@127.0.0.1:{port}",
                                              config=rig3.fabric_config()), echo=False)
                 for port in ports]
        with pytest.raises(DeployError, match=rf"(?s)deployer@127\.0\.0\.1:{ports[1]}.*boom"):
            # 127.0.0.1 is not in the rig's ssh_config (which turns key checks off for web*)
            deploy_to(hosts, shop.settings(DEPLOY_HOSTS=None, host_keys="off"), quiet=True)
    assert shop.live(web1) == live and shop.live(web2) == live
    assert shop.releases(web1) == [live] and shop.releases(web2) == [live]


@pytest.mark.real_hosts
def test_a_host_given_twice_is_refused_before_anything_runs(rig1) -> None:
    shop = Shop(rig1)
    web1 = rig1.host("web1")
    result = shop.fab("deploy", "--hosts=web1,web1")
    assert result.returncode == 2 and "more than once" in result.stderr, result.stderr
    assert shop.log(web1) == [] and not web1.inside("/srv/shop/releases").exists()
    env = shop.fab("deploy", DEPLOY_HOSTS="web1, web1")
    assert env.returncode == 2 and "DEPLOY_HOSTS" in env.stderr and "web1" in env.stderr


def test_a_host_that_could_not_be_reached_is_tried_once_by_later_steps(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A host lost mid-deploy: the first step waits the retry delays (it may be an sshd
    restarting), the later ones (switch back, unlock) try it once, so the deploy names it
    in seconds instead of waiting the delays again at every step."""
    with socket.socket() as sock:  # a port nobody listens on: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    attempts: list[float] = []
    delays: list[float] = []
    real_open = Connection.open

    def counted_open(self: Connection) -> None:
        attempts.append(1)
        real_open(self)

    monkeypatch.setattr(Connection, "open", counted_open)
    monkeypatch.setattr("fabric_magento_deploy.hosts.time.sleep", delays.append)
    host = Host("web9", Connection(f"deployer@127.0.0.1:{port}",
                                   connect_kwargs={"look_for_keys": False}))
    with pytest.raises(Exception, match="web9"):
        host.run("true", step="first")
    assert (len(attempts), delays) == (3, [1.0, 3.0])
    with pytest.raises(Exception, match="web9"):
        host.run("true", step="unlock")
    assert (len(attempts), delays) == (4, [1.0, 3.0])
