"""The data bench: how long zdd takes to back up, restore and check a Postgres database of about
1 GB and a 1 GB storage volume, how big the backups are, what a second backup adds after 1% of
the rows (or files) change (restic's deduplication at work), and how long a major upgrade of
that database keeps the app in maintenance (`zdd db upgrade`, 15 -> 17, and its undo).

    bench/run-data [--rows 1000000] [--files 1000] [--cases postgres,upgrade,storage]
    figures to the terminal and bench/RESULTS-data.md
"""

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lab

BENCH = Path(__file__).resolve().parent
CHECKOUT = BENCH.parent
POSTGRES, POSTGRES_NEXT = "zdd-base/postgres:15", "zdd-base/postgres:17"
APP = "benchdata"
FILL_ROWS = """CREATE TABLE rows (id bigserial PRIMARY KEY, body text NOT NULL);
INSERT INTO rows (body) SELECT s.body FROM generate_series(1, {rows}) AS g(i),
  LATERAL (SELECT string_agg(md5(random()::text || g.i || k.k), '') FROM generate_series(1, 28) AS k(k)) AS s(body);"""
CHANGES = {  # 1% of the rows: the newest ones (an app that appends and edits recent rows), or spread out
    "together": "UPDATE rows SET body = md5(random()::text) || substr(body, 33) WHERE id > (SELECT max(id) * 0.99 FROM rows);",
    "spread": "UPDATE rows SET body = md5(random()::text) || substr(body, 33) WHERE id % 100 = 0;",
}
FILL_FILES = ("cd /data && i=0; while [ $i -lt {files} ]; do i=$((i+1)); "
              "/bin/busybox head -c 1048576 /dev/urandom > f$i; done")
CHANGE_FILES = ("cd /data && i=0; while [ $i -lt {files} ]; do i=$((i+100)); "
                "/bin/busybox head -c 1048576 /dev/urandom > f$i; done")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of about 900 bytes (default: 1 GB)")
    parser.add_argument("--files", type=int, default=1000, help="files of 1 MB of random bytes (default: 1 GB)")
    parser.add_argument("--cases", default="postgres,upgrade,storage", help="which cases, comma-separated")
    parser.add_argument("--markdown", type=Path, default=BENCH / "RESULTS-data.md")
    args = parser.parse_args()
    subprocess.run([str(CHECKOUT / "scripts" / "make-data-images")], check=True)
    folder = Path(tempfile.mkdtemp(prefix="zdd-bench-data-"))
    server = lab.ZddServer(folder)
    server.caddy.start()
    try:
        server.install(APP, f"http://127.0.0.1:{lab.free_port()}")
        cases = args.cases.split(",")
        figures = {}
        if "postgres" in cases or "upgrade" in cases:
            fill_postgres(server, args.rows)
        if "postgres" in cases:
            figures["postgres"] = postgres_case(server)
        if "upgrade" in cases:
            figures["upgrade"] = upgrade_case(server)
        if "storage" in cases:
            figures["storage"] = storage_case(server, args.files)
    finally:
        server.zdd("destroy", APP, "--yes", "--storage")
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    report = markdown(figures, args)
    print(report)
    args.markdown.write_text(report)
    return 0


def fill_postgres(server, rows: int) -> None:
    server.zdd("db", "create", APP, "postgres", "--image", POSTGRES)
    print(f"filling Postgres with {rows} rows", flush=True)
    psql(FILL_ROWS.format(rows=rows))


def database_size(container: str = f"zdd-{APP}-postgres") -> int:
    return int(psql("SELECT pg_database_size(current_database())", container).strip())


def postgres_case(server) -> dict:
    return measured(server, "postgres", database_size(),
                    {name: (lambda sql=sql: psql(sql)) for name, sql in CHANGES.items()})


def upgrade_case(server) -> dict:
    """15 -> 17 and back: the whole command (its safety backup included), the data move, and the
    time in maintenance (the app's restart would add its own start time: nothing is deployed)."""
    size = database_size()
    output, upgrade_s = timed(server, "db", "upgrade", APP, "postgres", "--image", POSTGRES_NEXT)
    moved = float(re.search(r"pg_restore in ([0-9.]+)s", output).group(1))
    maintenance = float(re.search(r"in maintenance for ([0-9.]+)s", output).group(1))
    after = database_size(f"zdd-{APP}-postgres-1")
    _, undo_s = timed(server, "db", "upgrade", APP, "postgres", "--undo")
    return {"size": size, "size_after": after, "upgrade_s": upgrade_s, "move_s": moved,
            "maintenance_s": maintenance, "undo_s": undo_s}


def storage_case(server, files: int) -> dict:
    server.zdd("db", "destroy", APP, "postgres", "--data")
    server.zdd("storage", APP, "add", "files:/data")
    print(f"filling the volume with {files} files of 1 MB", flush=True)
    helper(FILL_FILES.format(files=files))
    return measured(server, "storage:files", files * 1024 * 1024,
                    {"spread": lambda: helper(CHANGE_FILES.format(files=files))})


def measured(server, item: str, size: int, changes: dict) -> dict:
    """A first backup; per change, 1% changed and a backup after it; a restore of the first; a check."""
    first, first_s = timed(server, "backup", APP)
    figures = {"size": size, "backup_s": first_s, **item_sizes(server, first, item, "backup_bytes", "stored_bytes")}
    for name, change in changes.items():
        change()
        again, figures[f"{name}_backup_s"] = timed(server, "backup", APP)
        figures.update(item_sizes(server, again, item, None, f"{name}_added_bytes"))
    _, figures["restore_s"] = timed(server, "restore", APP, backup_id(first), "--service", item)
    _, figures["check_s"] = timed(server, "backup", APP, "--check", backup_id(first))
    return figures


def item_sizes(server, output: str, item: str, total_key: str | None, added_key: str) -> dict:
    entry = next(e for e in json.loads(server.zdd("backups", APP, "--json")) if e["id"] == backup_id(output))
    sizes = next(i for i in entry["items"] if i["item"] == item)
    return {**({total_key: sizes["bytes"]} if total_key else {}), added_key: sizes["added"]}


def timed(server, *args: str) -> tuple[str, float]:
    started = time.monotonic()
    output = server.zdd(*args)
    seconds = round(time.monotonic() - started, 1)
    print(f"  zdd {' '.join(args)}: {seconds}s", flush=True)
    return output, seconds


def backup_id(output: str) -> str:
    return re.search(r" as (\S+)", output).group(1)


def psql(sql: str, container: str = f"zdd-{APP}-postgres") -> str:
    done = subprocess.run(["docker", "exec", "-i", container, "psql", "-v", "ON_ERROR_STOP=1", "-At",
                           "-U", APP, "-d", APP], input=sql, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return done.stdout


def helper(script: str) -> None:
    subprocess.run(["docker", "run", "--rm", "-v", f"zdd-{APP}-files:/data", "zdd-helper:busybox", "/bin/busybox",
                    "sh", "-c", script], check=True, timeout=3600)


def mb(count: int) -> str:
    return f"{count / 1024 / 1024:,.0f} MB" if count >= 10 * 1024 * 1024 else f"{count / 1024 / 1024:.1f} MB"


def markdown(figures: dict, args) -> str:
    lines = ["# Data bench", "",
             f"`bench/run-data --rows {args.rows} --files {args.files}`: a Postgres database of {args.rows:,} rows "
             "of about 900 random hex characters, and a storage volume of "
             f"{args.files:,} files of 1 MB of random bytes, each backed up into the app's local restic repository "
             "(`zdd backup`), then 1% changed and backed up again: the newest 1% of the rows together, then every "
             "hundredth row (or file) spread out, then restored to the first backup (`zdd restore --service`, "
             "which takes a safety backup first) and that backup checked (`zdd backup --check`). restic cuts "
             "what it stores into chunks of about 1 MB: a change spread over every chunk makes each one new. Nothing deployed: the restore's "
             "time is zdd's and restic's alone. One run on this machine (2 cores).", "",
             "| data | size | backup s | backed up | stored | 1% changed together: backup s, added | "
             "1% changed spread out: backup s, added | restore s | check s |", "|---|---|---|---|---|---|---|---|---|"]
    for name, f in figures.items():
        if name == "upgrade":
            continue
        together = f"{f['together_backup_s']} s, {mb(f['together_added_bytes'])}" if "together_backup_s" in f else "-"
        lines.append(f"| {name} | {mb(f['size'])} | {f['backup_s']} | {mb(f['backup_bytes'])} | {mb(f['stored_bytes'])} "
                     f"| {together} | {f['spread_backup_s']} s, {mb(f['spread_added_bytes'])} | {f['restore_s']} "
                     f"| {f['check_s']} |")
    if "upgrade" in figures:
        f = figures["upgrade"]
        lines += ["", f"`zdd db upgrade {APP} postgres` from Postgres 15 to 17 (Debian's packages) with the same "
                  f"{mb(f['size'])} database: {f['upgrade_s']} s for the whole command, of which {f['maintenance_s']} s "
                  f"in maintenance, {f['move_s']} s of it the data's move (`pg_dump --format=custom --compress=0` piped into "
                  f"`pg_restore --single-transaction`); the rest before maintenance is the safety backup and "
                  f"the new container's start while the app serves. The database is {mb(f['size_after'])} on 17. "
                  f"`--undo` took {f['undo_s']} s: start the old container, "
                  "switch back. Nothing is deployed here: an app's restart on the new database adds its own "
                  "deploy (about 5 s for the push bench's app) to the time in maintenance."]
    lines += ["", "Postgres is backed up as `pg_dump --format=custom --compress=0` and storage as a tar, both "
              "uncompressed so that restic's content-defined chunks find what did not change. restic 0.14 "
              "(Debian bookworm) stores them uncompressed; 0.16 and later compress its repositories."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
