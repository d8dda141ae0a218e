"""The runtime seam: chosen in one place, every runtime answering every question the commands ask."""

import inspect
from pathlib import Path

import pytest

from zdd import config, runtimes
from zdd.errors import ConfigError


def server(runtime: str) -> config.Server:
    return config.Server(root=Path("/nonexistent"), caddyfile=Path("/nonexistent/Caddyfile"),
                         caddy_admin="localhost:2019", runtime=runtime)


def protocol_methods() -> set[str]:
    return {name for name, member in vars(runtimes.Runtime).items()
            if inspect.isfunction(member) and not name.startswith("_")}


@pytest.mark.parametrize("name", sorted(runtimes.RUNTIMES))
def test_every_runtime_answers_every_method_of_the_protocol(name):
    runtime = runtimes.runtime_for(server(name), client=object())
    missing = [method for method in protocol_methods() if not callable(getattr(runtime, method, None))]
    assert not missing, f"{name} lacks {missing}"
    assert isinstance(runtime.web_scales, bool)


def test_web_scales_only_in_swarm_mode():
    assert not runtimes.runtime_for(server("engine")).web_scales
    assert runtimes.runtime_for(server("swarm")).web_scales


def test_an_unknown_runtime_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="unknown runtime 'nomad' in settings.json: use one of engine, swarm"):
        runtimes.runtime_for(server("nomad"))


def test_the_runtime_is_read_in_one_place_only():
    package = Path(runtimes.__file__).resolve().parent.parent
    readers = [path.relative_to(package).as_posix() for path in package.rglob("*.py")
               if "server.runtime" in path.read_text()]
    assert readers == ["runtimes/__init__.py"]


def test_zdd_apps_reads_health_and_counts_from_one_listing_of_the_containers():
    from zdd import engine
    from zdd.runtimes.single import _summary
    listed = [
        {"Id": "w1", "State": "running", "Status": "Up 3 minutes (healthy)", "Labels": {"zdd.process": "web", "zdd.deploy": "d1"}},
        {"Id": "k1", "State": "running", "Status": "Up 3 minutes", "Labels": {"zdd.process": "worker", "zdd.deploy": "d1"}},
        {"Id": "k2", "State": "exited", "Status": "Exited (1) 1 minute ago", "Labels": {"zdd.process": "worker", "zdd.deploy": "d1"}},
        {"Id": "k0", "State": "running", "Status": "Up 1 hour", "Labels": {"zdd.process": "worker", "zdd.deploy": "d0"}},
        {"Id": "r1", "State": "running", "Status": "Up 1 second", "Labels": {"zdd.process": "run", "zdd.deploy": "d1"}},
    ]
    assert _summary({"container_id": "w1", "deploy_id": "d1"}, listed) == ("healthy", {"web": 1, "worker": 1})
    assert _summary({"container_id": "gone", "deploy_id": "d1"}, listed)[0] == "container missing"
    assert engine.listed_health({"State": "running", "Status": "Up 2 seconds (health: starting)"}) == "starting"
    assert engine.listed_health({"State": "running", "Status": "Up 2 minutes (unhealthy)"}) == "unhealthy"
    assert engine.listed_health({"State": "exited", "Status": "Exited (0) 2 minutes ago"}) == "exited"
