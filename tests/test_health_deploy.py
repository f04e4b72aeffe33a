"""The health check inside real deploys, on rig hosts shaped the way production Magento
hosts are: nginx bound to the host's own address only (never 127.0.0.1), a vhost for the
shop's name (which does not resolve from anywhere), https with a certificate from a CA in
the host's trust store or a self-signed one, an http->https redirect, basic auth, the
operator's maintenance, Magento redirecting to its base URL, TLS ended in front of the
host, a cold page, a hung pool and a release that answers 500.

Each test says what the customer saw (status codes, which release) and what the tool
printed and exited with. Deploys run through ``fab`` like a user's, with no
``DEPLOY_HEALTH_*`` setting unless the test is about one: the check finds the shop.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pytest
from load import HttpLoad
from rig import Rig, WebHost, make_rig
from scenario import Shop

from fabric_magento_deploy.health import USER_AGENT

pytestmark = [pytest.mark.real_hosts(web=True), pytest.mark.slow]

NAME = "shop.test"
LABEL = "app/code/Shop/Catalog/Label.php"
# Fatal only for a web request: every build step (which loads the file from the CLI) passes.
BROKEN = "<?php\nreturn PHP_SAPI === 'cli' ? 'label' : \\Shop\\Catalog\\render_label();\n"
# A pool that hangs on the storefront of this release only (the previous one answers).
HUNG = "<?php\nif (PHP_SAPI !== 'cli') { sleep(8); }\nreturn 'hung';\n"
# A cold page: the first web request of this release takes 3 s, later ones are quick.
COLD = ("<?php\nif (PHP_SAPI !== 'cli' && @mkdir('/srv/log/warmed')) { sleep(3); }\n"
        "return 'cold';\n")


@pytest.fixture
def rigs() -> Iterator[list[Rig]]:
    """Rigs a test builds with :func:`production`, stopped after it."""
    made: list[Rig] = []
    try:
        yield made
    finally:
        for rig in made:
            rig.stop()


def production(rigs: list[Rig], hosts: int = 1, **web: object) -> Rig:
    """A rig whose nginx serves :data:`NAME` (``start_web(shop_name=..., **web)``)."""
    rig = make_rig(hosts)
    rigs.append(rig)
    rig.start_web(shop_name=NAME, **web)  # type: ignore[arg-type]
    return rig


def base(rig: Rig, scheme: str) -> str:
    """The shop's base URL as Magento stores it (the port only when the rig is not on the
    standard ones)."""
    port = rig.https_port if scheme == "https" else rig.http_port
    standard = 443 if scheme == "https" else 80
    return f"{scheme}://{NAME}{'' if port == standard else f':{port}'}/"


def fab_deploy(shop: Shop, **settings: str | None) -> tuple[int, str]:
    """``fab deploy`` with the check's defaults (the rig's short window removed)."""
    done = shop.fab("deploy", timeout=300, opcache="fcgi", health_window=None, **settings)
    return done.returncode, done.stdout + done.stderr


def history(host: WebHost) -> dict[str, dict]:
    folder = host.inside("/srv/shop/history")
    return {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}


def check_requests(host: WebHost) -> list[int]:
    """The statuses the health check got on ``host`` (nginx's log, by its User-Agent)."""
    log = host.inside("/srv/log/nginx-access.log").read_text()
    return [int(m[1]) for m in re.finditer(rf'" (\d{{3}}) \d+ "[^"]*" "{USER_AGENT}"', log)]


# --------------------------------------------------------------------------- shapes that pass


def test_a_four_line_env_deploys_code_and_schema_on_hosts_shaped_like_production(
        rigs: list[Rig]) -> None:
    """Three hosts, nginx on their own addresses only, the shop's base URL an https name
    that does not resolve, its certificate from a CA the hosts trust: a code release then
    a schema release under load, with only path, repository, branch and hosts set."""
    rig = production(rigs, 3, tls="ca", redirect_https=True)
    shop = Shop(rig, label="A", base_url=base(rig, "https"), use_in_frontend=True)
    first, said = fab_deploy(shop, health_paths="none")  # the first release: nothing live
    assert first == 0, said
    with HttpLoad.on_rig(rig) as load:
        shop.commit(label="B")
        code, said = fab_deploy(shop)
        assert code == 0, said
        shop.commit(label="C", modules={"Shop_Catalog": "1.1.0"})
        schema, said_schema = fab_deploy(shop)
        assert schema == 0, said_schema
        load.wait_after(time.time())
    assert load.failed() == [], load.summary()
    for host in rig.hosts:
        assert load.labels()[host.name][-1] == "C", load.summary()
        assert f"{NAME}:{rig.https_port} -> {host.address}" in said  # where it asked
        assert check_requests(host) and set(check_requests(host)) == {200}
    records = history(rig.hosts[0])
    checked = [r["health"] for r in records.values() if (r.get("health") or {}).get("hosts")]
    assert len(checked) == 2 and all(h["ok"] for h in checked), checked
    assert {h["url"] for c in checked for h in c["hosts"].values()} == {base(rig, "https")}


def test_an_http_base_url_behind_an_https_redirect_is_followed_once(rigs: list[Rig]) -> None:
    rig = production(rigs, tls="ca", redirect_https=True)
    shop = Shop(rig, label="A", base_url=base(rig, "http"))
    assert fab_deploy(shop, health_paths="none")[0] == 0
    shop.commit(label="B")
    code, said = fab_deploy(shop)
    assert code == 0, said
    assert f"redirects to {base(rig, 'https')}: the check follows it" in said, said
    [host] = rig.hosts
    # Before the build: the redirect, then the https page; after the switch: https only.
    assert 301 in check_requests(host) and check_requests(host)[-1] == 200


def test_magentos_redirect_to_its_base_url_is_not_a_failure(rigs: list[Rig]) -> None:
    """redirect_to_base on (Magento's default): a request by address would be sent to the
    base URL; the check asks by the shop's name, so the live and new release answer 200."""
    rig = production(rigs)
    shop = Shop(rig, label="A", base_url=base(rig, "http"), redirect_to_base=1)
    assert fab_deploy(shop, health_paths="none")[0] == 0
    [host] = rig.hosts
    by_address = host.sh(f"curl -s -o /dev/null -w '%{{http_code}}' {host.url()}").stdout
    assert by_address == "302"  # what a check by address would have seen
    shop.commit(label="B")
    code, said = fab_deploy(shop)
    assert code == 0, said
    assert shop.live(host) == shop.releases(host)[-1]


def test_tls_ended_before_the_host_is_asked_with_x_forwarded_proto(rigs: list[Rig]) -> None:
    """An https shop whose hosts only serve http (a load balancer ends TLS): Magento would
    redirect plain http to https; with the offloader's header it serves the page."""
    rig = production(rigs)
    shop = Shop(rig, label="A", base_url=f"https://{NAME}/", use_in_frontend=True,
                redirect_to_base=1)
    assert fab_deploy(shop, health_paths="none")[0] == 0
    shop.commit(label="B")
    code, said = fab_deploy(shop)
    assert code == 0, said
    assert "TLS ends before this host" in said and "X-Forwarded-Proto: https" in said


def test_a_self_signed_certificate_is_refused_until_verification_is_off(
        rigs: list[Rig]) -> None:
    rig = production(rigs, tls="self-signed")
    shop = Shop(rig, label="A", base_url=base(rig, "https"), use_in_frontend=True)
    assert fab_deploy(shop, health_paths="none")[0] == 0
    [host] = rig.hosts
    live, releases = shop.live(host), shop.releases(host)
    shop.commit(label="B")
    code, said = fab_deploy(shop)
    assert code == 2, said
    assert "the certificate is not trusted" in said and "DEPLOY_HEALTH_TLS_VERIFY=0" in said
    assert "nothing was built" in said
    assert (shop.live(host), shop.releases(host)) == (live, releases)  # nothing changed
    code, said = fab_deploy(shop, health_tls_verify="0")
    assert code == 0, said
    assert shop.live(host) != live


def test_basic_auth_is_refused_naming_the_setting_then_passes_masked(rigs: list[Rig]) -> None:
    password = "Stag1ng-Pa55"
    rig = production(rigs, tls="ca", basic_auth=("stage", password))
    shop = Shop(rig, label="A", base_url=base(rig, "https"), use_in_frontend=True)
    assert fab_deploy(shop, health_paths="none")[0] == 0
    shop.commit(label="B")
    code, said = fab_deploy(shop)
    assert code == 2 and "HTTP 401" in said and "DEPLOY_HEALTH_AUTH=user:password" in said, said
    code, said = fab_deploy(shop, health_auth=f"stage:{password}")
    assert code == 0, said
    [host] = rig.hosts
    assert password not in said
    for path in host.inside("/srv/shop").rglob("*.json"):
        assert password not in path.read_text(), path
    assert set(check_requests(host)) >= {200}


# ----------------------------------------------------------------- refused before the build


def test_a_wrong_base_url_is_refused_before_anything_is_built(rigs: list[Rig]) -> None:
    rig = production(rigs, 2)
    shop = Shop(rig, label="A", base_url=base(rig, "http"))
    assert fab_deploy(shop, health_paths="none")[0] == 0
    before = {h.name: (shop.live(h), shop.releases(h), len(shop.log(h))) for h in rig.hosts}
    shop.commit(label="B")
    code, said = fab_deploy(shop, health_base_url="http://127.0.0.1:9")
    assert code == 2, said
    for host in rig.hosts:
        assert f"[{host.name}]" in said
        assert (shop.live(host), shop.releases(host), len(shop.log(host))) == \
            before[host.name]  # nothing built, not even composer
    assert "http://127.0.0.1:9/" in said and "no answer" in said and "Failed to connect" in said
    assert "DEPLOY_HEALTH_BASE_URL" in said and "DEPLOY_HEALTH_PATHS=none" in said


def test_a_redirect_elsewhere_is_refused_with_where_it_pointed(rigs: list[Rig]) -> None:
    rig = production(rigs)
    shop = Shop(rig, label="A", base_url=base(rig, "http"), redirect_to_base=1)
    assert fab_deploy(shop, health_paths="none")[0] == 0
    shop.commit(label="B")
    code, said = fab_deploy(shop, health_host="www.other.test")
    assert code == 2, said
    assert f"to {base(rig, 'http')}" in said and "DEPLOY_HEALTH_HOST" in said, said


# --------------------------------------------------------------------------- maintenance


@pytest.mark.parametrize("exempt", [False, True])
def test_the_operators_maintenance_stays_on_and_is_said(rigs: list[Rig], exempt: bool) -> None:
    rig = production(rigs)
    shop = Shop(rig, label="A", base_url=base(rig, "http"))
    assert fab_deploy(shop, health_paths="none")[0] == 0
    [host] = rig.hosts
    ips = f" --ip={host.address}" if exempt else ""
    host.sh(f"cd /srv/shop/current && php bin/magento maintenance:enable{ips}",
            user="deployer")
    shop.commit(label="B")
    code, said = fab_deploy(shop)
    assert code == 0, said
    new = shop.live(host)
    assert new == shop.releases(host)[-1]
    assert shop.release_path(host, new, "var/.maintenance.flag").exists()  # still on
    record = history(host)[new]["health"]
    if exempt:  # the check comes from the exempt address: the storefront is checked
        assert "NOT checked" not in said and record["hosts"]["web1"]["ok"], said
    else:
        assert "storefront NOT checked" in said and "maintenance is on" in said, said
        assert record["ok"] and set(record["not_checked"]) == {"web1"}
    page = host.sh(f"curl -s -o /dev/null -w '%{{http_code}}' --interface {host.address} "
                   f"{host.url()}").stdout  # from the address the check sent from
    assert page == ("200" if exempt else "503")  # the operator's maintenance, as it was


# --------------------------------------------------------------------------- after the switch


def test_a_release_answering_500_is_reverted_at_the_first_bad_answer(rigs: list[Rig]) -> None:
    rig = production(rigs, 3)
    shop = Shop(rig, label="A", base_url=base(rig, "http"))
    assert fab_deploy(shop, health_paths="none")[0] == 0
    good = shop.live(rig.hosts[0])
    shop.commit(files={LABEL: BROKEN})
    with HttpLoad.on_rig(rig) as load:
        code, said = fab_deploy(shop)
        load.wait_after(time.time())
    assert code == 1 and "REVERTED" in said and "HTTP 500" in said, said
    assert {shop.live(h) for h in rig.hosts} == {good}
    for host in rig.hosts:
        assert load.labels()[host.name][-1] == "A", load.summary()
        statuses = check_requests(host)
        assert statuses.count(500) <= 1, statuses  # it stopped at its first bad answer
    assert sum(check_requests(h).count(500) for h in rig.hosts) >= 1


def test_a_hung_pool_is_reverted_after_the_timeout(rigs: list[Rig]) -> None:
    rig = production(rigs)
    shop = Shop(rig, label="A", base_url=base(rig, "http"))
    assert fab_deploy(shop, health_paths="none")[0] == 0
    [host] = rig.hosts
    good = shop.live(host)
    shop.commit(files={LABEL: HUNG})
    started = time.monotonic()
    code, said = fab_deploy(shop, health_timeout="1")
    assert code == 1 and "REVERTED" in said, said
    assert "timed out" in said.lower() or "timeout" in said.lower(), said
    assert shop.live(host) == good
    assert time.monotonic() - started < 60


def test_a_cold_page_that_answers_on_the_second_request_is_not_reverted(
        rigs: list[Rig]) -> None:
    rig = production(rigs)
    shop = Shop(rig, label="A", base_url=base(rig, "http"))
    assert fab_deploy(shop, health_paths="none")[0] == 0
    [host] = rig.hosts
    host.sh("rm -rf /srv/log/warmed")
    shop.commit(files={LABEL: COLD})
    code, said = fab_deploy(shop, health_timeout="2", health_paths="/")
    assert code == 0, said
    assert "1 timed out first (a cold page)" in said, said
    assert shop.live(host) == shop.releases(host)[-1]
    assert host.inside("/srv/log/warmed").is_dir()


def test_a_broken_live_shop_does_not_block_its_fix(rigs: list[Rig]) -> None:
    """The live release answers 500: the check reaches the shop, so the deploy goes on
    (it may be the fix), says so, and never reverts to the broken release."""
    rig = production(rigs)
    shop = Shop(rig, label="A", base_url=base(rig, "http"))
    shop.commit(files={LABEL: BROKEN})
    assert fab_deploy(shop, health_paths="none")[0] == 0  # a broken release went live
    [host] = rig.hosts
    shop.commit(files={LABEL: BROKEN + "// still broken\n"})
    code, said = fab_deploy(shop)
    assert code == 1, said
    assert "the LIVE shop answers errors before this deploy" in said, said
    assert "NOT reverted: the previous release answered errors too" in said, said
    still = shop.live(host)
    assert still == shop.releases(host)[-1]  # kept: nothing better to go back to
    shop.commit(files={LABEL: "<?php\nreturn 'fixed';\n"})
    code, said = fab_deploy(shop)
    assert code == 0, said
    page = host.sh(f"curl -s {host.url()}").stdout
    assert "label=fixed" in page, page
