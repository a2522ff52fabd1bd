"""store_views.py - the results database seen from outside the C API.

tests/test-store-fixture builds a known database and exports it; this test
reads them with Python's own sqlite3, json and csv modules (what an operator
or a researcher would use) and checks that:
  - every view in sql/views.sql answers, and agrees with the same question
    asked of the tables directly;
  - the size.csv and clip-prediction exports have upstream's exact shapes,
    with EFs formatted as Python's "{:.4f}" formats the stored values, and
    upstream's beat-by-beat join (systole - 32, clamped at 0) finds every
    unshifted beat;
  - the JSON export parses and matches the tables;
  - no table or view has a column for an identifying value, and no stored
    text looks like a DICOM UID;
  - docs/schema.md names every table, view and column.

Run by automake with $PYTHON.
"""
import csv
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile

BUILD = os.environ.get("EN_TOP_BUILDDIR")
SRC = os.environ.get("EN_TOP_SRCDIR")
if not BUILD or not SRC:
    print("EN_TOP_BUILDDIR/EN_TOP_SRCDIR are not set: run through make check")
    sys.exit(99)
FIXTURE = os.path.join(BUILD, "tests", "test-store-fixture")

failures = []


def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what)
    if not cond:
        failures.append(what)


def rows(db, sql, *args):
    return db.execute(sql, args).fetchall()


def check_views(db):
    views = [r[0] for r in rows(db, "SELECT name FROM sqlite_master WHERE type = 'view' ORDER BY name")]
    check(len(views) >= 10, "views installed: %s" % ", ".join(views))
    for v in views:
        try:
            db.execute('SELECT * FROM "%s"' % v).fetchall()
            check(True, "view %s answers" % v)
        except sqlite3.Error as e:
            check(False, "view %s answers: %s" % (v, e))

    counts = dict(rows(db, "SELECT status, studies FROM v_status_counts"))
    check(counts == {"done": 7, "failed": 1, "processing": 1, "queued": 1},
          "v_status_counts: %s" % counts)

    done = {r[0]: r for r in rows(db, "SELECT pseudonym, ef_mean, threshold_reduced, flags "
                                      "FROM studies WHERE status = 'done'")}
    res = rows(db, "SELECT pseudonym, ef, below_50, below_40, below_35, beats FROM v_results")
    check(set(r[0] for r in res) == set(done), "v_results: one row per done study")
    ok = all(r[1] == round(done[r[0]][1], 1) and r[2] == (done[r[0]][1] < 50)
             and r[3] == (done[r[0]][1] < 40) and r[4] == (done[r[0]][1] < 35) for r in res)
    check(ok, "v_results: EF and the 50/40/35 cuts agree with the table")
    check(dict((r[0], r[5]) for r in res)["d0d0d0d0d0d0d006"] == 1, "v_results: beat count")

    reduced = set(p for p, (_, ef, thr, _f) in done.items() if ef < thr)
    got = set(r[0] for r in rows(db, "SELECT pseudonym FROM v_reduced_ef"))
    check(got == reduced and "d0d0d0d0d0d0d006" in got and len(got) < len(done),
          "v_reduced_ef: %d studies below their threshold" % len(got))

    flagged = rows(db, "SELECT pseudonym, flags, flags_text FROM v_flagged")
    check(flagged == [("d0d0d0d0d0d0d004", 96, "beat_spread,fps_guessed")], "v_flagged: %s" % flagged)

    fails = rows(db, "SELECT pseudonym, stage, attempts, code, error FROM v_failures")
    check(fails == [("fa11fa11fa11fa11", "read", 2, "EN_EFORMAT", "truncated pixel data")],
          "v_failures: last error with code and attempts: %s" % fails)

    queue = sorted(rows(db, "SELECT pseudonym, status, attempts, last_event_at IS NOT NULL FROM v_queue"))
    check(queue == [("90909090a0a0a0a0", "processing", 1, 1), ("c0c0c0c0c0c0c0c0", "queued", 0, 1)],
          "v_queue: %s" % queue)

    # Per-day throughput, recomputed here from the raw rows.
    expect = {}
    for day, status, ef, thr, flags, ms in rows(
            db, "SELECT substr(finished_at, 1, 10), status, ef_mean, threshold_reduced, flags, "
                "ms_total FROM studies WHERE finished_at IS NOT NULL"):
        d = expect.setdefault(day, [0, 0, 0, 0])
        d[0] += status == "done"
        d[1] += status == "failed"
        d[2] += status == "done" and ef < (thr if thr is not None else 50)
        d[3] += status == "done" and flags != 0
    got = {r[0]: list(r[1:]) for r in rows(db, "SELECT day, done, failed, reduced_ef, flagged FROM v_daily")}
    check(got == expect and len(got) >= 3, "v_daily: %s" % got)

    spread = {r[0]: r[1:] for r in rows(db, "SELECT pseudonym, beats, shifted_beats, min_ef, max_ef, "
                                            "range_ef FROM v_beat_spread")}
    ok = len(spread) == len(done)
    for p in done:
        efs = [r[0] for r in rows(db, "SELECT b.ef FROM beats b JOIN studies s ON s.id = b.study_id "
                                      "WHERE s.pseudonym = ?", p)]
        shifted = rows(db, "SELECT count(*) FROM beats b JOIN studies s ON s.id = b.study_id "
                           "WHERE s.pseudonym = ? AND b.shift > 0", p)[0][0]
        want = (len(efs), shifted, round(min(efs), 1), round(max(efs), 1), round(max(efs) - min(efs), 1))
        ok = ok and spread.get(p) == want
    check(ok, "v_beat_spread: beats, shifted, min, max, range per study")
    check(spread["d0d0d0d0d0d0d002"][1] == 1, "v_beat_spread: the shifted clip is counted")

    ev = rows(db, "SELECT count(*), sum(pseudonym IS NULL) FROM v_events")[0]
    check(ev == (rows(db, "SELECT count(*) FROM events")[0][0], 1), "v_events: all events, one without study")

    models = rows(db, "SELECT architecture, studies FROM v_models ORDER BY architecture")
    check(models == [("deeplabv3_resnet50", 7), ("r2plus1d_18", 7)], "v_models: %s" % models)


def done_in_export_order(db):
    return [r[0] for r in rows(db, "SELECT pseudonym FROM studies WHERE status = 'done' "
                                   "ORDER BY received_at, id")]


def check_csv(db, out):
    with open(os.path.join(out, "size.csv"), newline="") as f:
        text = f.read()
    check(text.startswith("Filename,Frame,Size,HumanLarge,HumanSmall,ComputerSmall\n"), "size.csv header")
    size = list(csv.DictReader(text.splitlines()))
    want = []
    for p in done_in_export_order(db):
        for frame, lv, sys_ in rows(db, "SELECT f.frame, f.lv_size, f.systole FROM frames f JOIN studies s "
                                        "ON s.id = f.study_id WHERE s.pseudonym = ? ORDER BY f.frame", p):
            want.append({"Filename": p + ".avi", "Frame": str(frame), "Size": str(lv),
                         "HumanLarge": "0", "HumanSmall": "0", "ComputerSmall": str(sys_)})
    check(size == want, "size.csv: %d rows equal the frames table" % len(size))

    with open(os.path.join(out, "clips.csv"), newline="") as f:
        clips = f.read()
    want = ""
    for p in done_in_export_order(db):
        for start, ef in rows(db, "SELECT b.clip_start, b.ef FROM beats b JOIN studies s ON s.id = b.study_id "
                                  "WHERE s.pseudonym = ? ORDER BY b.beat", p):
            want += "{},{},{:.4f}\n".format(p + ".avi", start, ef)
    check(clips == want, "clips.csv: upstream's filename,clip_start,ef with Python's {:.4f}")

    # upstream's beat_by_beat_analysis.R: Frame - 32, clamped at 0, merged.
    pred = {}
    for name, start, ef in csv.reader(clips.splitlines()):
        pred.setdefault((name, int(start)), []).append(float(ef))
    joined = sum(1 for r in size if r["ComputerSmall"] == "1"
                 and (r["Filename"], max(0, int(r["Frame"]) - 32)) in pred)
    unshifted = rows(db, "SELECT count(*) FROM beats WHERE shift = 0")[0][0]
    check(joined == unshifted, "R join finds every unshifted beat (%d of %d)" % (joined, unshifted))


def check_json(db, out):
    with open(os.path.join(out, "export.json")) as f:
        doc = json.load(f)
    check(doc["format"] == "echonetd-results" and doc["schema_version"] ==
          rows(db, "PRAGMA user_version")[0][0], "export.json: format and schema version")
    studies = {s["pseudonym"]: s for s in doc["studies"]}
    check(len(studies) == 10, "export.json: every study (%d)" % len(studies))
    ok = True
    for p, s in studies.items():
        (status, vf, ef, fl) = rows(db, "SELECT status, video_frames, ef_mean, flags FROM studies "
                                        "WHERE pseudonym = ?", p)[0]
        ok = ok and s["status"] == status and s["flags"] == fl
        if status != "done":
            ok = ok and s["beats"] == [] and s["lv_size"] == []
            continue
        sizes = [r[0] for r in rows(db, "SELECT f.lv_size FROM frames f JOIN studies t ON t.id = f.study_id "
                                        "WHERE t.pseudonym = ? ORDER BY f.frame", p)]
        syst = [r[0] for r in rows(db, "SELECT f.frame FROM frames f JOIN studies t ON t.id = f.study_id "
                                       "WHERE t.pseudonym = ? AND f.systole ORDER BY f.frame", p)]
        efs = [r[0] for r in rows(db, "SELECT b.ef FROM beats b JOIN studies t ON t.id = b.study_id "
                                      "WHERE t.pseudonym = ? ORDER BY b.beat", p)]
        ok = ok and s["video_frames"] == vf == len(s["lv_size"]) and s["lv_size"] == sizes
        ok = ok and s["systole_frames"] == syst
        ok = ok and all(abs(b["ef"] - e) <= 1e-5 * abs(e) for b, e in zip(s["beats"], efs))
        ok = ok and abs(s["ef"]["mean"] - ef) <= 1e-5 * abs(ef)
        ok = ok and s["models"]["segmentation"]["architecture"] == "deeplabv3_resnet50"
        ok = ok and s["ef"]["below_50"] == (ef < 50)
    check(ok, "export.json: statuses, frames, systoles, beats and EFs match the tables")
    f = studies["fa11fa11fa11fa11"]
    check(f["last_error"] == "truncated pixel data" and f["attempts"] == 2 and f["stage"] == "read",
          "export.json: a failed study carries its error")


FORBIDDEN = ("patient", "uid", "accession", "birth", "institution", "physician", "referring",
             "operator", "sop_instance", "series", "study_date", "study_time", "address")
UID_LIKE = re.compile(r"^[0-9]+(\.[0-9]+){3,}$")


def check_no_identifiers(db):
    objects = [r[0] for r in rows(db, "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")]
    bad = []
    for o in objects:
        for col in rows(db, 'PRAGMA table_info("%s")' % o):
            if any(w in col[1].lower() for w in FORBIDDEN):
                bad.append("%s.%s" % (o, col[1]))
    check(not bad and len(objects) > 10, "no identifying column in %d tables/views %s" % (len(objects), bad))

    bad = []
    for t in [r[0] for r in rows(db, "SELECT name FROM sqlite_master WHERE type = 'table'")]:
        for col in rows(db, 'PRAGMA table_info("%s")' % t):
            if col[1] == "transfer_syntax":
                continue   # a transfer syntax UID names an encoding, not a patient
            for (v,) in rows(db, 'SELECT "%s" FROM "%s"' % (col[1], t)):
                if isinstance(v, str) and UID_LIKE.match(v):
                    bad.append("%s.%s=%s" % (t, col[1], v))
    check(not bad, "no stored value looks like a DICOM UID %s" % bad[:3])


def check_docs(db):
    with open(os.path.join(SRC, "docs", "schema.md")) as f:
        doc = f.read()
    missing = []
    for name, kind in rows(db, "SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view')"):
        if "`%s`" % name not in doc:
            missing.append(name)
        if kind == "table":
            for col in rows(db, 'PRAGMA table_info("%s")' % name):
                if "`%s`" % col[1] not in doc:
                    missing.append("%s.%s" % (name, col[1]))
    check(not missing, "docs/schema.md names every table, view and column %s" % missing)


def main():
    with tempfile.TemporaryDirectory(prefix="en-store-py-") as tmp:
        path = os.path.join(tmp, "results.db")
        p = subprocess.run([FIXTURE, path, tmp], capture_output=True, text=True, timeout=120)
        check(p.returncode == 0, "fixture built: %s" % p.stderr.strip())
        if p.returncode != 0:
            return 1
        db = sqlite3.connect(path)
        check(rows(db, "PRAGMA journal_mode")[0][0] == "wal", "the file is in WAL mode")
        check(rows(db, "PRAGMA integrity_check")[0][0] == "ok", "integrity_check")
        db.execute("PRAGMA foreign_keys = ON")
        check(rows(db, "PRAGMA foreign_key_check") == [], "foreign_key_check")
        check_views(db)
        check_csv(db, tmp)
        check_json(db, tmp)
        check_no_identifiers(db)
        check_docs(db)
        db.close()
    print("%d failure(s)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
