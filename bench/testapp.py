"""The benchmark's app: busybox httpd in a FROM-scratch image, built offline.

It takes ``start_delay`` seconds before it listens, serves its version at / and
answers /cgi-bin/slow after 2 s. Its Docker HEALTHCHECK (every 1 s) is what the
blog's script waits for, and what zdd uses too.
"""

import shutil
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
APP_PORT = 8000
SLOW_PATH = "/cgi-bin/slow"
SLOW_SECONDS = 2

SLOW_CGI = f"""#!/bin/busybox sh
/bin/busybox sleep {SLOW_SECONDS}
echo "Content-Type: text/plain"
echo ""
echo "slow $(/bin/busybox cat /www/index.html)"
"""


def dockerfile(start_delay: float, ignore_term: bool, healthy: bool = True, health_interval: str = "1s") -> str:
    """ignore_term: SIGTERM is ignored (an ignored signal stays ignored across exec), so
    `docker stop` waits its whole timeout; else httpd exits at once on SIGTERM (run it
    with --init / init=True, as PID 1 ignores signals it has no handler for). Not
    ``healthy``: its health check asks for a page it does not have. ``health_interval``:
    Docker's own checks (zdd's gate runs the command itself, at once)."""
    serve = f"exec /bin/busybox httpd -f -p {APP_PORT} -h /www"
    script = f"/bin/busybox sleep {start_delay}; {serve}"
    if ignore_term:
        script = f"trap '' TERM; {script}"
    page = "" if healthy else "missing"
    healthcheck = (f'HEALTHCHECK --interval={health_interval} --timeout=2s --retries=3 CMD '
                   f'["/bin/busybox", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:{APP_PORT}/{page}"]')
    return "\n".join([
        "FROM scratch",
        "COPY busybox /bin/busybox",
        "COPY www /www",
        f"EXPOSE {APP_PORT}",
        healthcheck,
        f'CMD ["/bin/busybox", "sh", "-c", "{script}"]',
    ]) + "\n"


def write(folder: Path, body: str, start_delay: float, ignore_term: bool, healthy: bool = True,
          health_interval: str = "1s") -> None:
    """Write the app's build context (Dockerfile, busybox, www/) into ``folder``; its
    page shows ``body``, the version the clients see."""
    (folder / "www" / "cgi-bin").mkdir(parents=True, exist_ok=True)
    if not (folder / "busybox").exists():
        shutil.copy(BUSYBOX, folder / "busybox")
    (folder / "Dockerfile").write_text(dockerfile(start_delay, ignore_term, healthy, health_interval))
    (folder / "www" / "index.html").write_text(body)
    slow = folder / "www" / "cgi-bin" / "slow"
    slow.write_text(SLOW_CGI)
    slow.chmod(0o755)
