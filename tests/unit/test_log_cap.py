"""The log options every container zdd starts gets (pure: no engine)."""

from zdd.engine import LogCap


def test_json_file_rotates_at_the_cap_unless_the_daemon_logs_elsewhere():
    cap = LogCap("100k", 2)
    rotated = {"type": "json-file", "config": {"max-size": "100k", "max-file": "2"}}
    assert cap.options("json-file") == rotated
    assert cap.options(None) == rotated
    assert cap.options("journald") is None and cap.options("local") is None
    assert LogCap().options("json-file")["config"] == {"max-size": "10m", "max-file": "3"}
