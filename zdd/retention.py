"""Which old images of an app to delete: keep the newest N, and never the live or previous one."""

from zdd import state


def choose_prunable(images: list[dict], last_used: dict[str, float], keep: int, protected: set[str]) -> list[dict]:
    """``images``: dicts with at least ``sha`` and ``created`` (epoch seconds). ``last_used``: sha ->
    epoch of its latest deploy. An image's age is its latest deploy or, if never deployed, its build."""
    def recency(image: dict) -> float:
        return max(last_used.get(image["sha"], 0.0), image["created"])

    ranked = sorted(images, key=recency, reverse=True)
    kept = {image["sha"] for image in ranked[:keep]} | protected
    return [image for image in ranked if image["sha"] not in kept]


def last_used(history: list[dict]) -> dict[str, float]:
    """sha -> epoch seconds of its latest successful deploy."""
    used: dict[str, float] = {}
    for entry in history:
        if entry.get("outcome") == "live":
            used[entry["sha"]] = max(used.get(entry["sha"], 0.0), state.epoch(entry["finished_at"]))
    return used


def previous_live(history: list[dict], live: dict | None) -> dict | None:
    """The most recent successful deploy of a SHA other than the live one."""
    current = live and live["sha"]
    for entry in reversed(history):
        if entry.get("outcome") == "live" and entry["sha"] != current:
            return entry
    return None
