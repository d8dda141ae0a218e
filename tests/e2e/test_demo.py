"""The README's first command: the demo runs end to end and leaves the app serving."""

import re

import pytest

from conftest import REPO, http_get, run

pytestmark = pytest.mark.e2e


def test_demo_pushes_under_load_rolls_back_and_leaves_the_app_serving(tmp_path):
    base = tmp_path / "demo"
    try:
        result = run([str(REPO / "demo" / "run"), "--dir", str(base)])
        assert result.returncode == 0, result.stdout + result.stderr
        out = result.stdout
        failed = re.findall(r"clients: +\d+ requests, (\d+) failed", out)
        assert failed == ["0", "0", "0"], out
        assert "reusing it, no build" in result.stderr
        url = re.search(r"hello is serving [0-9a-f]{12} at (http://127\.0\.0\.1:\d+)", out).group(1)
        assert http_get(url) == (200, "hello from v1\n")
    finally:
        stopped = run([str(REPO / "demo" / "run"), "--stop", "--dir", str(base)])
    assert stopped.returncode == 0 and not base.exists()
