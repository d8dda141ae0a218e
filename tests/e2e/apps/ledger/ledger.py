"""A test app with its data beside it: rows in Postgres (DATABASE_URL), a counter in Redis
(REDIS_URL) and files on storage (/files), each readable and writable over HTTP."""

import os
from pathlib import Path

from flask import Flask, jsonify, request

app = Flask(__name__)
FILES = Path("/files")


def database():
    import psycopg2
    return psycopg2.connect(os.environ["DATABASE_URL"], connect_timeout=5)


def cache():
    import redis
    return redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=5)


@app.get("/health")
def health():
    return "ok"


@app.get("/db-version")
def db_version():
    with database() as db, db.cursor() as cursor:
        cursor.execute("SHOW server_version")
        return cursor.fetchone()[0].split()[0]


@app.get("/rows")
def rows():
    with database() as db, db.cursor() as cursor:
        cursor.execute("SELECT body FROM rows ORDER BY id")
        return jsonify([body for (body,) in cursor.fetchall()])


@app.post("/rows")
def add_row():
    with database() as db, db.cursor() as cursor:
        cursor.execute("INSERT INTO rows (body) VALUES (%s)", (request.args["body"],))
    return "added\n"


@app.get("/counter")
def counter():
    return str(int(cache().get("counter") or 0))


@app.post("/counter")
def count():
    return str(cache().incr("counter"))


@app.get("/files")
def files():
    return jsonify(sorted(p.name for p in FILES.iterdir()) if FILES.is_dir() else [])


@app.post("/files")
def add_file():
    (FILES / request.args["name"]).write_text("kept\n")
    return "written\n"
