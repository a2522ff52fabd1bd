"""echonetd when only the report fails: the result is committed, so the
study is done and archived, a warning says what failed, and the journal's
"study done" line carries the real EF and beat count, the ones stored in
the database (not "no beat found", EF nan).

A simulated echo (tools/echosim.py) and the shipped phantom-trained
models, so that there are beats to count.  The report step of a study's
process is made to fail by a folder where its output file must go: a
first run learns that path; the database is then removed (a fresh
install, the same site secret, so the same names) and the file delivered
again."""
import os
import re
import shutil
import subprocess
import sys

import daemonlib as dl
import enlib

rep = enlib.Report("daemon_report")
san = dl.sanitized()
slow = 4 if san else 1
top = enlib.TOP_SRCDIR
models = {"seg": os.path.join(top, "models", "phantom-seg.safetensors"),
          "ef": os.path.join(top, "models", "phantom-ef.safetensors")}
sp = dl.Spool(models=models, study_timeout_s=300 * slow,
              extra_conf="[report]\noverlay_video = yes\n")
sim = os.path.join(sp.dir, "sim")
r = subprocess.run([sys.executable, os.path.join(top, "tools", "echosim.py"), "dicoms", "--out", sim,
                    "--count", "1", "--seed", "71000", "--max-seconds", "2" if san else "3"],
                   capture_output=True, text=True)
rep.check(r.returncode == 0, "echosim failed: %s" % r.stderr[-500:])
study = os.path.join(sim, [n for n in os.listdir(sim) if n.endswith(".dcm")][0])


def outputs():
    return set(os.listdir(sp.site.out))


# First run: where does the study's report step write?
sp.start()
sp.deliver(study)
rep.check(sp.wait_settled(1, 300 * slow), "first run not settled: %s" % (sp.counts(),))
rows = sp.clips()
rep.check(len(rows) == 1 and rows[0]["status"] == "done" and rows[0]["beats"] > 0,
          "first run: %s (the phantom models should find beats)" % rows)
overlay = [n for n in outputs() if n.endswith(".overlay.avi")]
rep.check(len(overlay) == 1, "no overlay video written: %s" % sorted(outputs()))
rep.check(sp.stop() == 0, "stop")

# A fresh database, the same names: a folder where the overlay must go.
for ext in ("", "-wal", "-shm"):
    if os.path.exists(sp.db + ext):
        os.unlink(sp.db + ext)
for n in overlay:
    os.unlink(os.path.join(sp.site.out, n))
    os.mkdir(os.path.join(sp.site.out, n))
sp.start()
sp.deliver(study)
rep.check(sp.wait_settled(2, 300 * slow), "second run not settled: %s" % (sp.counts(),))
c = sp.counts()
rep.check(c[2] == 2 and c[3] == 0, "a report-only failure quarantined the file: %s" % (c,))
rows = sp.clips()
rep.check(len(rows) == 1 and rows[0]["status"] == "done", "second run's row: %s" % rows)
log = open(sp.logfile, "rb").read().decode()
rep.check("(the result is stored)" in log and "overlay" in log,
          "the report's failure is not logged as a warning")
done = re.findall(r"study done: EF ([0-9.]+) % over (\d+) beats?", log)
rep.check("no beat found" not in log, "the done line says no beat found")
rep.check(len(done) == 1, "done lines: %s" % done)
if done and rows:
    ef, beats = float(done[0][0]), int(done[0][1])
    print("logged EF %.1f %% over %d beats; stored EF %.2f %% over %d beats"
          % (ef, beats, rows[0]["ef_mean"], rows[0]["beats"]))
    rep.check(beats == rows[0]["beats"] and beats > 0, "logged %d beats, stored %d"
              % (beats, rows[0]["beats"]))
    rep.check(abs(ef - rows[0]["ef_mean"]) <= 0.051, "logged EF %.1f, stored %.3f"
              % (ef, rows[0]["ef_mean"]))
rep.check(sp.stop() == 0, "stop")
sp.close()
rep.finish()
