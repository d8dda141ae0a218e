"""Turn post-receive input into the one ref to deploy, and messages about the rest."""

import dataclasses

ZERO_SHA = "0" * 40


@dataclasses.dataclass(frozen=True)
class RefUpdate:
    old: str
    new: str
    ref: str

    @property
    def is_deletion(self) -> bool:
        return self.new == ZERO_SHA

    @property
    def is_tag(self) -> bool:
        return self.ref.startswith("refs/tags/")

    @property
    def short_name(self) -> str:
        for prefix in ("refs/heads/", "refs/tags/"):
            if self.ref.startswith(prefix):
                return self.ref[len(prefix):]
        return self.ref


@dataclasses.dataclass(frozen=True)
class PushPlan:
    deploy: RefUpdate | None
    skipped: list[tuple[RefUpdate, str]]
    previews: list[RefUpdate] = dataclasses.field(default_factory=list)   # branches deployed as previews
    removals: list[RefUpdate] = dataclasses.field(default_factory=list)   # deleted branches whose preview goes


def parse_updates(text: str) -> list[RefUpdate]:
    """Parse ``OLD NEW REF`` lines; lines that are not of that form are ignored."""
    updates = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and all(_is_sha(p) for p in parts[:2]):
            updates.append(RefUpdate(*parts))
    return updates


def plan_push(updates: list[RefUpdate], branch: str, previews_on: bool = False,
              preview_branches: frozenset = frozenset()) -> PushPlan:
    """Deploy the deploy branch if pushed, else the last pushed tag; other branches become
    previews while previews are on (or have one already), and a deleted branch takes its
    preview with it; explain every other ref."""
    deploy_ref = f"refs/heads/{branch}"
    skipped, candidates, previews, removals = [], [], [], []
    for update in updates:
        other_branch = update.ref.startswith("refs/heads/") and update.ref != deploy_ref
        if update.is_deletion and other_branch and update.short_name in preview_branches:
            removals.append(update)
        elif update.is_deletion:
            skipped.append((update, "deletions are not deployed; what is live stays live"))
        elif update.ref == deploy_ref or update.is_tag:
            candidates.append(update)
        elif other_branch and (previews_on or update.short_name in preview_branches):
            previews.append(update)
        else:
            skipped.append((update, f"only branch {branch!r} and tags deploy"))
    branch_updates = [u for u in candidates if u.ref == deploy_ref]
    chosen = (branch_updates or candidates or [None])[-1]
    for update in candidates:
        if update is not chosen:
            skipped.append((update, f"one ref deploys per push, and this push deploys {chosen.short_name}"))
    return PushPlan(deploy=chosen, skipped=skipped, previews=previews, removals=removals)


def _is_sha(text: str) -> bool:
    return len(text) == 40 and all(c in "0123456789abcdef" for c in text)
