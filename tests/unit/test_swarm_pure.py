"""The pure parts of Swarm mode: how a rollout's outcome is read, the health check zdd gives
an image without one, the route file and rendered proxy of Swarm mode, scale counts, the
registry address, and telling a static caddy from a dynamic one."""

import shlex
from pathlib import Path

import pytest

from zdd import caddy, names, processes, proxy, swarm
from zdd.runtimes import swarm as swarm_runtime
from zdd.config import RepoConfig
from zdd.errors import InvalidInput

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


class FakeService:
    def __init__(self, update_status=None, replicas=3):
        self.attrs = {"UpdateStatus": update_status, "Spec": {"Mode": {"Replicated": {"Replicas": replicas}}}}


def task(state, desired="running"):
    return {"state": state, "desired": desired}


def test_an_update_is_undecided_until_swarm_starts_it_then_its_state_says():
    change = swarm.Change("zdd-a-web", "r/zdd-a:2", created=False, previous_update="t1")
    assert swarm._outcome(FakeService({"State": "completed", "StartedAt": "t1"}), change, []) is None
    assert swarm._outcome(FakeService({"State": "updating", "StartedAt": "t2"}), change, []) is None
    assert swarm._outcome(FakeService({"State": "completed", "StartedAt": "t2"}), change, []) == "converged"
    assert swarm._outcome(FakeService({"State": "rollback_completed", "StartedAt": "t2"}), change, []) == \
        "rolled back"


def test_a_new_service_converges_when_every_replica_runs_and_fails_once_each_failed_twice():
    change = swarm.Change("zdd-a-web", "r/zdd-a:1", created=True)
    service = FakeService(replicas=2)
    assert swarm._outcome(service, change, [task("running"), task("starting")]) is None
    assert swarm._outcome(service, change, [task("running"), task("running")]) == "converged"
    failing = [task("failed", "shutdown")] * 3 + [task("starting")]
    assert swarm._outcome(service, change, failing) is None
    assert swarm._outcome(service, change, failing + [task("rejected", "shutdown")]) == "failed to start"


def test_an_image_without_healthcheck_gets_one_that_asks_the_health_path_quoted_for_the_shell():
    repo = RepoConfig(health_path="/up?a=1&b=$(id)", health_timeout=30, health_interval=0.5)
    check = swarm_runtime._http_healthcheck(8000, repo)
    assert check["test"][0] == "CMD-SHELL"
    words = shlex.split(check["test"][1])
    assert words[:4] == ["wget", "-q", "-O", "/dev/null"] and words[4] == "http://127.0.0.1:8000/up?a=1&b=$(id)"
    assert check["interval"] == 500_000_000 and check["start_period"] == 30_000_000_000


def test_swarm_route_files_name_app_and_port_and_replace_the_slot_file(tmp_path):
    caddy.route_to(tmp_path, {"blue": 21001, "green": 21002}, "blue")
    caddy.route_to_service(tmp_path, "my-shop", 8000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my-shop-8000"]
    assert caddy.has_route(tmp_path) and caddy.routed_slot(tmp_path, {"blue": 1, "green": 2}) is None


def test_swarm_mode_renders_dynamic_upstreams_of_the_web_service_tasks():
    shared = caddy.SharedSites("/srv/zdd/hosts", 80, 443, "acme")
    text = caddy.render(TEMPLATES, "localhost:2019", [caddy.Site("api", ":8080", "/srv/zdd/apps/api/route")],
                        "/srv/zdd/caddy.d/*.caddy", shared, swarm=True)
    assert '~^(?:/[^/]+)?/([a-z0-9-]+)-([0-9]+)$ "tasks.zdd-${1}-web" "${2}"' in text
    assert "dynamic a {zdd_tasks} {zdd_port} {\n\t\t\t\trefresh 1s\n" in text
    assert "zdd_second" not in text
    assert "zdd_tasks" not in caddy.render(TEMPLATES, "localhost:2019", [], "/x/*.caddy", shared)


def test_web_scales_only_in_swarm_mode_and_never_to_zero(tmp_path):
    with pytest.raises(InvalidInput, match="install.sh --swarm"):
        processes.parse_scale(["web=3"])
    assert processes.parse_scale(["web=3", "worker=2"], web_scales=True) == {"web": 3, "worker": 2}
    with pytest.raises(InvalidInput, match="cannot be scaled to 0"):
        processes.parse_scale(["web=0"], web_scales=True)
    assert processes.write_scale(tmp_path, {"web": 3}, web_scales=True) == {"web": 3}
    declared = processes.parse({"worker": "run"})
    assert processes.desired(declared, {"web": 3}, web_scales=True)["web"] == 3
    assert processes.desired(declared, {"web": 3})["web"] == 1


@pytest.mark.parametrize("bad", ["", "10.0.0.1", "10.0.0.1:0", "10.0.0.1:99999", "host:5000/x", "-a:5000",
                                 "a b:5000", "$(id):5000"])
def test_registry_addresses_are_host_and_port(bad):
    with pytest.raises(InvalidInput, match="registry"):
        names.check_registry(bad)
    assert names.check_registry("10.99.0.11:5000") == "10.99.0.11:5000"


def test_a_dynamically_linked_caddy_is_told_apart_from_a_static_one(tmp_path):
    assert proxy._is_dynamic(Path("/bin/sh"))  # Debian's dash names the loader
    assert not proxy._is_dynamic(Path("/bin/busybox"))  # busybox-static
    text = tmp_path / "script"
    text.write_text("#!/bin/sh\n")
    assert not proxy._is_dynamic(text)


def test_env_values_are_escaped_from_swarms_templates_so_tasks_get_them_as_written():
    assert swarm_runtime._literal("a{{.Node.ID}}b}}") == 'a{{"{{"}}.Node.ID}}b}}'
    assert swarm_runtime._literal("plain") == "plain"


def test_several_replicas_are_replaced_in_place_so_they_stay_spread():
    assert swarm.Rollout(1).order == "start-first", "one replica: the new task first, so one always serves"
    assert swarm.Rollout(1, overlap=False).order == "stop-first"
    assert swarm.Rollout(3).order == "stop-first", "several: the freed node takes the new task"
    assert swarm.Rollout(2, overlap=False).order == "stop-first"


def test_parallelism_replaces_several_tasks_at_once_but_always_leaves_one_serving():
    assert swarm.Rollout(3).batch == 1
    assert swarm.Rollout(3, parallelism=2).batch == 2
    assert swarm.Rollout(3, parallelism=5).batch == 2, "stopped first: one old task keeps serving"
    assert swarm.Rollout(1, parallelism=5).batch == 1
    assert swarm.Rollout(2, overlap=False, parallelism=2).batch == 1
