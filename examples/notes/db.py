"""The notes database: SQLite on the app's storage (zdd storage notes add data:/data)."""

import os
import sqlite3
from pathlib import Path

DATA = Path(os.environ.get("DATA_DIR", "/data"))
VERSION = (Path(__file__).parent / "VERSION").read_text().strip()

# Each migration is applied once, in order; the release step runs them.
MIGRATIONS = [
    "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)",
]


def connect() -> sqlite3.Connection:
    DATA.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(DATA / "notes.db", timeout=10)
    db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    return db


def schema_version(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return row[0] or 0
