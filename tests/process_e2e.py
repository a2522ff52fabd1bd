"""The whole pipeline by hand: `echonetctl process`, then list, show,
export and report, on generated studies with small random-weight models.

Random weights say nothing about accuracy (issue 5 brings trained models);
this proves the plumbing: every processed file is stored whole as a clip of
its study (one clip row with its verdict, beats and one frame row per video
frame, consistent with what process printed), each touched study gets a
result and a report, re-processing replaces instead of duplicating,
exports have upstream's shapes with each clip's AVI as the Filename, the
report names the study and holds no PHI, a bad file fails with one line and
does not disturb the database, and exit codes are those documented.
Whole studies of many clips: tests/study_e2e.py."""
import csv
import io
import json
import os
import re
import sqlite3
import subprocess

import cv2
import numpy as np
import torch

import enlib
import nn_common as nc
import testmodels

rep = enlib.Report("process_e2e")
site = enlib.Site()

# Small models of the real topology, the segmentation head calibrated on the
# first study's frames (testmodels.build).
manifest = enlib.load_manifest()
good = [m for m in manifest if m["expect"] == "ok" and m["frames"] >= 24][:3]
files = [os.path.join(enlib.TESTDATA, m["file"]) for m in good]


def study_frames(path):
    """The first study's 112x112 frames, normalised as the engine does."""
    avi = os.path.join(site.dir, "calib.avi")
    site.run("convert", path, avi)
    cap = cv2.VideoCapture(avi)
    fr = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        fr.append(f[..., 0])
    x = torch.from_numpy(np.array(fr, dtype=np.float32))[:, None].repeat(1, 3, 1, 1)
    return (x - torch.from_numpy(nc.MEAN).view(1, 3, 1, 1)) / torch.from_numpy(nc.STD).view(1, 3, 1, 1)


paths = testmodels.build(site.dir, 8, "process_e2e random test weights",
                         calib=study_frames(files[0]), lv_share=0.25)
db = os.path.join(site.dir, "results.db")
with open(site.conf, "a") as f:
    f.write("[paths]\ndatabase = %s\n[models]\nsegmentation = %s\nef = %s\n[nn]\nthreads = 2\n"
            "[report]\noverlay_video = yes\n" % (db, paths["seg"], paths["ef"]))
# A second [paths] section is legal INI; the keys simply add up.

r = site.run("process", "--json", *files, timeout=600)
lines = [json.loads(l) for l in r.stdout.decode().splitlines() if l.strip()]
out = [x for x in lines if x["kind"] == "clip"]
studies = {x["pseudonym"]: x for x in lines if x["kind"] == "study"}
rep.check(r.returncode == 0, "process exit %d: %s" % (r.returncode, r.stderr.decode(errors="replace")))
rep.check(len(out) == len(files), "process printed %d clips for %d files" % (len(out), len(files)))
rep.check(set(studies) == set(x["pseudonym"] for x in out), "one study result per study touched")

rep.check(any(res["beats"] > 0 for res in out), "no clip had a beat: beat storage untested (%s)"
          % [(res["beats"], res["flags_text"]) for res in out])
con = sqlite3.connect(db)
for res, m in zip(out, good):
    p = res["pseudonym"]
    row = con.execute("SELECT c.id, c.status, c.video_frames, c.ef_mean, c.verdict, c.video_file "
                      "FROM clips c JOIN studies s ON s.id = c.study_id WHERE s.pseudonym=?",
                      (p,)).fetchall()
    if not rep.check(len(row) == 1, "%s: %d clip rows" % (p, len(row))):
        continue
    cid, status, vframes, ef_mean, verdict, vfile = row[0]
    rep.check(status == "done" and cid == res["clip_id"], "%s: status %s" % (p, status))
    rep.check(verdict == res["verdict"] and verdict in ("usable", "unusable"),
              "%s: verdict %s, printed %s" % (p, verdict, res["verdict"]))
    nf = con.execute("SELECT count(*) FROM frames WHERE clip_id=?", (cid,)).fetchone()[0]
    nb = con.execute("SELECT count(*) FROM beats WHERE clip_id=?", (cid,)).fetchone()[0]
    rep.check(nf == m["frames"] == res["frames"] == vframes, "%s: frames db %d, video %s, file %d" % (p, nf, vframes, m["frames"]))
    rep.check(nb == res["beats"], "%s: %d beats stored, %d reported" % (p, nb, res["beats"]))
    if nb:
        rep.check(abs(ef_mean - res["ef_mean"]) < 1e-3, "%s: EF stored %s vs printed %s" % (p, ef_mean, res["ef_mean"]))
        efs = [e for (e,) in con.execute("SELECT ef FROM beats WHERE clip_id=?", (cid,))]
        rep.check(abs(np.mean(efs) - ef_mean) < 1e-6, "%s: EF mean is not the mean of beat EFs" % p)
    st = studies.get(p, {})
    srow = con.execute("SELECT result_version, clips_total, clips_usable, ef_mean FROM studies "
                       "WHERE pseudonym=?", (p,)).fetchone()
    rep.check(srow[0] == st.get("version") == 1 and srow[1] == 1 and
              srow[2] == (1 if verdict == "usable" and nb else 0),
              "%s: study result %s, printed %s" % (p, srow, st))
    rep.check(os.path.basename(res["video"]) == vfile == "%s-%s.avi" % (p, vfile[17:33]),
              "%s: the clip's AVI is <pseudonym>-<key>.avi: %s" % (p, res["video"]))
    rep.check(os.path.basename(res["overlay_video"]) == vfile[:-4] + ".overlay.avi",
              "%s: overlay named after the clip: %s" % (p, res["overlay_video"]))
    for key in ("video", "overlay_video"):
        rep.check(res[key] and os.path.exists(res[key]), "%s: %s missing" % (p, key))
    for key in ("report_pdf", "report_png"):
        rep.check(st.get(key) and os.path.basename(st[key]).startswith(p) and os.path.exists(st[key]),
                  "%s: %s missing or not named by pseudonym: %s" % (p, key, st.get(key)))
    text = subprocess.run(["pdftotext", st["report_pdf"], "-"], capture_output=True, text=True).stdout
    rep.check(p in text, "%s: pseudonym not in the report" % p)
    rep.check("Instances of the study" in text and "1 in all" in text,
              "%s: the report has no clip table" % p)
    if st.get("ef_mean") is not None:
        rep.check(("%.1f" % st["ef_mean"]) in text, "%s: EF %.1f not in the report" % (p, st["ef_mean"]))
    blobs = [open(k, "rb").read() for k in (st["report_pdf"], st["report_png"], res["overlay_video"])] + \
        [text.encode(), r.stdout, r.stderr]
    for s in m["phi_strings"]:
        rep.check(not any(s.encode() in b for b in blobs), "%s: PHI %r in an output" % (p, s))

# Re-processing replaces, never duplicates; the study gets a new result version.
count = "SELECT (SELECT count(*) FROM clips), (SELECT count(*) FROM frames), (SELECT count(*) FROM studies)"
before = con.execute(count).fetchone()
r2 = site.run("--set", "analysis.clip_disagreement_points=3", "process", files[0], timeout=600)
after = con.execute(count).fetchone()
rep.check(r2.returncode == 0 and before == after, "re-processing changed counts %s -> %s" % (before, after))
rep.check(con.execute("SELECT result_version, disagreement_points FROM studies WHERE pseudonym=?",
                      (out[0]["pseudonym"],)).fetchone() == (2, 3.0),
          "re-processing: result version 2, made with [analysis] clip_disagreement_points = 3")

# A bad file: exit 1, one line, database untouched.
bad = os.path.join(enlib.TESTDATA, "bad", "not_dicom.txt")
r3 = site.run("process", bad)
lines = [l for l in r3.stderr.decode().splitlines() if l.strip()]
rep.check(r3.returncode == 1 and len(lines) == 1, "bad file: exit %d, %d lines" % (r3.returncode, len(lines)))
rep.check(con.execute(count).fetchone() == after, "bad file added a clip")

# list / show / export / report.
r = site.run("list", "--json")
rows = json.loads(r.stdout)
rep.check(r.returncode == 0 and len(rows) == len(files), "list --json: %d rows" % len(rows))
rep.check(all(x["clips"] == 1 and x["version"] >= 1 for x in rows), "list --json: %s" % rows)
r = site.run("list")
head = r.stdout.decode().splitlines()
rep.check(len(head) == 1 + len(files) and "CLIPS" in head[0], "list: %s" % head[:2])
rep.check(all(re.search(r"  \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z  ", l) for l in head[1:]),
          "list: RECEIVED shows whole times: %s" % head[1:2])
rep.check(site.run("list", "--status", "failed", "--json").stdout.strip() == b"[]", "list --status failed not empty")
rep.check(site.run("list", "--status", "nonsense").returncode == 2, "bad --status not a usage error")
p0 = out[0]["pseudonym"]
r = site.run("show", p0)
rep.check(r.returncode == 0 and p0.encode() in r.stdout and b"VERDICT" in r.stdout,
          "show: %s" % r.stderr.decode())
rep.check(site.run("show", "0000000000000000").returncode == 1, "show of an unknown study not exit 1")
r = site.run("export", "--format", "size", p0)
size_rows = list(csv.reader(io.StringIO(r.stdout.decode())))
rep.check(size_rows and size_rows[0] == ["Filename", "Frame", "Size", "HumanLarge", "HumanSmall", "ComputerSmall"],
          "size.csv header %s" % (size_rows[:1],))
rep.check(len(size_rows) - 1 == out[0]["frames"], "size.csv rows %d" % (len(size_rows) - 1))
rep.check(all(row[0] == os.path.basename(out[0]["video"]) for row in size_rows[1:]),
          "size.csv Filename is not the clip's AVI")
r = site.run("export", "--format", "clips", p0)
clip_rows = [l for l in r.stdout.decode().splitlines() if l]
rep.check(len(clip_rows) == out[0]["beats"], "clip rows %d vs beats %d" % (len(clip_rows), out[0]["beats"]))
r = site.run("export", "--format", "json")
rep.check(r.returncode == 0 and json.loads(r.stdout) is not None, "export json does not parse")
os.unlink(studies[p0]["report_pdf"])
r = site.run("report", p0)
rep.check(r.returncode == 0 and os.path.exists(studies[p0]["report_pdf"]),
          "report did not re-render: %s" % r.stderr.decode())

# status: the database's view (no daemon running; spool folders absent).
r = site.run("status", "--json")
st = json.loads(r.stdout) if r.returncode == 0 else {}
rep.check(st.get("studies", {}).get("done") == len(files) and st["studies"].get("failed") == 0,
          "status --json: %s %s" % (st, r.stderr))
rep.check(st.get("spool", {}).get("inbox") == -1, "status: absent inbox not reported as -1")

spool = {d: os.path.join(site.dir, d) for d in ("inbox", "work", "failed")}
for d in spool.values():
    os.makedirs(d)
for name in ("inbox/a.dcm", "inbox/b.dcm", "inbox/.hidden", "work/j1.dcm", "work/j1.attempts",
             "failed/j2.dcm", "failed/j2.reason"):
    open(os.path.join(site.dir, name), "w").close()
r = site.run("--set", "daemon.inbox=" + spool["inbox"], "--set", "daemon.work=" + spool["work"],
             "--set", "daemon.failed=" + spool["failed"], "status", "--json")
st = json.loads(r.stdout) if r.returncode == 0 else {}
rep.check(st.get("spool") == {"inbox": 2, "work": 1, "failed": 1}, "status spool counts: %s" % st.get("spool"))

# README's convert-weights works from the build tree, before installation.
r = site.run("convert-weights", "--help")
rep.check(r.returncode == 0 and b"--arch" in r.stdout, "convert-weights --help: %s" % r.stderr[:200])

# Missing models: a setup error (exit 3) that names the setting.
r = site.run("--set", "models.ef=", "process", files[0])
rep.check(r.returncode == 3 and b"[models] ef" in r.stderr, "missing model: exit %d %s" % (r.returncode, r.stderr))

# The models load while the first file is converted: a model that fails
# to load is still the setup's error, said once, and nothing of the files
# is stored (no clip, no event, no study, no model row).
bad = os.path.join(site.dir, "not-weights.safetensors")
with open(bad, "wb") as f:
    f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{}" + b"\x00" * 64)
counts = lambda: [con.execute("SELECT count(*) FROM %s" % t).fetchone()[0]
                  for t in ("clips", "events", "studies", "models")]
before = counts()
r = site.run("--set", "models.segmentation=" + bad, "process", "--json", files[0], files[1])
rep.check(r.returncode == 3 and r.stderr.count(b"[models] segmentation") == 1 and not r.stdout.strip(),
          "unloadable model: exit %d, stdout %r, stderr %s" % (r.returncode, r.stdout[:200], r.stderr))
rep.check(counts() == before, "unloadable model: stored %s, was %s" % (counts(), before))
# The two load side by side; with both broken, the segmentation model's
# error is the one said, as when they loaded one after the other.
r = site.run("--set", "models.segmentation=" + bad, "--set", "models.ef=" + bad, "process", files[0])
rep.check(r.returncode == 3 and b"[models] segmentation" in r.stderr and b"[models] ef" not in r.stderr,
          "both models unloadable: exit %d %s" % (r.returncode, r.stderr))
con.close()
site.close()
rep.finish()
