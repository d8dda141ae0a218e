"""The two decisions zdd makes on its own: what to repair, and which images to delete."""

from zdd.recover import Recovery, plan
from zdd.retention import choose_prunable, last_used
from zdd.state import epoch


def container(cid, slot, status="running", sha="s", process="web", deploy=None):
    return {"id": cid, "name": f"c-{cid}", "status": status, "slot": slot, "sha": sha, "ref": "r", "port": 8000,
            "process": process, "deploy": deploy or f"d-{cid}"}


def worker(cid, deploy, status="running", process="worker"):
    return container(cid, None, status=status, process=process, deploy=deploy)


def test_the_recorded_live_container_stays_and_traffic_goes_back_to_it():
    old, new = container("old", "blue"), container("new", "green")
    recovery = plan({"container_id": "old"}, "green", [old, new])
    assert (recovery.keep, recovery.route_to, recovery.adopt, recovery.remove) == (old, "blue", False, [new])


def test_a_restarting_live_container_is_kept_not_removed():
    old = container("old", "blue", status="restarting")
    assert plan({"container_id": "old"}, "blue", [old]).keep is old


def test_when_the_live_one_is_gone_the_container_serving_the_routed_slot_is_adopted():
    new = container("new", "green")
    leftover = container("x", "blue", status="exited")
    recovery = plan({"container_id": "gone"}, "green", [leftover, new])
    assert (recovery.keep, recovery.route_to, recovery.adopt, recovery.remove) == (new, None, True, [leftover])


def test_nothing_alive_means_nothing_kept_and_everything_removed():
    dead = container("d", "blue", status="exited")
    recovery = plan(None, "blue", [dead])
    assert (recovery.keep, recovery.adopt, recovery.remove) == (None, False, [dead])
    assert plan(None, "green", []) == Recovery(None, None, False, [])


def test_the_kept_web_keeps_the_workers_of_its_own_deploy_and_restarts_its_stopped_singleton():
    old, new = container("old", "blue", deploy="d1"), container("new", "green", deploy="d2")
    old_worker, old_clock = worker("ow", "d1"), worker("oc", "d1", status="exited", process="clock")
    new_worker, new_clock = worker("nw", "d2"), worker("nc", "d2", process="clock")
    recovery = plan({"container_id": "old"}, "green", [old, new, old_worker, old_clock, new_worker, new_clock])
    assert recovery.keep is old and recovery.route_to == "blue"
    assert recovery.remove == [new, new_worker, new_clock]
    assert recovery.start == [old_clock]


def test_once_the_old_web_is_gone_the_new_generation_is_adopted_whole():
    new = container("new", "green", deploy="d2")
    old_worker, new_worker = worker("ow", "d1"), worker("nw", "d2")
    recovery = plan({"container_id": "gone"}, "green", [old_worker, new, new_worker])
    assert (recovery.keep, recovery.adopt, recovery.remove, recovery.start) == (new, True, [old_worker], [])


def test_release_containers_go_and_one_off_runs_in_use_stay():
    web = container("web", "blue", deploy="d1")
    release = worker("rel", "d2", status="running", process="release")
    running, finished = worker("r1", "d1", process="run"), worker("r2", "d1", status="exited", process="run")
    recovery = plan({"container_id": "web"}, "blue", [web, release, running, finished])
    assert recovery.remove == [release, finished]


def test_prune_keeps_the_most_recently_used_and_the_protected():
    images = [{"sha": s, "created": t} for s, t in (("a", 1.0), ("b", 2.0), ("c", 3.0), ("d", 4.0))]
    assert [i["sha"] for i in choose_prunable(images, {}, keep=2, protected=set())] == ["b", "a"]
    assert [i["sha"] for i in choose_prunable(images, {"a": 10.0}, keep=2, protected=set())] == ["c", "b"]
    assert [i["sha"] for i in choose_prunable(images, {}, keep=2, protected={"a"})] == ["b"]


def test_last_use_counts_successful_deploys_only_and_reads_both_time_formats():
    history = [{"sha": "a", "outcome": "live", "finished_at": "2026-01-01T00:00:10+00:00"},
               {"sha": "a", "outcome": "failed", "finished_at": "2026-01-02T00:00:00+00:00"}]
    assert last_used(history) == {"a": epoch("2026-01-01T00:00:10+00:00")}
    assert epoch("2026-01-01T00:00:10.25Z") == epoch("2026-01-01T00:00:10+00:00") + 0.25
    assert epoch("0001-01-01T00:00:00Z") == epoch(None) == 0.0
