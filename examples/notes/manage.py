"""python3 manage.py migrate | add-note (reads the note from stdin) | count"""

import sys

import db


def migrate() -> None:
    conn = db.connect()
    current = db.schema_version(conn)
    for number, statement in enumerate(db.MIGRATIONS, start=1):
        if number > current:
            print(f"applying migration {number}: {statement}")
            with conn:
                conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (number,))
    print(f"schema at version {max(current, len(db.MIGRATIONS))}")


def add_note() -> None:
    body = sys.stdin.read().strip()
    if not body:
        sys.exit("no note on standard input")
    conn = db.connect()
    with conn:
        conn.execute("INSERT INTO notes (body) VALUES (?)", (body,))
    print(f"added: {body}")


if __name__ == "__main__":
    commands = {"migrate": migrate, "add-note": add_note}
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        sys.exit(f"usage: manage.py {'|'.join(commands)}")
    commands[sys.argv[1]]()
