"""A background worker: writes a heartbeat to storage every half second until SIGTERM."""

import json
import os
import signal
import socket
import sys
import time

import db

beats = db.DATA / "heartbeats"
beats.mkdir(parents=True, exist_ok=True)
mine = beats / f"{socket.gethostname()}.json"


def stop(signum, frame):
    mine.unlink(missing_ok=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
while True:
    beat = {"host": socket.gethostname(), "version": db.VERSION, "pid": os.getpid(), "at": time.time()}
    staged = mine.with_suffix(".tmp")
    staged.write_text(json.dumps(beat))
    staged.replace(mine)
    time.sleep(0.5)
