#!/usr/bin/python3
"""keystore_concurrent.py - the key store through `echonetctl convert`, as
the daemon's children use it: 16 converts running at once, 8 studies each,
into a key store that starts in the old tab-separated format.

  * every convert exits 0;
  * the old file was migrated once and kept as <path>.migrated, and its
    mapping is still there;
  * all 128 studies are in the key store, each pseudonym (from --json)
    mapping to the patient name of its file, and no mapping is duplicated
    or lost (the old store lost 11 of 104 with 8 writers);
  * the store is mode 0600 and an SQLite key store;
  * no identifying value is printed.
"""
import json
import os
import sqlite3
import stat
import subprocess
import sys
import threading

import pydicom

import enlib

WRITERS = 16
STUDIES = 8
SOURCE = "us_single_mono2_jpeg_baseline.dcm"  # one small frame: the key store is what is timed
OLD_LINE = ("ffff000000000001\t1.9.9\t\t\tOLD^PATIENT\tOLD1\t\t\t\t\t\n")


class Report:
    def __init__(self):
        self.passed = self.failed = 0

    def check(self, cond, what):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            print("FAIL:", what)

    def finish(self):
        print("%d passed, %d failed" % (self.passed, self.failed))
        sys.exit(1 if self.failed else 0)


def make_studies(site):
    src = pydicom.dcmread(os.path.join(enlib.TESTDATA, SOURCE))
    out = []
    for w in range(WRITERS):
        for i in range(STUDIES):
            name = "KSTEST^W%02dS%02d" % (w, i)
            src.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.77.%d.%d" % (w, i)
            src.SOPInstanceUID = src.StudyInstanceUID + ".1"
            src.PatientName = name
            src.PatientID = "KS%02d%02d" % (w, i)
            path = os.path.join(site.dir, "in", "w%02d-s%02d.dcm" % (w, i))
            src.save_as(path)
            out.append((w, path, name))
    return out


def main():
    rep = Report()
    site = enlib.Site(keystore=True)
    os.makedirs(os.path.join(site.dir, "in"))
    with open(site.keystore, "w") as f:
        f.write("# echonetd key store: pseudonym -> identifiers. CONFIDENTIAL.\n" + OLD_LINE)
    os.chmod(site.keystore, 0o600)
    studies = make_studies(site)
    results = {}
    start = threading.Barrier(WRITERS)

    def writer(w):
        start.wait()
        for k, (ww, path, name) in enumerate(s for s in studies if s[0] == w):
            r = site.run("convert", path, os.path.join(site.out, "w%02d-%d.avi" % (w, k)), "--json")
            results[path] = (r, name)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    names = {}
    for path, (r, name) in sorted(results.items()):
        err = r.stderr.decode(errors="replace")
        rep.check(r.returncode == 0, "%s: exit %d: %s" % (os.path.basename(path), r.returncode, err))
        rep.check("KSTEST" not in err + r.stdout.decode(errors="replace"),
                  "%s: an identifying value was printed" % os.path.basename(path))
        if r.returncode == 0:
            names[json.loads(r.stdout)["pseudonym"]] = name
    rep.check(len(results) == WRITERS * STUDIES and len(names) == WRITERS * STUDIES,
              "%d converts ran, %d distinct pseudonyms" % (len(results), len(names)))

    rep.check(stat.S_IMODE(os.stat(site.keystore).st_mode) == 0o600, "key store not 0600")
    with open(site.keystore, "rb") as f:
        is_sqlite = f.read(16) == b"SQLite format 3\0"
    rep.check(is_sqlite, "key store is not an SQLite file")
    if not is_sqlite:
        rep.finish()
    kept = site.keystore + ".migrated"
    rep.check(os.path.exists(kept) and "OLD^PATIENT" in open(kept).read(),
              "old key store not kept as .migrated")
    rep.check(not os.path.exists(site.keystore + ".migrated.1"), "migrated more than once")

    db = sqlite3.connect("file:%s?mode=ro" % site.keystore, uri=True)
    rows = db.execute("SELECT pseudonym, patient_name FROM links").fetchall()
    db.close()
    stored = {}
    for pseudonym, name in rows:
        stored.setdefault(pseudonym, []).append(name)
    missing = [p for p in names if p not in stored]
    wrong = [p for p in names if p in stored and stored[p] != [names[p]]]
    rep.check(not missing, "%d of %d mappings missing from the key store" % (len(missing), len(names)))
    rep.check(not wrong, "%d mappings duplicated or wrong" % len(wrong))
    rep.check(stored.get("ffff000000000001") == ["OLD^PATIENT"], "migrated mapping lost")
    rep.check(len(rows) == WRITERS * STUDIES + 1, "%d records, expected %d" % (len(rows), WRITERS * STUDIES + 1))
    print("%d converts at %d at once: %d mappings stored, %d missing" %
          (len(results), WRITERS, len(stored) - 1, len(missing)))
    site.close()
    rep.finish()


if __name__ == "__main__":
    main()
