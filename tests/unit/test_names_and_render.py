from pathlib import Path

import pytest

from zdd import names
from zdd.caddy import Site, render
from zdd.cli import previous_live
from zdd.drain import open_connections
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
    text = render(TEMPLATES, "127.0.0.1:2019", [Site("web", "web.example.com", "127.0.0.1:32001"),
                                                 Site("api", ":8080", "127.0.0.1:32002")])
    assert "\tadmin 127.0.0.1:2019\n" in text
    assert text.index(":8080 {") < text.index("web.example.com {")
    assert "\treverse_proxy 127.0.0.1:32001 {\n" in text
    assert "\n    " not in text


def test_render_refuses_a_value_that_would_break_out():
    with pytest.raises(InvalidInput, match="refusing to render"):
        render(TEMPLATES, "127.0.0.1:2019", [Site("web", "a.com {\n}", "127.0.0.1:1")])
    with pytest.raises(InvalidInput, match="Caddy admin address"):
        render(TEMPLATES, "localhost:2019\n}\nimport x", [])


def test_previous_live_skips_failures_and_the_live_sha():
    history = [{"sha": "a", "outcome": "live"}, {"sha": "b", "outcome": "live"},
               {"sha": "c", "outcome": "failed"}, {"sha": "b", "outcome": "live"}]
    assert previous_live(history, {"sha": "b"})["sha"] == "a"
    assert previous_live(history[:1], {"sha": "a"}) is None


def test_open_connections_counts_established_on_the_local_port(tmp_path):
    table = tmp_path / "tcp"
    table.write_text(
        "  sl  local_address rem_address   st\n"
        "   0: 0100007F:7D00 0100007F:C350 01 x\n"   # 127.0.0.1:32000 established
        "   1: 0100007F:7D00 00000000:0000 0A x\n"   # listening
        "   2: 0100007F:C350 0100007F:7D00 01 x\n"   # the client side, other local port
    )
    assert open_connections(32000, tables=[table]) == 1
    assert open_connections(50000, tables=[table]) == 1
    assert open_connections(1234, tables=[table, tmp_path / "missing"]) == 0
