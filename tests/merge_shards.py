"""A back-fill without a cluster: `echonetctl process` over a folder walked
as an archive, a list file and its shards, resumed after an interruption,
and `echonetctl merge` of the shard databases (issue 14).

Checks: the walk takes DICOM files only, in a stable order; shards K/N are
contiguous blocks that cover the list once; a shard run again skips what it
did; the merged database has the same clips, beats, frames and EFs, and the
same study results, as one process over all files, although two studies
straddle shards; merging again changes nothing; a clip that an interrupted
task left unfinished is replaced by the finished one; shards of another
site secret, another schema version, without a fingerprint or not a
database are refused and leave the target as it was.  tests/slurm_backfill.py
runs the same through a real Slurm array."""
import json
import os
import shutil
import sqlite3
import subprocess

import enlib
import mergelib

rep = enlib.Report("merge_shards")
site = enlib.Site()
ctl = enlib.ECHONETCTL
tmp = site.dir
with open(site.conf, "a") as f:
    f.write("[nn]\nthreads = 1\n")


def run(*args, db=None, conf=None, timeout=600):
    cmd = [ctl, "-c", conf or site.conf]
    if db:
        cmd += ["--set", "paths.database=" + db]
    r = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=timeout)
    return r


# ---- an archive: studies in folders, and what archives keep beside them ----
archive = os.path.join(tmp, "archive")
expected = mergelib.make_archive(archive, tmp, 7100, rep)
with open(os.path.join(archive, "2024", "study-a", "report.txt"), "w") as f:
    f.write("not an image\n")
with open(os.path.join(archive, "2024", "study-b", ".partial-copy"), "wb") as f:
    f.write(b"\0" * 128 + b"DICM")
shutil.copy(os.path.join(archive, "2024", "study-c", "series1", "IM0000"),
            os.path.join(archive, "DICOMDIR"))
os.symlink(archive, os.path.join(archive, "2024", "loop"))   # never followed

r = run("process", "--dry-run", archive)
listed = r.stdout.splitlines()
rep.check(r.returncode == 0 and listed == expected,
          "walk: exit %d, listed %s, expected %s (%s)" % (r.returncode, listed, expected, r.stderr))
rep.check("1 file without the DICOM preamble, 2 hidden files or DICOMDIR indexes" in r.stderr,
          "walk: what was left aside not said: %r" % r.stderr)
rep.check(not any(s in r.stderr for s in ("report.txt", "partial-copy", "IM000")),
          "walk: stderr names files: %r" % r.stderr)
flist = os.path.join(tmp, "files.txt")
with open(flist, "w") as f:
    f.write("# the archive\n\n" + "\n".join(listed) + "\n")

# ---- shards: contiguous blocks covering the list once ----------------------
for n in (1, 2, 3, 4, 6, 7):
    got = []
    for k in range(1, n + 1):
        r = run("process", "--dry-run", "--files", flist, "--shard", "%d/%d" % (k, n))
        got.append(r.stdout.splitlines())
    flat = [p for part in got for p in part]
    sizes = [len(p) for p in got]
    rep.check(flat == listed and max(sizes) - min(sizes) <= 1,
              "--shard K/%d: blocks %s do not cover the list in order" % (n, sizes))
for bad in ("0/3", "4/3", "3", "a/b", "1/0"):
    r = run("process", "--files", flist, "--shard", bad)
    rep.check(r.returncode == 2, "--shard %s: exit %d, not a usage error" % (bad, r.returncode))
r = run("process", "--files", os.path.join(tmp, "no-such-list"))
rep.check(r.returncode == 3 and "no-such-list" in r.stderr, "missing list: exit %d %r" % (r.returncode, r.stderr))

# ---- one process over everything: the reference -----------------------------
ref = os.path.join(tmp, "ref.db")
r = run("process", "--json", "--files", flist, "--progress", "0", db=ref)
rep.check(r.returncode == 0, "reference run: exit %d: %s" % (r.returncode, r.stderr[-2000:]))
lines = [l for l in r.stderr.splitlines() if " files (" in l]
rep.check(len(lines) == 6 and lines[-1].startswith("echonetctl process: 6/6 files (6 processed, 0 already done, 0 failed)")
          and "clips/h" in lines[-1] and "left finished" in lines[-1],
          "progress lines: %s" % lines)

# ---- three shards, one run twice (resume) ------------------------------------
shards = [os.path.join(tmp, "shard-%d.db" % k) for k in (1, 2, 3)]
for k, db in enumerate(shards, 1):
    r = run("process", "--files", flist, "--shard", "%d/3" % k, db=db)
    rep.check(r.returncode == 0, "shard %d: exit %d: %s" % (k, r.returncode, r.stderr[-2000:]))


before = mergelib.counts(shards[0])
r = run("process", "--files", flist, "--shard", "1/3", "--progress", "0", db=shards[0])
rep.check(r.returncode == 0 and "2/2 files (0 processed, 2 already done, 0 failed)" in r.stderr,
          "shard 1 again: not skipped as done: %s" % r.stderr[-1000:])
rep.check(mergelib.counts(shards[0]) == before, "shard 1 again changed counts %s -> %s" % (before, mergelib.counts(shards[0])))
r = run("process", "--reprocess", "--files", flist, "--shard", "1/3", "--progress", "0", db=shards[0])
rep.check(r.returncode == 0 and "2/2 files (2 processed, 0 already done" in r.stderr,
          "--reprocess did not process again: %s" % r.stderr[-1000:])


# ---- merge ------------------------------------------------------------------
merged = os.path.join(tmp, "merged.db")
r = run("merge", "--json", *shards, "--into", merged)
rep.check(r.returncode == 0, "merge: exit %d: %s" % (r.returncode, r.stderr))
objs = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
per_shard = [o for o in objs if o["kind"] == "shard"]
restudied = [o for o in objs if o["kind"] == "study"]
rep.check(len(per_shard) == 3 and sum(o["tables"]["clips"]["added"] for o in per_shard) == 6,
          "merge: clips added %s" % [o["tables"].get("clips") for o in per_shard])
rep.check(len(restudied) == 2, "merge: %d studies computed again, 2 straddle shards" % len(restudied))
ref_clips, ref_studies = mergelib.clips(ref), mergelib.studies(ref)
rep.check(len(ref_clips) == 6 and len(ref_studies) == 3, "reference: %d clips, %d studies" % (len(ref_clips), len(ref_studies)))
rep.check(any(c[5] for c in ref_clips.values()), "no clip had a beat: beats untested")
mergelib.compare(rep, "merged", merged, ref)

# Again: nothing changes.
h = mergelib.dump(merged)
r = run("merge", "--json", *shards, "--into", merged)
again = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
rep.check(r.returncode == 0 and all(t["added"] == 0 and t["replaced"] == 0
                                    for o in again if o["kind"] == "shard" for t in o["tables"].values()),
          "second merge added rows: %s" % r.stdout)
rep.check(not [o for o in again if o["kind"] == "study"], "second merge computed studies again")
rep.check(mergelib.dump(merged) == h, "second merge changed the database")

# ---- an interrupted task: merged unfinished, then finished ----------------------
partial = os.path.join(tmp, "partial.db")
shutil.copy(shards[1], partial)
con = sqlite3.connect(partial)
con.execute("PRAGMA foreign_keys = ON")
victim = con.execute("SELECT id, dedup_key FROM clips ORDER BY id DESC LIMIT 1").fetchone()
con.execute("DELETE FROM beats WHERE clip_id = ?", victim[:1])
con.execute("DELETE FROM frames WHERE clip_id = ?", victim[:1])
con.execute("UPDATE clips SET status = 'processing', finished_at = NULL, ef_mean = NULL, verdict = NULL "
            "WHERE id = ?", victim[:1])
con.commit()
con.close()
step = os.path.join(tmp, "step.db")
for db in (shards[0], partial, shards[2]):
    r = run("merge", db, "--into", step)
    rep.check(r.returncode == 0, "merge of %s: %s" % (os.path.basename(db), r.stderr))
rep.check(mergelib.clips(step)[victim[1]][0] == "processing", "the unfinished clip was not merged as it was")
r = run("merge", "--json", shards[1], "--into", step)
o = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
rep.check(r.returncode == 0 and o[0]["tables"]["clips"]["replaced"] == 1,
          "finished clip did not replace the unfinished one: %s %s" % (r.stdout, r.stderr))
mergelib.compare(rep, "after the finished shard", step, ref)

# ---- refusals ------------------------------------------------------------------------
h = mergelib.dump(merged)
other = enlib.Site()
with open(other.conf, "a") as f:
    f.write("[nn]\nthreads = 1\n")
foreign = os.path.join(tmp, "foreign.db")
r = run("process", listed[0], db=foreign, conf=other.conf)
rep.check(r.returncode == 0, "foreign shard: %s" % r.stderr[-1000:])
r = run("merge", foreign, "--into", merged)
rep.check(r.returncode == 1 and "another site secret" in r.stderr, "foreign shard: exit %d %r" % (r.returncode, r.stderr))
r = run("merge", "--assume-same-site", foreign, "--into", merged)
rep.check(r.returncode == 1 and "another site secret" in r.stderr, "--assume-same-site let a foreign shard in")
r = run("process", listed[0], db=merged, conf=other.conf)
rep.check(r.returncode == 3 and "another site secret" in r.stderr,
          "process into another site's database: exit %d %r" % (r.returncode, r.stderr))

old = os.path.join(tmp, "old.db")
shutil.copy(shards[0], old)
con = sqlite3.connect(old)
con.execute("PRAGMA user_version = 1")
con.commit()
con.close()
r = run("merge", old, "--into", merged)
rep.check(r.returncode == 1 and "schema version 1" in r.stderr, "other schema version: exit %d %r" % (r.returncode, r.stderr))

unstamped = os.path.join(tmp, "unstamped.db")
shutil.copy(shards[0], unstamped)
con = sqlite3.connect(unstamped)
con.execute("DELETE FROM meta WHERE key = 'site_fingerprint'")
con.commit()
con.close()
r = run("merge", unstamped, "--into", merged)
rep.check(r.returncode == 1 and "no site fingerprint" in r.stderr, "unstamped shard: exit %d %r" % (r.returncode, r.stderr))

junk = os.path.join(tmp, "junk.db")
with open(junk, "w") as f:
    f.write("not a database at all, but long enough to look like a file " * 20)
r = run("merge", junk, "--into", merged)
rep.check(r.returncode == 1 and "junk.db" in r.stderr, "not a database: exit %d %r" % (r.returncode, r.stderr))
r = run("merge", merged, "--into", merged)
rep.check(r.returncode == 1, "merge into itself: exit %d" % r.returncode)
rep.check(mergelib.dump(merged) == h, "a refused shard changed the target")

r = run("merge", "--assume-same-site", unstamped, "--into", merged)
rep.check(r.returncode == 0 and mergelib.dump(merged) == h, "--assume-same-site: exit %d, changed %s" % (r.returncode, mergelib.dump(merged) != h))
rep.check(run("merge").returncode == 2, "merge without shards is not a usage error")

other.close()
site.close()
rep.finish()
