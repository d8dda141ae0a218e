"""The web process: notes from the database, and what the workers and the clock report."""

import json
import time

from flask import Flask, jsonify

import db

app = Flask(__name__)


@app.get("/health")
def health():
    return "ok\n"


@app.get("/")
def index():
    conn = db.connect()
    notes = [row[0] for row in conn.execute("SELECT body FROM notes ORDER BY id")]
    return jsonify(version=db.VERSION, schema=db.schema_version(conn), notes=notes)


@app.get("/workers")
def workers():
    """Heartbeats fresher than 2 s: one per running worker container."""
    beats = []
    for path in sorted((db.DATA / "heartbeats").glob("*.json")):
        try:
            beat = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if time.time() - beat["at"] < 2:
            beats.append(beat)
    clock_log = db.DATA / "clock.log"
    clock = clock_log.read_text().splitlines() if clock_log.exists() else []
    return jsonify(workers=beats, clock=clock)
