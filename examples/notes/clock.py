"""A scheduler that must never run twice at once: it logs when it starts and stops."""

import signal
import socket
import sys
import time

import db

log = db.DATA / "clock.log"


def note(event: str) -> None:
    db.DATA.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as handle:
        handle.write(f"{time.time():.3f} {event} {socket.gethostname()} v{db.VERSION}\n")


def stop(signum, frame):
    note("stop")
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
note("start")
while True:
    time.sleep(1)  # a real scheduler would enqueue due jobs here
