from pathlib import Path

import pytest

from zdd import names, slots
from zdd.caddy import SharedSites, Site, render, route_to, routed_slot
from zdd.retention import previous_live
from zdd.drain import wait_for_drain
from zdd.errors import InvalidInput

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


@pytest.mark.parametrize("good", ["myapp.example.com", "http://localhost:8080", ":8080", "*.example.com",
                                  "https://app.example.com:8443", "HTTP://Example.COM"])
def test_site_addresses_caddy_accepts(good):
    assert names.check_site_address(good) == good.lower()


@pytest.mark.parametrize("bad", ["", "a b", "x {", "import /etc/passwd", "'q'", "a\nb", "example.com/path",
                                 "http://", ":99999", "ex ample.com", "a;b", "$(id)"])
def test_site_addresses_that_could_inject_are_refused(bad):
    with pytest.raises(InvalidInput, match="invalid site"):
        names.check_site_address(bad)


@pytest.mark.parametrize("bad", ["", "A", "-a", "a-", "../a", "a/b", "a;b", "a" * 33, "a b", "a\n"])
def test_app_names_are_strict(bad):
    with pytest.raises(InvalidInput, match="invalid app name"):
        names.check_app_name(bad)


def test_derived_names():
    sha = "0123456789abcdef" * 2 + "01234567"
    assert names.image_tag("web", sha) == f"zdd-web:{sha}"
    assert names.container_name("web", sha, "a1b2c3") == "zdd-web-0123456789ab-a1b2c3"
    assert names.labels("web", sha, "refs/heads/main") == {"zdd.app": "web", "zdd.sha": sha, "zdd.ref": "refs/heads/main"}


SHARED = SharedSites("/srv/zdd/hosts", 80, 8443, "acme")


def test_render_gives_apps_with_a_port_a_site_and_the_rest_the_shared_sites():
    text = render(TEMPLATES, "127.0.0.1:2019", [
        Site("web", "http://127.0.0.1:9000", "/srv/zdd/apps/web/route"),
        Site("api", ":8080", "/srv/zdd/apps/api/route")], "/srv/zdd/caddy.d/*.caddy", SHARED)
    assert "\tadmin 127.0.0.1:2019\n\thttp_port 80\n\thttps_port 8443\n" in text
    assert "\t\task http://127.0.0.1:80/zdd-ask\n" in text
    assert text.index(":8080 {") < text.index("http://127.0.0.1:9000 {")
    assert "\t\t\troot /srv/zdd/apps/web/route\n\t\t\ttry_files *-*\n" in text
    assert "\t\t\troot /srv/zdd/hosts/https\n\t\t\ttry_files {host}/*-*\n" in text
    assert "redir @zdd_https_host https://{host}:8443{uri} 308" in text
    assert "tls {\n\t\ton_demand\n" in text
    assert "\n    " not in text
    assert "\nimport /srv/zdd/caddy.d/*.caddy\n" in text


def test_render_does_not_depend_on_host_named_apps_and_can_use_the_internal_ca():
    internal = SharedSites("/srv/zdd/hosts", 80, 443, "internal")
    text = render(TEMPLATES, "127.0.0.1:2019", [], "/x/*.caddy", internal)
    assert "tls internal {" in text and "https://{host}{uri} 308" in text
    assert "\tskip_install_trust\n" in text, "never touch the system's trust store"


def test_render_refuses_a_value_that_would_break_out():
    with pytest.raises(InvalidInput, match="refusing to render"):
        render(TEMPLATES, "127.0.0.1:2019", [Site("web", "a.com {\n}", "/x")], "/x/*.caddy", SHARED)
    with pytest.raises(InvalidInput, match="refusing to render"):
        render(TEMPLATES, "127.0.0.1:2019", [], "/x/*.caddy", SharedSites("/srv/my hosts"))
    with pytest.raises(InvalidInput, match="invalid tls setting"):
        render(TEMPLATES, "127.0.0.1:2019", [], "/x/*.caddy", SharedSites("/srv/hosts", tls="none"))
    with pytest.raises(InvalidInput, match="Caddy admin address"):
        render(TEMPLATES, "localhost:2019\n}\nimport x", [], "/x/*.caddy", SHARED)


@pytest.mark.parametrize("address, route", [
    ("myapp.example.com", ("https", "myapp.example.com")), ("https://a.example.com", ("https", "a.example.com")),
    ("http://a.example.com", ("http", "a.example.com")), (":8080", None), ("http://127.0.0.1:9000", None),
    ("a.example.com:8443", None), ("*.example.com", None)])
def test_only_a_host_name_alone_is_served_by_the_shared_sites(address, route):
    assert names.host_route(address) == route


def test_the_port_an_address_names():
    assert [names.site_port(a) for a in (":8080", "http://a.example.com:80", "a.example.com")] == [8080, 80, None]


def test_previous_live_skips_failures_and_the_live_sha():
    history = [{"sha": "a", "outcome": "live"}, {"sha": "b", "outcome": "live"},
               {"sha": "c", "outcome": "failed"}, {"sha": "b", "outcome": "live"}]
    assert previous_live(history, {"sha": "b"})["sha"] == "a"
    assert previous_live(history[:1], {"sha": "a"}) is None


def test_drain_waits_for_two_quiet_reads_and_is_bounded():
    counts = iter([2, 1, 0, 1, 0, 0, 5])
    outcome, _ = wait_for_drain(lambda: next(counts), timeout=5, poll=0)
    assert outcome == "drained"
    assert wait_for_drain(lambda: 1, timeout=0.2, poll=0.01)[0] == "timeout"
    assert wait_for_drain(lambda: None, timeout=0.1)[0] == "unknown"


def test_route_file_names_the_live_port_first_and_is_renamed(tmp_path):
    ports = {"blue": 21001, "green": 21002}
    assert routed_slot(tmp_path, ports) is None
    route_to(tmp_path, ports, "blue")
    assert routed_slot(tmp_path, ports) == "blue" and [p.name for p in tmp_path.iterdir()] == ["21001-21002"]
    route_to(tmp_path, ports, "green")
    route_to(tmp_path, ports, "green")
    assert routed_slot(tmp_path, ports) == "green" and [p.name for p in tmp_path.iterdir()] == ["21002-21001"]
    route_to(tmp_path, ports, "green", fallback=False)  # the old container is gone: retries stay on green
    assert routed_slot(tmp_path, ports) == "green" and [p.name for p in tmp_path.iterdir()] == ["21002-21002"]
    assert slots.other(None) == "blue" and slots.other("blue") == "green" and slots.other("green") == "blue"


def test_a_flag_left_by_an_older_zdd_still_says_blue_until_the_route_file_replaces_it(tmp_path):
    ports = {"blue": 21001, "green": 21002}
    (tmp_path / "blue").write_text("")
    assert routed_slot(tmp_path, ports) == "blue"
    route_to(tmp_path, ports, "blue")
    assert [p.name for p in tmp_path.iterdir()] == ["21001-21002"]


def test_slot_ports_are_chosen_once_free_and_distinct(tmp_path):
    ports = slots.ensure_ports(tmp_path, taken={20000})
    assert ports["blue"] != ports["green"] and 20000 < min(ports.values()) and max(ports.values()) <= 29999
    assert slots.ensure_ports(tmp_path, taken=set()) == ports
    new = slots.replace_port(tmp_path, "green", taken=set())
    assert slots.read_ports(tmp_path) == {"blue": ports["blue"], "green": new} and new != ports["blue"]
