"""Preview apps, the pure part: the host pattern, a branch's label and name, the settings,
and which refs of a push become previews or take theirs away."""

import pytest

from zdd import names, previews
from zdd.errors import InvalidInput
from zdd.push import RefUpdate, ZERO_SHA, plan_push

SHA = "a" * 40


@pytest.mark.parametrize("pattern, expected", [
    ("{branch}.preview.example.com", "{branch}.preview.example.com"),
    ("http://{branch}.Example.com", "http://{branch}.example.com"),
])
def test_a_pattern_is_a_host_under_the_apps_domain(pattern, expected):
    assert previews.check_pattern(pattern, "shop.example.com") == expected


@pytest.mark.parametrize("pattern, parent, message", [
    ("{branch}.evil.com", "shop.example.com", "must stay under example.com"),
    ("{branch}example.com", "shop.example.com", "must be its first label"),
    ("x.{branch}.example.com", "shop.example.com", "must be its first label"),
    ("{branch}.{branch}.example.com", "shop.example.com", "must be its first label"),
    ("{branch}.example.com:8443", "shop.example.com", "a host name alone"),
    ("{branch}.example.com/x", "shop.example.com", "invalid site address"),
    ("{branch}.example.com", "http://127.0.0.1:8080", "need the app addressed by a host name"),
])
def test_a_pattern_that_could_reach_elsewhere_is_refused(pattern, parent, message):
    with pytest.raises(InvalidInput, match=message):
        previews.check_pattern(pattern, parent)


@pytest.mark.parametrize("branch, taken, expected", [
    ("feature/Login", {}, "feature-login"),
    ("fix_1", {}, "fix-1"),
    ("../x", {}, "x"),
    ("ünïcode", {}, "n-code"),
    ("日本", {}, None),                           # cleaned to nothing: a hash alone
    ("feature-login", {"feature-login": "feature/Login"}, None),  # taken by another branch: hashed
    ("feature/Login", {"feature-login": "feature/Login"}, "feature-login"),  # its own
    ("a" * 300, {}, None),                      # cut: hashed
])
def test_a_branch_gets_a_safe_host_label_and_a_hash_when_it_must(branch, taken, expected):
    label = previews.label_for(branch, "shop", taken)
    assert names.APP_NAME.fullmatch(label) or label[0].isdigit()
    assert len(label) <= previews.MAX_LABEL and label.strip("-") == label
    if expected is not None:
        assert label == expected
    else:
        assert label != branch and len(label.rsplit("-", 1)[-1]) == 6
    name = previews.app_name("shop", label)
    assert names.check_app_name(name) == name
    address = previews.address("{branch}.preview.example.com", label)
    assert names.host_route(names.check_site_address(address)) == ("https", address)


def test_a_long_parent_leaves_room_for_a_label_within_the_name_limit():
    parent = "a" * 32
    label = previews.label_for("feature/login-with-a-long-name", parent, {})
    assert len(previews.app_name(parent, label)) <= previews.MAX_NAME


def test_settings_are_checked_and_kept_over_what_was_set():
    first = previews.settings_from(None, "{branch}.p.example.com", "shop.example.com", "SECRET, TOKEN", 3, None, None)
    assert (first.except_keys, first.max_count, first.days, first.limit) == (("SECRET", "TOKEN"), 3, 14, "512m,1cpu")
    later = previews.settings_from(first, None, "shop.example.com", None, None, 2, "256m")
    assert (later.pattern, later.max_count, later.days, later.limit) == ("{branch}.p.example.com", 3, 2, "256m")
    for bad, message in [({"except_keys": "A B"}, "not an env key"), ({"max_count": 0}, "--max"),
                         ({"limit": "lots"}, "neither a memory size")]:
        args = {"except_keys": None, "max_count": None, "limit": None, **bad}
        with pytest.raises(InvalidInput, match=message):
            previews.settings_from(first, None, "shop.example.com", args["except_keys"], args["max_count"], None,
                                   args["limit"])
    with pytest.raises(InvalidInput, match="give the previews' address"):
        previews.settings_from(None, None, "shop.example.com", None, None, None, None)


def test_branches_become_previews_only_while_on_and_a_deleted_branch_takes_its_preview():
    pushed = [RefUpdate(ZERO_SHA, SHA, "refs/heads/main"), RefUpdate(ZERO_SHA, SHA, "refs/heads/feature"),
              RefUpdate(SHA, ZERO_SHA, "refs/heads/old"), RefUpdate(SHA, ZERO_SHA, "refs/heads/other"),
              RefUpdate(ZERO_SHA, SHA, "refs/tags/v1")]
    off = plan_push(pushed, "main")
    assert (off.deploy.ref, off.previews, off.removals) == ("refs/heads/main", [], [])
    on = plan_push(pushed, "main", previews_on=True, preview_branches=frozenset({"old"}))
    assert [u.short_name for u in on.previews] == ["feature"]
    assert [u.short_name for u in on.removals] == ["old"]
    assert "other" in [u.short_name for u, _ in on.skipped], "a branch with no preview: nothing to remove"
    kept = plan_push([RefUpdate(SHA, "b" * 40, "refs/heads/old")], "main", preview_branches=frozenset({"old"}))
    assert [u.short_name for u in kept.previews] == ["old"], "previews off: an existing preview still updates"


def test_seeding_from_a_backup_is_kept_until_turned_off():
    first = previews.settings_from(None, "{branch}.p.example.com", "shop.example.com", None, None, None, None, True)
    assert first.seed_from_backup
    assert previews.settings_from(first, None, "shop.example.com", None, None, 3, None).seed_from_backup
    assert not previews.settings_from(first, None, "shop.example.com", None, None, None, None, False).seed_from_backup
