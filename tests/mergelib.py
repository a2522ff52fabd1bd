"""What the back-fill tests (merge_shards.py, slurm_backfill.py) share: a
small archive laid out as archives are, and the comparison of two results
databases by what they measured rather than by their row ids (which differ
between a merged database and a single run)."""
import hashlib
import os
import sqlite3
import subprocess
import sys

import pydicom
from pydicom.uid import generate_uid

import enlib


def make_archive(root, tmp, seed, rep):
    """Three studies in folders (2024/study-X/series1/IMnnnn), six instances:
    four simulated loops long enough for beats (tools/echosim.py) and two
    short files of the test generator.  Listed in path order, blocks of two
    split studies a and b across shards.  Returns the sorted DICOM paths."""
    sim = os.path.join(tmp, "sim")
    r = subprocess.run([sys.executable, os.path.join(enlib.TOP_SRCDIR, "tools", "echosim.py"),
                        "dicoms", "--out", sim, "--count", "4", "--seed", str(seed),
                        "--max-seconds", "1.5"], capture_output=True, text=True)
    rep.check(r.returncode == 0, "echosim: %s" % r.stderr[-1000:])
    sims = sorted(os.path.join(sim, f) for f in os.listdir(sim) if f.endswith(".dcm"))
    short = [os.path.join(enlib.TESTDATA, m["file"]) for m in enlib.load_manifest()
             if m["expect"] == "ok" and m["frames"] >= 16
             and m["sop_class"] == "1.2.840.10008.5.1.4.1.1.3.1"][:2]
    groups = {"study-a": [sims[0], short[0], sims[1]], "study-b": [sims[2], sims[3]],
              "study-c": [short[1]]}
    paths = []
    for folder, members in groups.items():
        d = os.path.join(root, "2024", folder, "series1")
        os.makedirs(d)
        uid = generate_uid(entropy_srcs=[str(seed), folder])
        for i, src in enumerate(members):
            ds = pydicom.dcmread(src)
            ds.StudyInstanceUID = uid
            paths.append(os.path.join(d, "IM%04d" % i))
            ds.save_as(paths[-1])
    return sorted(paths)


def clips(db):
    """Per clip (by duplicate key): state, verdict, EF, study, frames of its
    video, its beats and its LV size curve."""
    con = sqlite3.connect(db)
    out = {}
    for cid, key, status, verdict, ef, pseudo, vframes in con.execute(
            "SELECT c.id, c.dedup_key, c.status, c.verdict, c.ef_mean, s.pseudonym, c.video_frames "
            "FROM clips c JOIN studies s ON s.id = c.study_id"):
        beats = con.execute("SELECT beat, systole_frame, clip_start, shift, ef FROM beats "
                            "WHERE clip_id = ? ORDER BY beat", (cid,)).fetchall()
        frames = con.execute("SELECT frame, lv_size, systole FROM frames WHERE clip_id = ? "
                             "ORDER BY frame", (cid,)).fetchall()
        out[key] = (status, verdict, ef, pseudo, vframes, beats, frames)
    con.close()
    return out


def studies(db):
    """Per study (by pseudonym): its result over its clips."""
    con = sqlite3.connect(db)
    out = {p: tuple(rest) for p, *rest in con.execute(
        "SELECT pseudonym, clips_total, clips_usable, beats, ef_mean, ef_class, flags_text, "
        "result_stale FROM studies")}
    con.close()
    return out


def counts(db):
    con = sqlite3.connect(db)
    try:
        return tuple(con.execute("SELECT count(*) FROM %s" % t).fetchone()[0]
                     for t in ("studies", "clips", "beats", "frames"))
    finally:
        con.close()


def dump(db):
    """A hash of every row: equal only if nothing at all changed."""
    con = sqlite3.connect(db)
    h = hashlib.sha256()
    for line in con.iterdump():
        h.update(line.encode())
    con.close()
    return h.hexdigest()


def compare(rep, what, db, ref):
    """db holds what ref holds: the same clips, beats, frames, EFs and study
    results; every clip and study once."""
    a, b = clips(db), clips(ref)
    rep.check(set(a) == set(b), "%s: clips %d vs %d in the single run (missing %d, extra %d)"
              % (what, len(a), len(b), len(set(b) - set(a)), len(set(a) - set(b))))
    for key in sorted(set(a) & set(b)):
        rep.check(a[key] == b[key], "%s: clip %s differs: %s vs %s"
                  % (what, key[:8], a[key][:5] + (len(a[key][5]), len(a[key][6])),
                     b[key][:5] + (len(b[key][5]), len(b[key][6]))))
    rep.check(counts(db) == counts(ref), "%s: rows %s vs %s in the single run"
              % (what, counts(db), counts(ref)))
    rep.check(studies(db) == studies(ref), "%s: studies %s vs %s" % (what, studies(db), studies(ref)))
