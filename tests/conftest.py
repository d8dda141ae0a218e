"""Shared by every test folder: the order in which test files are handed to the parallel
test processes (tests/run uses ``--dist loadfile``: a file's tests stay in one process)."""

import pytest

# The longest files start first, so that none of them starts last and holds up the end of
# the run; the rest follow in xdist's order. Durations from `tests/run --durations=0`
# (six processes, 2026-12-07, the last of that day).
LONGEST_FIRST = (
    "e2e/test_data.py",
    "e2e/test_swarm_push.py",
    "e2e/test_swarm_nodes.py",
    "e2e/test_operations.py",
    "e2e/test_faults.py",
    "e2e/test_swarm_commands.py",
    "e2e/test_ssh.py",
    "e2e/test_failures.py",
    "integration/test_swarm_runtime.py",
    "e2e/test_proxy_faults.py",
    "e2e/test_processes.py",
    "e2e/test_builds.py",
    "e2e/test_previews.py",
    "e2e/test_host_routing.py",
    "e2e/test_push_deploy.py",
    "e2e/test_swarm_data.py",
    "e2e/test_guardrails.py",
    "e2e/test_real_app.py",
    "e2e/test_reboot.py",
    "e2e/test_security.py",
    "e2e/test_repo_input.py",
    "e2e/test_demo.py",
    "e2e/test_db_upgrade.py",
    "integration/test_swarm_lab.py",
    "e2e/test_install.py",
)


def _rank(path: str) -> int:
    path = path.removeprefix("tests/")
    return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """xdist's loadfile hands out the files with the most tests first (unit test files, then
    whichever e2e file has the most cases), whatever the collection's order: this one hands
    them out in LONGEST_FIRST's."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class LongestFirst(LoadFileScheduling):
        def _assign_work_unit(self, node):
            for scope in reversed(sorted(self.workqueue, key=_rank)):
                self.workqueue.move_to_end(scope, last=False)
            super()._assign_work_unit(node)

    return LongestFirst(config, log)
