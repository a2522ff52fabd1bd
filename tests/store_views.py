"""store_views.py - the results database seen from outside the C API.

tests/test-store-fixture builds a known database and exports it; this test
reads them with Python's own sqlite3, json and csv modules (what an operator
or a researcher would use) and checks that:
  - every view in sql/views.sql answers, and agrees with the same question
    asked of the tables directly; every study's EF is the mean over the
    beats of its usable clips;
  - the size.csv and clip-prediction exports have upstream's exact shapes,
    with EFs formatted as Python's "{:.4f}" formats the stored values, and
    upstream's beat-by-beat join (systole - 32, clamped at 0) finds every
    unshifted beat;
  - the JSON export (studies, their results and clips) parses and
    matches the tables;
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
    check(len(views) >= 13, "views installed: %s" % ", ".join(views))
    for v in views:
        try:
            db.execute('SELECT * FROM "%s"' % v).fetchall()
            check(True, "view %s answers" % v)
        except sqlite3.Error as e:
            check(False, "view %s answers: %s" % (v, e))

    counts = dict(rows(db, "SELECT status, clips FROM v_status_counts"))
    check(counts == {"done": 10, "failed": 1, "processing": 1, "queued": 1},
          "v_status_counts (clips): %s" % counts)

    # The study result: the mean over the beats of the usable clips.
    results = {r[0]: r[1:] for r in rows(db, "SELECT pseudonym, ef_mean, threshold_reduced, flags, "
                                             "clips_usable, clips_total, beats FROM studies "
                                             "WHERE result_version > 0")}
    check(len(results) == 8, "8 studies have a result: %s" % sorted(results))
    ok = True
    for p, (ef, _thr, _fl, usable, total, beats) in results.items():
        efs = [r[0] for r in rows(db, "SELECT b.ef FROM beats b JOIN clips c ON c.id = b.clip_id "
                                      "JOIN studies s ON s.id = c.study_id WHERE s.pseudonym = ? "
                                      "AND c.verdict = 'usable' AND c.status = 'done'", p)]
        n_clips = rows(db, "SELECT count(*) FROM clips c JOIN studies s ON s.id = c.study_id "
                           "WHERE s.pseudonym = ?", p)[0][0]
        ok = ok and beats == len(efs) and total == n_clips
        ok = ok and (ef is None if not efs else abs(ef - sum(efs) / len(efs)) < 1e-9)
    check(ok, "every study EF is the mean of its usable clips' beats")
    check(results["d0d0d0d0d0d0d000"][3:6] == (2, 4, 6), "d0..00: 2 usable of 4 clips, 6 beats: %s"
          % (results["d0d0d0d0d0d0d000"][3:6],))
    res = rows(db, "SELECT pseudonym, ef, below_50, below_40, below_35, beats, clips_usable "
                   "FROM v_results")
    check(set(r[0] for r in res) == set(results), "v_results: one row per study with a result")
    ok = all((r[1] is None and results[r[0]][0] is None) or
             (r[1] == round(results[r[0]][0], 1) and r[2] == (results[r[0]][0] < 50)
              and r[3] == (results[r[0]][0] < 40) and r[4] == (results[r[0]][0] < 35))
             for r in res)
    check(ok, "v_results: EF and the 50/40/35 cuts agree with the table")
    check(dict((r[0], r[5]) for r in res)["d0d0d0d0d0d0d006"] == 1, "v_results: beat count")

    reduced = set(p for p, (ef, thr, *_r) in results.items() if ef is not None and ef < thr)
    got = set(r[0] for r in rows(db, "SELECT pseudonym FROM v_reduced_ef"))
    check(got == reduced and "d0d0d0d0d0d0d006" in got and len(got) < len(results),
          "v_reduced_ef: %d studies below their threshold" % len(got))

    flagged = sorted(rows(db, "SELECT pseudonym, flags_text FROM v_flagged"))
    want = sorted((p, rows(db, "SELECT flags_text FROM studies WHERE pseudonym = ?", p)[0][0])
                  for p, r in results.items() if r[2])
    check(flagged == want and ("fa11fa11fa11fa11", "no_usable_clip,clips_failed") in flagged,
          "v_flagged: %s" % flagged)

    left_out = sorted(rows(db, "SELECT pseudonym, verdict, verdict_codes FROM v_clips_left_out"))
    check(left_out == [("d0d0d0d0d0d0d000", "not_analysed", "single_frame"),
                       ("d0d0d0d0d0d0d000", "unusable", "no_rv")], "v_clips_left_out: %s" % left_out)
    check(rows(db, "SELECT count(*) FROM v_clips")[0][0] == 13, "v_clips: every clip")

    fails = rows(db, "SELECT pseudonym, stage, attempts, code, error FROM v_failures")
    check(fails == [("fa11fa11fa11fa11", "read", 2, "EN_EFORMAT", "truncated pixel data")],
          "v_failures: last error with code and attempts: %s" % fails)

    queue = sorted(rows(db, "SELECT pseudonym, status, attempts, last_event_at IS NOT NULL FROM v_queue"))
    check(queue == [("90909090a0a0a0a0", "processing", 1, 1), ("c0c0c0c0c0c0c0c0", "queued", 0, 1)],
          "v_queue: %s" % queue)
    stale = sorted(rows(db, "SELECT pseudonym, clips_unfinished FROM v_stale"))
    check(stale == [("90909090a0a0a0a0", 1), ("c0c0c0c0c0c0c0c0", 1)], "v_stale: %s" % stale)

    # Per-day throughput, recomputed here from the raw rows.
    expect = {}
    for day, status, verdict in rows(db, "SELECT substr(finished_at, 1, 10), status, verdict "
                                         "FROM clips WHERE finished_at IS NOT NULL"):
        d = expect.setdefault(day, [0, 0, 0])
        d[0] += status == "done"
        d[1] += status == "failed"
        d[2] += status == "done" and verdict == "usable"
    got = {r[0]: list(r[1:]) for r in rows(db, "SELECT day, clips_done, clips_failed, clips_usable "
                                               "FROM v_daily")}
    check(got == expect and len(got) >= 3, "v_daily: %s" % got)

    spread = {r[0]: r[1:] for r in rows(db, "SELECT pseudonym, beats, shifted_beats, min_ef, max_ef, "
                                            "range_ef FROM v_beat_spread")}
    ok = len(spread) == len(results)
    for p in results:
        efs = [r[0] for r in rows(db, "SELECT b.ef FROM beats b JOIN clips c ON c.id = b.clip_id "
                                      "JOIN studies s ON s.id = c.study_id WHERE s.pseudonym = ? "
                                      "AND c.verdict = 'usable' AND c.status = 'done'", p)]
        shifted = rows(db, "SELECT count(*) FROM beats b JOIN clips c ON c.id = b.clip_id "
                           "JOIN studies s ON s.id = c.study_id WHERE s.pseudonym = ? "
                           "AND c.verdict = 'usable' AND b.shift > 0", p)[0][0]
        want = (len(efs), shifted, round(min(efs), 1), round(max(efs), 1),
                round(max(efs) - min(efs), 1)) if efs else (0, 0, None, None, None)
        ok = ok and spread.get(p) == want
    check(ok, "v_beat_spread: beats, shifted, min, max, range per study, usable clips only")
    check(spread["d0d0d0d0d0d0d002"][1] == 1, "v_beat_spread: the shifted clip is counted")

    ev = rows(db, "SELECT count(*), sum(pseudonym IS NULL), sum(state = 'result') FROM v_events")[0]
    check(ev == (rows(db, "SELECT count(*) FROM events")[0][0], 1, 8),
          "v_events: all events, one without study, 8 study results: %s" % (ev,))

    models = rows(db, "SELECT architecture, clips FROM v_models ORDER BY architecture")
    check(models == [("deeplabv3_resnet50", 9), ("r2plus1d_18", 9)], "v_models: %s" % models)


def clips_in_export_order(db):
    """The analysed clips, as the export walks them: studies by first
    arrival, their clips by arrival."""
    return [r for r in rows(db, "SELECT c.id, c.video_file FROM clips c JOIN studies s "
                                "ON s.id = c.study_id WHERE c.video_file IS NOT NULL "
                                "ORDER BY s.first_received_at, s.id, c.received_at, c.id")]


def check_csv(db, out):
    with open(os.path.join(out, "size.csv"), newline="") as f:
        text = f.read()
    check(text.startswith("Filename,Frame,Size,HumanLarge,HumanSmall,ComputerSmall\n"), "size.csv header")
    size = list(csv.DictReader(text.splitlines()))
    want = []
    for cid, name in clips_in_export_order(db):
        for frame, lv, sys_ in rows(db, "SELECT frame, lv_size, systole FROM frames "
                                        "WHERE clip_id = ? ORDER BY frame", cid):
            want.append({"Filename": name, "Frame": str(frame), "Size": str(lv),
                         "HumanLarge": "0", "HumanSmall": "0", "ComputerSmall": str(sys_)})
    check(size == want and len(set(r["Filename"] for r in size)) == 9,
          "size.csv: %d rows equal the frames table, one Filename per clip" % len(size))

    with open(os.path.join(out, "clips.csv"), newline="") as f:
        clips = f.read()
    want = ""
    for cid, name in clips_in_export_order(db):
        for start, ef in rows(db, "SELECT clip_start, ef FROM beats WHERE clip_id = ? ORDER BY beat",
                              cid):
            want += "{},{},{:.4f}\n".format(name, start, ef)
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
    nclips = 0
    for p, s in studies.items():
        (version, ef, fl, usable) = rows(db, "SELECT result_version, ef_mean, flags, clips_usable "
                                             "FROM studies WHERE pseudonym = ?", p)[0]
        res = s["result"]
        ok = ok and res["version"] == version and res["flags"] == fl
        ok = ok and res["clips_usable"] == (usable if version else 0)
        ok = ok and (res["ef_mean"] is None if ef is None else abs(res["ef_mean"] - ef) <= 1e-5 * ef)
        for c in s["clips"]:
            nclips += 1
            (status, vf, cef, cfl, verdict) = rows(db, "SELECT status, video_frames, ef_mean, flags, "
                                                       "verdict FROM clips WHERE id = ?",
                                                   c["clip_id"])[0]
            ok = ok and c["status"] == status and c["flags"] == cfl
            ok = ok and c["verdict"]["verdict"] == verdict
            if vf is None:
                ok = ok and c["beats"] == [] and c["lv_size"] == []
                continue
            sizes = [r[0] for r in rows(db, "SELECT lv_size FROM frames WHERE clip_id = ? ORDER BY frame",
                                        c["clip_id"])]
            syst = [r[0] for r in rows(db, "SELECT frame FROM frames WHERE clip_id = ? AND systole "
                                           "ORDER BY frame", c["clip_id"])]
            efs = [r[0] for r in rows(db, "SELECT ef FROM beats WHERE clip_id = ? ORDER BY beat",
                                      c["clip_id"])]
            ok = ok and c["video_frames"] == vf == len(c["lv_size"]) and c["lv_size"] == sizes
            ok = ok and c["systole_frames"] == syst
            ok = ok and all(abs(b["ef"] - e) <= 1e-5 * abs(e) for b, e in zip(c["beats"], efs))
            ok = ok and abs(c["ef"]["mean"] - cef) <= 1e-5 * abs(cef)
            ok = ok and c["models"]["segmentation"]["architecture"] == "deeplabv3_resnet50"
            ok = ok and c["ef"]["below_50"] == (cef < 50)
    check(ok and nclips == 13, "export.json: the tree of studies and %d clips matches the tables"
          % nclips)
    f = studies["fa11fa11fa11fa11"]["clips"][0]
    check(f["last_error"] == "truncated pixel data" and f["attempts"] == 2 and f["stage"] == "read",
          "export.json: a failed clip carries its error")
    still = [c for c in studies["d0d0d0d0d0d0d000"]["clips"] if c["verdict"]["verdict"] == "not_analysed"]
    check(len(still) == 1 and still[0]["verdict"]["codes"] == "single_frame" and
          still[0]["source"]["sop_class"] == "1.2.840.10008.5.1.4.1.1.6.1",
          "export.json: the still is there with its reason")
    check(studies["fa11fa11fa11fa11"]["result"]["no_ef_reason"].startswith("no usable apical"),
          "export.json: a study without EF says why")


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
            if col[1] in ("transfer_syntax", "sop_class"):
                continue   # these UIDs name an encoding or a kind of object, not a patient
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
