"""Shared by every test folder: the order in which test files are handed to the parallel
test processes (tests/run uses ``--dist loadfile``: a file's tests stay in one process)."""

# The longest files start first, so that none of them starts last and holds up the end of
# the run; the rest keep pytest's order. Durations from `tests/run --durations=0`
# (six processes, 2026-12-07, the last of that day).
LONGEST_FIRST = (
    "e2e/test_data.py",
    "e2e/test_operations.py",
    "e2e/test_swarm_push.py",
    "e2e/test_swarm_nodes.py",
    "e2e/test_faults.py",
    "e2e/test_ssh.py",
    "e2e/test_processes.py",
    "e2e/test_builds.py",
    "e2e/test_failures.py",
    "integration/test_swarm_runtime.py",
    "e2e/test_push_deploy.py",
    "e2e/test_swarm_commands.py",
    "e2e/test_previews.py",
    "e2e/test_proxy_faults.py",
    "e2e/test_swarm_data.py",
    "e2e/test_host_routing.py",
    "e2e/test_guardrails.py",
    "e2e/test_db_upgrade.py",
    "e2e/test_security.py",
    "e2e/test_real_app.py",
    "e2e/test_demo.py",
    "e2e/test_repo_input.py",
    "e2e/test_reboot.py",
    "integration/test_swarm_lab.py",
    "e2e/test_install.py",
)


def pytest_collection_modifyitems(items):
    def rank(item):
        path = item.nodeid.split("::")[0].removeprefix("tests/")
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)
    items.sort(key=rank)  # stable: within a rank, pytest's own order
