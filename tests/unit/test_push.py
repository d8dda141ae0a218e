from hypothesis import given, strategies as st

from zdd.push import ZERO_SHA, RefUpdate, parse_updates, plan_push

A, B, C = "a" * 40, "b" * 40, "c" * 40


def test_parse_reads_old_new_ref_lines_and_ignores_junk():
    text = f"{A} {B} refs/heads/main\nnot a line\n{ZERO_SHA} {C} refs/tags/v1\n"
    assert parse_updates(text) == [RefUpdate(A, B, "refs/heads/main"), RefUpdate(ZERO_SHA, C, "refs/tags/v1")]


def test_deploy_branch_wins_over_tags_and_others_are_explained():
    updates = [RefUpdate(A, B, "refs/tags/v2"), RefUpdate(A, C, "refs/heads/main"),
               RefUpdate(A, B, "refs/heads/feature"), RefUpdate(A, ZERO_SHA, "refs/heads/old")]
    plan = plan_push(updates, "main")
    assert plan.deploy.ref == "refs/heads/main"
    reasons = {u.short_name: why for u, why in plan.skipped}
    assert reasons == {
        "v2": "one ref deploys per push, and this push deploys main",
        "feature": "only branch 'main' and tags deploy",
        "old": "deletions are not deployed; what is live stays live",
    }


def test_a_tag_alone_deploys_and_a_custom_branch_is_honoured():
    assert plan_push([RefUpdate(ZERO_SHA, B, "refs/tags/v1")], "main").deploy.short_name == "v1"
    plan = plan_push([RefUpdate(A, B, "refs/heads/main")], "production")
    assert plan.deploy is None and plan.skipped[0][1] == "only branch 'production' and tags deploy"


def test_deleting_the_deploy_branch_deploys_nothing():
    plan = plan_push([RefUpdate(A, ZERO_SHA, "refs/heads/main")], "main")
    assert plan.deploy is None and len(plan.skipped) == 1


@given(st.text())
def test_parser_never_raises_and_keeps_only_well_formed_lines(text):
    for update in parse_updates(text):
        assert len(update.old) == len(update.new) == 40
        plan_push([update], "main")
