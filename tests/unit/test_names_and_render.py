from pathlib import Path

import pytest

from zdd import names, slots
from zdd.caddy import Site, render, route_to, routed_slot
from zdd.cli import previous_live
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


def test_render_lists_every_site_sorted_with_tabs_and_admin():
    text = render(TEMPLATES, "127.0.0.1:2019", [
        Site("web", "web.example.com", "/srv/zdd/apps/web/route", {"blue": 21001, "green": 21002}),
        Site("api", ":8080", "/srv/zdd/apps/api/route", {"blue": 22001, "green": 22002})], "/srv/zdd/caddy.d/*.caddy")
    assert "\tadmin 127.0.0.1:2019\n" in text
    assert text.index(":8080 {") < text.index("web.example.com {")
    assert "\t\troot /srv/zdd/apps/web/route\n\t\ttry_files blue\n" in text
    assert "reverse_proxy @web-blue 127.0.0.1:21001 127.0.0.1:21002 {" in text
    assert "\t\treverse_proxy 127.0.0.1:22002 127.0.0.1:22001 {\n" in text
    assert "\n    " not in text
    assert text.endswith("\nimport /srv/zdd/caddy.d/*.caddy\n")


def test_render_refuses_a_value_that_would_break_out():
    with pytest.raises(InvalidInput, match="refusing to render"):
        render(TEMPLATES, "127.0.0.1:2019", [Site("web", "a.com {\n}", "/x", {"blue": 1, "green": 2})], "/x/*.caddy")
    with pytest.raises(InvalidInput, match="Caddy admin address"):
        render(TEMPLATES, "localhost:2019\n}\nimport x", [], "/x/*.caddy")


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


def test_route_flag_flips_between_slots(tmp_path):
    assert routed_slot(tmp_path) == "green"
    route_to(tmp_path, "blue")
    assert routed_slot(tmp_path) == "blue" and [p.name for p in tmp_path.iterdir()] == ["blue"]
    route_to(tmp_path, "green")
    route_to(tmp_path, "green")
    assert routed_slot(tmp_path) == "green" and list(tmp_path.iterdir()) == []
    assert slots.other(None) == "blue" and slots.other("blue") == "green" and slots.other("green") == "blue"


def test_slot_ports_are_chosen_once_free_and_distinct(tmp_path):
    ports = slots.ensure_ports(tmp_path, taken={20000})
    assert ports["blue"] != ports["green"] and 20000 < min(ports.values()) and max(ports.values()) <= 29999
    assert slots.ensure_ports(tmp_path, taken=set()) == ports
    new = slots.replace_port(tmp_path, "green", taken=set())
    assert slots.read_ports(tmp_path) == {"blue": ports["blue"], "green": new} and new != ports["blue"]
