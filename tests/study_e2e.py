"""A whole echo study through `echonetctl process` (issue 11).

tools/echosim.py writes one study as a machine sends it: apical
four-chamber clips of one heart with known EF, and instances that must not
count (a two-chamber and a short-axis clip, an off-axis A4C attempt, a
still, a Doppler strip described by its ultrasound regions, a screen
without a sector, a non-echo secondary capture), all of one
StudyInstanceUID.  They are processed in random order, in two runs, the
second one killed (SIGKILL) part-way and run again, with one file
delivered twice.  Then:

  - one study row; every instance present once as a clip with a verdict,
    the right one for its kind (not analysed ones with their reason);
  - nothing replaced: the first run's clips are untouched by the second;
    the duplicate is the same clip, not a second one;
  - the study's EF is the mean over the beats of its usable clips, with
    their count, and close to the simulator's truth; no clip is left
    unfinished by the kill; every result version is an event, in order;
  - list, show, export and the report describe the study and its clips,
    and nothing identifying reaches the database or the outputs.
"""
import csv
import io
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

import enlib

TOP = os.environ.get("EN_TOP_SRCDIR", os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(TOP, "tools"))
import echosim  # noqa: E402

rep = enlib.Report("study_e2e")
SEED = 424242
OTHERS = ("a2c", "psax", "offaxis", "still", "doppler", "nosector", "nonecho")
EXPECT_REASON = {"still": "single_frame", "doppler": "doppler", "nosector": "no_sector",
                 "nonecho": "not_ultrasound", "sr": "not_ultrasound"}

site = enlib.Site()
data = os.path.join(site.dir, "study")
os.makedirs(data)
db = os.path.join(site.dir, "results.db")
with open(site.conf, "a") as f:
    f.write("[paths]\ndatabase = %s\n[nn]\nthreads = 2\n" % db)
t0 = time.time()
truth = echosim.write_study(data, SEED, n_a4c=3, others=OTHERS, max_seconds=2.6, with_codes=False,
                            work=os.path.join(site.dir, "work"))
print("simulated %d instances in %.0f s" % (len(truth["instances"]), time.time() - t0))
kinds = {i["file"]: i["kind"] for i in truth["instances"]}


def add_sr(src, name):
    """A structured report of the study (no pixel data), as a machine or a
    PACS sends it with the clips: an instance of the study all the same."""
    import pydicom
    import pydicom.uid
    ds = pydicom.dcmread(os.path.join(data, src))
    for tag in list(ds.keys()):
        if tag.group in (0x0028, 0x7FE0, 0x6000) or tag.group == 0x0018 and tag.element >= 0x6011:
            del ds[tag]
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.33"
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality = "SR"
    ds.save_as(os.path.join(data, name), write_like_original=False)
    kinds[name] = "sr"


add_sr(next(f for f in kinds if kinds[f] == "a4c"), "report-sr.dcm")
files = sorted(kinds)
random.Random(SEED).shuffle(files)
# The same instance delivered again, under another name.
dup_of = next(f for f in files if kinds[f] == "a4c")
shutil.copy(os.path.join(data, dup_of), os.path.join(data, "again.dcm"))
first, second = files[:5], files[5:] + ["again.dcm"]


def process(names, **kw):
    return subprocess.Popen([enlib.ECHONETCTL, "-c", site.conf, "process", "--json"]
                            + [os.path.join(data, n) for n in names],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def clip_lines(out):
    return [x for x in map(json.loads, out.splitlines()) if x.get("kind") == "clip"]


# Run 1.
p = process(first)
out, err = p.communicate(timeout=900)
rep.check(p.returncode == 0, "first run: exit %d: %s" % (p.returncode, err[-500:]))
clip_of = {f: c["clip_id"] for f, c in zip(first, clip_lines(out))}
con = sqlite3.connect(db)
snapshot = {r[0]: r for r in con.execute("SELECT * FROM clips WHERE id IN (%s)"
                                         % ",".join(map(str, clip_of.values())))}
beats1 = con.execute("SELECT * FROM beats WHERE clip_id IN (%s) ORDER BY 1, 2"
                     % ",".join(map(str, clip_of.values()))).fetchall()

# Run 2, killed once its first instance is stored, then run again.
p = process(second)
for line in p.stdout:
    if '"kind":"clip"' in line:
        break
p.send_signal(signal.SIGKILL)
p.wait()
p = process(second)
out, err = p.communicate(timeout=900)
rep.check(p.returncode == 0, "second run: exit %d: %s" % (p.returncode, err[-500:]))
lines = clip_lines(out)
for f, c in zip(second, lines):
    clip_of[f] = c["clip_id"]
study = [x for x in map(json.loads, out.splitlines()) if x.get("kind") == "study"]

# One study, every instance once, the duplicate the same clip.
studies = con.execute("SELECT id, pseudonym, result_version, result_stale, clips_total, "
                      "clips_usable, beats, ef_mean FROM studies").fetchall()
rep.check(len(studies) == 1, "one study row: %s" % studies)
sid, pseudonym, version, stale, total, usable, nbeats, ef = studies[0]
n_files = len(files)
rep.check(con.execute("SELECT count(*) FROM clips").fetchone()[0] == n_files == total,
          "%d clips for %d instances (result says %d)" % (
              con.execute("SELECT count(*) FROM clips").fetchone()[0], n_files, total))
rep.check(clip_of["again.dcm"] == clip_of[dup_of], "the duplicate is the same clip")
rep.check(len(set(clip_of[f] for f in files)) == n_files, "every instance its own clip")
rep.check(con.execute("SELECT count(*) FROM clips WHERE status <> 'done'").fetchone()[0] == 0,
          "a clip left unfinished or failed by the kill")

# Nothing replaced: the first run's clips and beats are as they were.  The
# one delivered again was processed again (echonetctl process re-runs what
# it is given) into the same clip, with the same beats.
kept = [f for f in first if f != dup_of]
after = {r[0]: r for r in con.execute("SELECT * FROM clips WHERE id IN (%s)"
                                      % ",".join(str(clip_of[f]) for f in first))}
rep.check(all(after[clip_of[f]] == snapshot[clip_of[f]] for f in kept),
          "the first run's clips changed")
rep.check(con.execute("SELECT * FROM beats WHERE clip_id IN (%s) ORDER BY 1, 2"
                      % ",".join(str(clip_of[f]) for f in first)).fetchall() == beats1,
          "the first run's beats changed")

# Every instance's verdict.
verdicts = {}
for f in files:
    v, codes, text = con.execute("SELECT verdict, verdict_codes, verdict_text FROM clips "
                                 "WHERE id = ?", (clip_of[f],)).fetchone()
    verdicts[f] = v
    k = kinds[f]
    if k in EXPECT_REASON:
        rep.check(v == "not_analysed" and EXPECT_REASON[k] in codes.split(",") and text,
                  "%s (%s): %s %s" % (f, k, v, codes))
    elif k == "a4c":
        rep.check(v in ("usable", "unusable"), "%s (a4c): %s" % (f, v))
    else:
        rep.check(v == "unusable" and text, "%s (%s) let in: %s %s" % (f, k, v, codes))
used = [f for f in files if verdicts[f] == "usable"]
rep.check(len(used) >= 1 and all(kinds[f] == "a4c" for f in used),
          "usable clips: %s" % [(f, kinds[f]) for f in used])

# The study's EF: the mean over the beats of its usable clips.
efs = [r[0] for r in con.execute("SELECT b.ef FROM beats b JOIN clips c ON c.id = b.clip_id "
                                 "WHERE c.study_id = ? AND c.verdict = 'usable'", (sid,))]
rep.check(usable == len(used) and nbeats == len(efs) and efs and
          abs(ef - sum(efs) / len(efs)) < 1e-9,
          "study EF %s over %s beats of %s clips; the usable clips' beats: %s" % (ef, nbeats, usable, efs))
rep.check(abs(ef - truth["ef"]) < 8, "study EF %.1f, truth %.1f" % (ef, truth["ef"]))
rep.check(stale == 0 and study and study[-1]["version"] == version,
          "result v%s stale %s, printed %s" % (version, stale, study[-1:]))
vs = [r[0] for r in con.execute("SELECT result_version FROM events WHERE state = 'result' "
                                "AND study_id = ? ORDER BY id", (sid,))]
rep.check(vs == list(range(1, version + 1)) and version >= 2, "result versions %s" % vs)

# list, show, export, report.
r = site.run("list")
rows = r.stdout.decode().splitlines()
rep.check(len(rows) == 2 and pseudonym in rows[1] and ("%d/%d" % (usable, n_files)) in rows[1]
          and ("%.1f" % ef) in rows[1], "list: %s" % rows)
r = site.run("show", pseudonym)
text = r.stdout.decode()
rep.check(r.returncode == 0 and text.count("not_analysed") == len(EXPECT_REASON)
          and "no right ventricle" in text, "show:\n%s" % text)
r = site.run("export", "--format", "json", pseudonym)
doc = json.loads(r.stdout)
rep.check(len(doc["studies"]) == 1 and len(doc["studies"][0]["clips"]) == n_files
          and doc["studies"][0]["result"]["clips_usable"] == usable, "export json tree")
r = site.run("export", "--format", "size", pseudonym)
size = list(csv.DictReader(io.StringIO(r.stdout.decode())))
names = set(x["Filename"] for x in size)
rep.check(len(names) == con.execute("SELECT count(*) FROM clips WHERE video_file IS NOT NULL")
          .fetchone()[0] and all(n.startswith(pseudonym + "-") for n in names),
          "size.csv: one Filename per analysed clip: %s" % sorted(names))
pdf = study[-1]["report_pdf"] if study else ""
ptext = subprocess.run(["pdftotext", pdf, "-"], capture_output=True, text=True).stdout if pdf else ""
rep.check(pseudonym in ptext and "Instances of the study" in ptext and
          ("%d in all" % n_files) in ptext and "Clips used" in ptext,
          "the report's study page: %s" % ptext[:300])
for f in used:
    key = con.execute("SELECT dedup_key FROM clips WHERE id = ?", (clip_of[f],)).fetchone()[0]
    rep.check(key[:6] in ptext, "the report lists used clip %s" % key[:6])

# The daemon's study-result child needs the segmentation model only (the
# report's key frames): it computes and draws the study with the EF
# weights gone, where processing a clip cannot even start.
conf2 = os.path.join(site.dir, "no-ef.conf")
with open(site.conf) as f, open(conf2, "w") as g:
    g.write(f.read() + "[models]\nef = %s/no-such-ef.safetensors\n" % site.dir)
r = subprocess.run([os.path.join(os.environ.get("EN_TOP_BUILDDIR", "."), "echonetd"),
                    "--finish-study", pseudonym, "-c", conf2], capture_output=True, timeout=300)
rep.check(r.returncode == 0 and r.stdout.decode().startswith("result %s " % pseudonym),
          "finish-study without the EF model: exit %d %s %s" % (r.returncode, r.stdout, r.stderr))
r = subprocess.run([enlib.ECHONETCTL, "-c", conf2, "process", os.path.join(data, used[0])],
                   capture_output=True, timeout=300)
rep.check(r.returncode == 3 and b"[models] ef" in r.stderr,
          "process without the EF model: exit %d %s" % (r.returncode, r.stderr))

# A machine that names its views: the DICOM decides where it speaks.
coded = os.path.join(site.dir, "coded")
os.makedirs(coded)
t2 = echosim.write_study(coded, SEED + 1, n_a4c=1, others=("a2c",), max_seconds=2.6,
                         with_codes=True, work=os.path.join(site.dir, "work"))
r = site.run("process", "--json", *[os.path.join(coded, i["file"]) for i in t2["instances"]],
             timeout=900)
got = {i["kind"]: c for i, c in zip(t2["instances"], clip_lines(r.stdout.decode()))}
con = sqlite3.connect(db)
for kind, want, code in (("a4c", "usable", ""), ("a2c", "unusable", "view_not_a4c")):
    v, codes, vd = con.execute("SELECT verdict, verdict_codes, view_dicom FROM clips WHERE id = ?",
                               (got[kind]["clip_id"],)).fetchone()
    rep.check(v == want and code in codes.split(",") + [""] and vd == kind,
              "coded %s: %s %s (DICOM names %s)" % (kind, v, codes, vd))

# Nothing identifying stored or written.
con.close()
blobs = [open(p, "rb").read() for p in (db, db + "-wal") if os.path.exists(p)] + \
    [open(os.path.join(site.out, n), "rb").read()
                                   for n in os.listdir(site.out)] + [ptext.encode()]
phi = truth["instances"][0]["phi"]
for s in phi:
    rep.check(not any(s.encode() in b for b in blobs), "identifying value %r in an output" % s)
site.close()
sys.exit(rep.finish())
