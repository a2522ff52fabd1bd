"""The whole pipeline by hand: `echonetctl process`, then list, show,
export and report, on generated studies with small random-weight models.

Random weights say nothing about accuracy (issue 5 brings trained models);
this proves the plumbing: every processed study is stored whole (one study
row, beats and one frame row per video frame, consistent with what process
printed), re-processing replaces instead of duplicating, exports have
upstream's shapes, the report names the study and its EF and holds no PHI,
a bad file fails with one line and does not disturb the database, and exit
codes are those documented."""
import csv
import io
import json
import os
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
out = [json.loads(l) for l in r.stdout.decode().splitlines() if l.strip()]
rep.check(r.returncode == 0, "process exit %d: %s" % (r.returncode, r.stderr.decode(errors="replace")))
rep.check(len(out) == len(files), "process printed %d results for %d files" % (len(out), len(files)))

rep.check(any(res["beats"] > 0 for res in out), "no study had a beat: beat storage untested (%s)"
          % [(res["beats"], res["flags_text"]) for res in out])
con = sqlite3.connect(db)
for res, m in zip(out, good):
    p = res["pseudonym"]
    row = con.execute("SELECT id, status, video_frames, ef_mean FROM studies WHERE pseudonym=?", (p,)).fetchall()
    if not rep.check(len(row) == 1, "%s: %d study rows" % (p, len(row))):
        continue
    sid, status, vframes, ef_mean = row[0]
    rep.check(status == "done", "%s: status %s" % (p, status))
    nf = con.execute("SELECT count(*) FROM frames WHERE study_id=?", (sid,)).fetchone()[0]
    nb = con.execute("SELECT count(*) FROM beats WHERE study_id=?", (sid,)).fetchone()[0]
    rep.check(nf == m["frames"] == res["frames"] == vframes, "%s: frames db %d, video %s, file %d" % (p, nf, vframes, m["frames"]))
    rep.check(nb == res["beats"], "%s: %d beats stored, %d reported" % (p, nb, res["beats"]))
    if nb:
        rep.check(abs(ef_mean - res["ef_mean"]) < 1e-3, "%s: EF stored %s vs printed %s" % (p, ef_mean, res["ef_mean"]))
        efs = [e for (e,) in con.execute("SELECT ef FROM beats WHERE study_id=?", (sid,))]
        rep.check(abs(np.mean(efs) - ef_mean) < 1e-6, "%s: EF mean is not the mean of beat EFs" % p)
    for key in ("report_pdf", "report_png", "overlay_video", "video"):
        rep.check(res[key] and os.path.basename(res[key]).startswith(p), "%s: %s not named by pseudonym: %s" % (p, key, res[key]))
        rep.check(res[key] and os.path.exists(res[key]), "%s: %s missing" % (p, key))
    text = subprocess.run(["pdftotext", res["report_pdf"], "-"], capture_output=True, text=True).stdout
    rep.check(p in text, "%s: pseudonym not in the report" % p)
    if nb:
        rep.check(("%.1f" % res["ef_mean"]) in text, "%s: EF %.1f not in the report" % (p, res["ef_mean"]))
    blobs = [open(res[k], "rb").read() for k in ("report_pdf", "report_png", "overlay_video")] + [text.encode(), r.stdout, r.stderr]
    for s in m["phi_strings"]:
        rep.check(not any(s.encode() in b for b in blobs), "%s: PHI %r in an output" % (p, s))

# Re-processing replaces, never duplicates.
before = con.execute("SELECT count(*) FROM studies").fetchone()[0], con.execute("SELECT count(*) FROM frames").fetchone()[0]
r2 = site.run("process", files[0], timeout=600)
after = con.execute("SELECT count(*) FROM studies").fetchone()[0], con.execute("SELECT count(*) FROM frames").fetchone()[0]
rep.check(r2.returncode == 0 and before == after, "re-processing changed counts %s -> %s" % (before, after))

# A bad file: exit 1, one line, database untouched.
bad = os.path.join(enlib.TESTDATA, "bad", "not_dicom.txt")
r3 = site.run("process", bad)
lines = [l for l in r3.stderr.decode().splitlines() if l.strip()]
rep.check(r3.returncode == 1 and len(lines) == 1, "bad file: exit %d, %d lines" % (r3.returncode, len(lines)))
rep.check(con.execute("SELECT count(*) FROM studies").fetchone()[0] == after[0], "bad file added a study")

# list / show / export / report.
r = site.run("list", "--json")
rows = json.loads(r.stdout)
rep.check(r.returncode == 0 and len(rows) == len(files), "list --json: %d rows" % len(rows))
rep.check(site.run("list", "--status", "failed", "--json").stdout.strip() == b"[]", "list --status failed not empty")
rep.check(site.run("list", "--status", "nonsense").returncode == 2, "bad --status not a usage error")
p0 = out[0]["pseudonym"]
r = site.run("show", p0)
rep.check(r.returncode == 0 and p0.encode() in r.stdout, "show: %s" % r.stderr.decode())
rep.check(site.run("show", "0000000000000000").returncode == 1, "show of an unknown study not exit 1")
r = site.run("export", "--format", "size", p0)
size_rows = list(csv.reader(io.StringIO(r.stdout.decode())))
rep.check(size_rows and size_rows[0] == ["Filename", "Frame", "Size", "HumanLarge", "HumanSmall", "ComputerSmall"],
          "size.csv header %s" % (size_rows[:1],))
rep.check(len(size_rows) - 1 == out[0]["frames"], "size.csv rows %d" % (len(size_rows) - 1))
rep.check(all(row[0] == p0 + ".avi" for row in size_rows[1:]), "size.csv Filename not <pseudonym>.avi")
r = site.run("export", "--format", "clips", p0)
clip_rows = [l for l in r.stdout.decode().splitlines() if l]
rep.check(len(clip_rows) == out[0]["beats"], "clip rows %d vs beats %d" % (len(clip_rows), out[0]["beats"]))
r = site.run("export", "--format", "json")
rep.check(r.returncode == 0 and json.loads(r.stdout) is not None, "export json does not parse")
os.unlink(out[0]["report_pdf"])
r = site.run("report", p0)
rep.check(r.returncode == 0 and os.path.exists(out[0]["report_pdf"]), "report did not re-render: %s" % r.stderr.decode())

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
con.close()
site.close()
rep.finish()
