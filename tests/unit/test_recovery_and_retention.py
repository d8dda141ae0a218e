"""The two decisions zdd makes on its own: what to repair, and which images to delete."""

from zdd.recover import Recovery, plan
from zdd.retention import choose_prunable, epoch, last_used


def container(cid, slot, status="running", sha="s"):
    return {"id": cid, "name": f"c-{cid}", "status": status, "slot": slot, "sha": sha, "ref": "r", "port": 8000}


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


def test_prune_keeps_the_most_recently_used_and_the_protected():
    images = [{"sha": s, "created": t} for s, t in (("a", 1.0), ("b", 2.0), ("c", 3.0), ("d", 4.0))]
    assert [i["sha"] for i in choose_prunable(images, {}, keep=2, protected=set())] == ["b", "a"]
    assert [i["sha"] for i in choose_prunable(images, {"a": 10.0}, keep=2, protected=set())] == ["c", "b"]
    assert [i["sha"] for i in choose_prunable(images, {}, keep=2, protected={"a"})] == ["b"]


def test_last_use_counts_successful_deploys_only_and_reads_both_time_formats():
    history = [{"sha": "a", "outcome": "live", "finished_at": "2026-01-01T00:00:10+00:00"},
               {"sha": "a", "outcome": "failed", "finished_at": "2026-01-02T00:00:00+00:00"}]
    assert last_used(history) == {"a": epoch("2026-01-01T00:00:10+00:00")}
    assert epoch("2026-01-01T00:00:10.123456789Z") == epoch("2026-01-01T00:00:10+00:00")
