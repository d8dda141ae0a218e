"""The release step: the rows table, made once, when the app has a database."""

import os

if os.environ.get("DATABASE_URL"):
    import psycopg2

    with psycopg2.connect(os.environ["DATABASE_URL"], connect_timeout=10) as db, db.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS rows (id SERIAL PRIMARY KEY, body TEXT NOT NULL)")
    print("migrated: table rows is there")
else:
    print("no DATABASE_URL: nothing to migrate")
