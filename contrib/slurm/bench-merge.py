#!/usr/bin/python3
"""bench-merge.py - how long `echonetctl merge` takes for shards of a given
size, for docs/scale.md: where the merge becomes the limit of a back-fill.

Shards of any size are made from one real shard (a database `echonetctl
process` wrote): its clips, with their beats, frames and events, are copied
again and again under new duplicate keys and pseudonyms (random hex: the
copies are new instances of new studies to the merge).  Then the shards are
merged into an empty database, and merged again (nothing to add: the cost
of an idempotent re-run).

    contrib/slurm/bench-merge.py --echonetctl build/echonetctl -c site.conf \
        --seed-db shard.db --clips 20000 --shards 4 --out /tmp/merge-bench
"""
import argparse
import os
import secrets
import sqlite3
import subprocess
import sys
import time


def grow(seed_db, path, nclips):
    """A copy of seed_db holding nclips clips (its own, copied)."""
    con = sqlite3.connect(path)
    con.execute("ATTACH DATABASE ? AS seed", ("file:%s?mode=ro" % seed_db,))
    con.execute("PRAGMA foreign_keys = ON")
    con.execute("PRAGMA journal_mode = WAL")
    # The seed's schema and meta rows (fingerprint, views) come with it.
    for (sql,) in con.execute("SELECT sql FROM seed.sqlite_schema WHERE type IN ('table', 'index', "
                              "'view') AND sql IS NOT NULL AND name NOT LIKE 'sqlite_%' "
                              "ORDER BY type = 'view', type = 'index'").fetchall():
        con.execute(sql)
    for pragma in ("application_id", "user_version"):
        v = con.execute("PRAGMA seed.%s" % pragma).fetchone()[0]
        con.execute("PRAGMA main.%s = %d" % (pragma, v))
    for table in ("meta", "schema_migrations", "models"):
        con.execute("INSERT INTO main.%s SELECT * FROM seed.%s" % (table, table))
    seed_clips = con.execute("SELECT id, study_id FROM seed.clips ORDER BY id").fetchall()
    cols = {t: [r[1] for r in con.execute("PRAGMA seed.table_info(%s)" % t)]
            for t in ("studies", "clips", "beats", "frames", "events")}

    def copy(table, fixed, where, args):
        names = [c for c in cols[table] if c != "id"]
        sel = [fixed.get(c, c) for c in names]
        con.execute("INSERT INTO main.%s (%s) SELECT %s FROM seed.%s WHERE %s"
                    % (table, ", ".join(names), ", ".join(sel), table, where), args)
        return con.execute("SELECT last_insert_rowid()").fetchone()[0]

    n = 0
    while n < nclips:
        for cid, sid in seed_clips:
            if n >= nclips:
                break
            study = copy("studies", {"pseudonym": "'%s'" % secrets.token_hex(8)}, "id = ?", (sid,))
            clip = copy("clips", {"study_id": str(study), "dedup_key": "'%s'" % secrets.token_hex(16)},
                        "id = ?", (cid,))
            copy("beats", {"clip_id": str(clip)}, "clip_id = ?", (cid,))
            copy("frames", {"clip_id": str(clip)}, "clip_id = ?", (cid,))
            copy("events", {"study_id": str(study), "clip_id": str(clip)}, "clip_id = ?", (cid,))
            n += 1
        con.commit()
    con.commit()
    con.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--echonetctl", required=True)
    ap.add_argument("-c", "--config", required=True, help="the site configuration (its secret)")
    ap.add_argument("--seed-db", required=True, help="a shard made by echonetctl process")
    ap.add_argument("--clips", type=int, default=10000, help="clips per shard")
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    shards = []
    for k in range(a.shards):
        p = os.path.join(a.out, "shard-%d.db" % (k + 1))
        if not os.path.exists(p):
            grow(a.seed_db, p, a.clips)
        shards.append(p)
    into = os.path.join(a.out, "merged.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(into + suffix):
            os.unlink(into + suffix)
    size = sum(os.path.getsize(p) for p in shards)
    rows = sum(sqlite3.connect(p).execute("SELECT count(*) FROM frames").fetchone()[0] for p in shards)
    for what in ("first merge", "merged again"):
        t0 = time.time()
        r = subprocess.run([a.echonetctl, "-c", a.config, "merge", "--into", into] + shards,
                           capture_output=True, text=True)
        dt = time.time() - t0
        if r.returncode != 0:
            sys.exit("merge failed: %s" % r.stderr)
        print("%s: %d shards, %d clips, %d frame rows, %.0f MB: %.1f s, %.0f clips/s"
              % (what, a.shards, a.shards * a.clips, rows, size / 1e6, dt, a.shards * a.clips / dt))


if __name__ == "__main__":
    main()
