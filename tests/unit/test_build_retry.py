"""A build whose cached layer another app's prune deleted meanwhile is built again, a few times at most."""

import io

import pytest

from zdd import engine
from zdd.errors import BuildFailed

LAYER_GONE = ("failed to get digest sha256:7ebea455b80f: open /var/lib/docker/image/overlay2/imagedb/"
              "content/sha256/7ebea455b80f: no such file or directory")


class FakeBuilds:
    """Docker's build API as a script of outcomes: an error text, or None for a build that works."""

    def __init__(self, outcomes):
        self.outcomes = list(outcomes)
        self.builds = 0
        self.api = self
        self.images = self

    def build(self, **_):
        self.builds += 1
        error = self.outcomes.pop(0)
        return iter([{"error": error}] if error else [{"stream": "Successfully built\n"}])

    def get(self, tag):
        return tag


def build(client):
    lines = []
    image = engine.build_image(client, io.BytesIO(b"tar"), "zdd-a:sha", {}, lines.append)
    return image, lines


def test_a_layer_removed_during_the_build_is_built_again():
    client = FakeBuilds([LAYER_GONE, None])
    image, lines = build(client)
    assert (image, client.builds) == ("zdd-a:sha", 2)
    assert any("building again" in line for line in lines)


def test_a_real_build_error_is_not_retried():
    client = FakeBuilds(["COPY failed: file not found", None])
    with pytest.raises(BuildFailed, match="COPY failed"):
        build(client)
    assert client.builds == 1


def test_the_retries_stop_after_a_few_attempts():
    client = FakeBuilds([LAYER_GONE] * 5)
    with pytest.raises(BuildFailed, match="failed to get digest"):
        build(client)
    assert client.builds == engine.BUILD_ATTEMPTS
