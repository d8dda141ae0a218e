"""Limits as the operator writes them, and crashes told apart from stops in Docker's events."""

import datetime
import hashlib
import hmac
import json
import re

import pytest

from zdd import crashes, engine, limits
from zdd.errors import InvalidInput
from zdd.state import epoch


def test_limits_parse_memory_cpu_both_and_none():
    assert limits.parse_items(["web=512m", "worker=256m,0.5cpu", "clock=1cpu", "beat=none"]) == {
        "web": limits.Limit("512m"), "worker": limits.Limit("256m", "0.5"), "clock": limits.Limit(None, "1"),
        "beat": limits.NO_LIMIT}
    assert limits.Limit("2g").memory_bytes == 2 * 1024 ** 3
    assert limits.Limit("256m", "0.5").as_text() == "256m,0.5cpu"


@pytest.mark.parametrize("item", ["web", "web=", "web=512", "web=512mb", "web=-1cpu", "web=0cpu", "web=1m",
                                  "web=512m,512m", "web=$(id)", "Web=512m", "web=512m;0.5cpu"])
def test_a_bad_limit_is_refused_in_one_line(item):
    with pytest.raises(InvalidInput) as refused:
        limits.parse_items([item])
    assert "\n" not in str(refused.value)


def test_one_off_containers_get_webs_limit_and_the_server_default_fills_in(tmp_path):
    limits.write(tmp_path, {"web": limits.Limit("512m"), "worker": limits.Limit(None, "0.5")})
    limits.write(tmp_path, {"worker": limits.NO_LIMIT})
    app = limits.Limits(limits.read(tmp_path), limits.Limit("1g"))
    assert [app.of(p).memory for p in ("web", "release", "run", "worker")] == ["512m", "512m", "512m", "1g"]


def test_limits_become_docker_options_with_no_swap_beyond_memory():
    assert engine.limit_options(limits.Limit("64m", "0.5")) == {
        "mem_limit": 64 * 1024 ** 2, "memswap_limit": 64 * 1024 ** 2, "cpu_period": 100_000, "cpu_quota": 50_000}
    assert engine.limit_options(limits.NO_LIMIT) == {} and engine.limit_options(None) == {}


def event(action: str, container: str, at: float, process: str = "web", **attributes) -> dict:
    return {"Action": action, "id": container, "time": at,
            "Actor": {"Attributes": {"zdd.app": "shop", "zdd.process": process, "zdd.sha": "a" * 40,
                                     "name": f"zdd-shop-{container}", **attributes}}}


def test_an_oom_kill_restarted_by_docker_is_a_crash_a_stop_or_a_failed_candidate_is_not():
    events = [
        event("oom", "c1", 100), event("die", "c1", 100, exitCode="137"), event("start", "c1", 101),
        event("kill", "c2", 102, signal="15"), event("die", "c2", 102, exitCode="143"),   # zdd stopped it
        event("die", "c3", 103, exitCode="1"), event("destroy", "c3", 104),              # a failed candidate
        event("die", "c4", 105, exitCode="0", process="release"), event("start", "c4", 106),
        event("die", "c5", 107, exitCode="2"),                                            # restart in back-off
        event("die", "c6", 50, exitCode="2"), event("start", "c6", 51),                   # read before
    ]
    found = crashes.crashes_in(events, since=60, restarting=lambda container: container == "c5")
    assert [(c["container"], c["exit_code"], c["reason"]) for c in found] == [
        ("zdd-shop-c1", 137, "killed: out of memory"), ("zdd-shop-c5", 2, "exited with code 2")]


def test_an_oom_event_just_after_its_die_still_names_the_cause_and_a_lone_sigkill_is_named_too():
    events = [event("die", "c1", 100, exitCode="137"), event("oom", "c1", 101), event("start", "c1", 101),
              event("die", "c2", 200, exitCode="137"), event("start", "c2", 201),
              event("oom", "c3", 100), event("die", "c3", 300, exitCode="137"), event("start", "c3", 301)]
    found = crashes.crashes_in(events, since=0, restarting=lambda container: False)
    assert [c["oom"] for c in found] == [True, False, False]
    assert found[0]["reason"] == "killed: out of memory"
    assert "out of memory, most likely" in found[1]["reason"], "137 with no stop asked for: SIGKILL"


def test_five_crashes_in_five_minutes_are_a_loop():
    now = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.timezone.utc)
    at = [(now - datetime.timedelta(seconds=s)).isoformat() for s in (10, 60, 120, 200, 290, 400)]
    seen = [{"process": "web", "at": a} for a in at]
    assert crashes.in_a_loop(seen, "web", now)
    assert not crashes.in_a_loop(seen[1:], "web", now) and not crashes.in_a_loop(seen, "worker", now)


def test_webhook_bodies_are_signed_json_or_one_line_for_slack_and_discord():
    from zdd import notify
    happened = {"event": "failed", "app": "shop", "sha": "b" * 40, "reason": "health check failed",
                "time": "2026-12-07T10:00:00+00:00", "server": "web1"}
    plain = notify.Hook("h1", "https://example.com/in", secret="s3cret")
    payload = notify.body(plain, happened)
    assert json.loads(payload) == happened
    assert notify.signature("s3cret", payload) == "sha256=" + hmac.new(b"s3cret", payload, hashlib.sha256).hexdigest()
    slack = notify.body(notify.Hook("h2", "https://hooks.slack.com/services/T/B/X", format="slack"), happened)
    assert json.loads(slack) == {"text": "zdd web1: shop failed bbbbbbbbbbbb: health check failed"}
    assert list(json.loads(notify.body(notify.Hook("h3", "https://discord.com/api/webhooks/1/x", format="discord"),
                                       happened))) == ["content"]


def test_webhook_urls_events_and_formats_are_checked_and_urls_shown_masked(tmp_path):
    from zdd import config, notify
    server = config.Server(root=tmp_path, caddyfile=tmp_path / "Caddyfile", caddy_admin="localhost:2019")
    assert notify.masked("https://hooks.slack.com/services/T0/B0/secretpart") == "https://hooks.slack.com/…"
    assert notify.parse_events("crash,deploy") == ("crash", "deploy")
    for url, events, fmt in [("ftp://x", None, "json"), ("https://x/$(id)\n", None, "json"),
                             ("https://x", "deploy,explode", "json"), ("https://x", None, "teams")]:
        with pytest.raises(InvalidInput):
            notify.add(server, url, events, None, fmt, print)
    said = []
    hook = notify.add(server, "https://hooks.example.com/zdd/very-secret", "deploy", "shop", "json", said.append)
    assert "very-secret" not in said[0] and hook.secret in said[1]
    assert (tmp_path / notify.HOOKS_FILE).stat().st_mode & 0o777 == 0o600
    assert hook.wants({"event": "deploy", "app": "shop"}) and not hook.wants({"event": "crash", "app": "shop"})
    assert not hook.wants({"event": "deploy", "app": "other"})
    notify.remove(server, hook.id, said.append)
    assert notify.read(tmp_path) == []


def test_cron_schedules_match_their_minutes_and_say_what_is_wrong():
    from zdd import config, cron
    from zdd.errors import ConfigError
    monday = datetime.datetime(2026, 12, 7, 11, 3, tzinfo=datetime.timezone.utc)
    assert cron.next_run("*/15 * * * *", monday).isoformat() == "2026-12-07T11:15:00+00:00"
    assert cron.next_run("0 0 1 * 1", monday).isoformat() == "2026-12-14T00:00:00+00:00", "day OR weekday, as cron"
    assert cron.next_run("5 4 * * 7", monday).isoformat() == "2026-12-13T04:05:00+00:00", "7 is Sunday too"
    assert cron.next_run("30 2 31 2 *", monday) is None
    job = cron.Job("tick", "*/5 8-10 * * 1-5", ("true",))
    assert cron.due(job, monday.replace(hour=9, minute=10, second=42), None)
    assert not cron.due(job, monday.replace(hour=9, minute=10), monday.replace(hour=9, minute=10).isoformat())
    assert not cron.due(job, monday.replace(hour=11, minute=10), None)
    for table, said in [({"r": {"schedule": "0 3 * *", "command": "x"}}, "cron.r.schedule '0 3 * *' needs five"),
                        ({"r": {"schedule": "61 * * * *", "command": "x"}}, "the minute '61' is outside 0-59"),
                        ({"r": {"schedule": "*/0 * * * *", "command": "x"}}, "outside"),
                        ({"r": {"schedule": "a * * * *", "command": "x"}}, "is not a number, range, step or *"),
                        ({"r": {"schedule": "* * * * *"}}, "cron.r.command must be a command"),
                        ({"r": {"schedule": "* * * * *", "command": "x", "timeout": 0}}, "cron.r.timeout"),
                        ({"R": {"schedule": "* * * * *", "command": "x"}}, "cron job name 'R'")]:
        with pytest.raises(ConfigError, match=re.escape(said)):
            config.parse_repo_config(config_text(table))


def config_text(table: dict) -> str:
    lines = ["[cron]"]
    for name, job in table.items():
        fields = ", ".join(f"{key} = {json.dumps(value)}" for key, value in job.items())
        lines.append(f"{name} = {{ {fields} }}")
    return "\n".join(lines) + "\n"


def restarted(name: str, started: str, finished: str, process: str = "worker", **state) -> dict:
    return {"id": name, "name": name, "labels": {"zdd.app": "shop", "zdd.process": process, "zdd.sha": "abc"},
            "restarts": 4, "started_at": started, "finished_at": finished, "exit_code": 137, "oom_killed": True,
            **state}


def test_crashes_the_event_log_forgot_are_told_by_the_containers_state():
    since = epoch("2026-12-07T10:00:00Z")
    containers = [
        restarted("new", "2026-12-07T10:00:05.5Z", "2026-12-07T10:00:05.000000001Z"),
        restarted("restarting", "2026-12-07T09:00:00Z", "2026-12-07T10:00:09Z", exit_code=None, oom_killed=None),
        restarted("old", "2026-12-07T09:59:00Z", "2026-12-07T09:58:59Z"),
        restarted("shown", "2026-12-07T10:00:05Z", "2026-12-07T10:00:04Z"),
        restarted("oneoff", "2026-12-07T10:00:05Z", "2026-12-07T10:00:04Z", process="run"),
    ]
    found = crashes.crashes_not_in_events(containers, since, found=[{"container": "shown"}])
    assert [c["container"] for c in found] == ["new", "restarting"]
    assert found[0]["at"] == "2026-12-07T10:00:05+00:00" and found[0]["oom"]
    assert found[0]["reason"] == ("killed: out of memory (Docker's event log had moved on: "
                                  "the last of 4 restart(s))")
    assert found[1]["reason"].startswith("exited, why is not known (Docker's event log had moved on")
    assert found[1]["exit_code"] is None and not found[1]["oom"]
