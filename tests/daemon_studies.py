"""A whole study through the daemon's inbox, with the daemon killed in
between (issue 11, "When a study is done").

tools/echosim.py writes one study: apical four-chamber clips of one heart
and instances that must not count, all of one StudyInstanceUID.  They are
delivered in random order in two batches with study_quiet_s = 2; the
daemon is SIGKILLed while it processes clips, and once more while it
computes the study's result, and started again each time.  One A4C file is
delivered twice.  Then:

  - one study row; every instance present once as a clip with its verdict;
    the duplicate skipped, not a second clip;
  - nothing replaced: the first batch's clips and beats are as they were;
  - the study's result is computed by the daemon on its own once the study
    is quiet, not stale any more, and its EF is the mean of the usable
    clips' beats (from the database's clip and beat rows), with their
    counts;
  - a clip arriving after the result makes the next version, recorded in
    the study's events, although the first process computing it crashes
    (retried after a back-off); versions are 1..N in order, none twice;
  - the journal has one "study result" line per version it logged, with
    no identifying value.
Under EN_SANITIZE=1 (ASan) the study is smaller.
"""
import os
import random
import shutil
import signal
import sys
import time

import daemonlib
import enlib

TOP = os.environ.get("EN_TOP_SRCDIR", os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(TOP, "tools"))
import echosim  # noqa: E402
import pydicom  # noqa: E402

rep = enlib.Report("daemon_studies")
SEED = 424242
SAN = daemonlib.sanitized()
OTHERS = ("still", "nonecho") if SAN else ("a2c", "still", "doppler", "nonecho")
EXPECT_REASON = {"still": "single_frame", "doppler": "doppler", "nosector": "no_sector",
                 "nonecho": "not_ultrasound"}
T_START = time.time()

models = {"seg": os.path.join(TOP, "models", "phantom-seg.safetensors"),
          "ef": os.path.join(TOP, "models", "phantom-ef.safetensors")}
sp = daemonlib.Spool(models=models, study_quiet_s=2, concurrency=2)
data = os.path.join(sp.dir, "study")
os.makedirs(data)
truth = echosim.write_study(data, SEED, n_a4c=3, others=OTHERS, max_seconds=2.6, with_codes=False,
                            work=os.path.join(sp.dir, "simwork"))
kinds = {i["file"]: i["kind"] for i in truth["instances"]}
files = sorted(kinds)
random.Random(SEED).shuffle(files)
a4c = [f for f in files if kinds[f] == "a4c"]
half = len(files) // 2
first, second = files[:half], files[half:]
print("simulated %d instances in %.0f s" % (len(files), time.time() - T_START))
ids = pydicom.dcmread(os.path.join(data, a4c[0]))
secrets = [str(ids.PatientName), str(ids.PatientID), str(ids.StudyInstanceUID)]


def wait(cond, timeout, what):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if cond():
            return True
        time.sleep(0.1)
    rep.check(False, "timed out waiting for %s" % what)
    return False


def archived():
    return sp.counts()[2]


def study_row():
    rows = sp.sql("SELECT id, pseudonym, result_version, result_stale, clips_total, "
                  "clips_usable, beats, ef_mean FROM studies")
    return rows[0] if len(rows) == 1 else None


def kill_and_restart(why):
    sp.kill()
    print("SIGKILL %s (%.0f s)" % (why, time.time() - T_START))
    sp.start()


# Batch 1, the daemon killed once a clip of it is done.
sp.start()
for f in first:
    sp.deliver(os.path.join(data, f))
wait(lambda: archived() >= 1, 300, "a first clip")
kill_and_restart("after the first clip")
rep.check(sp.wait_settled(len(first), 300), "batch 1 did not settle: %s" % (sp.counts(),))
wait(lambda: study_row() and study_row()[2] >= 1 and study_row()[3] == 0, 60,
     "the first result")
snapshot = {r[0]: r for r in sp.sql("SELECT * FROM clips")}
beats1 = sp.sql("SELECT * FROM beats ORDER BY 1, 2")
v1 = study_row()[2]

# Batch 2 and a duplicate, the daemon killed while clips run and again
# while it computes the study's result.
for f in second:
    sp.deliver(os.path.join(data, f))
sp.deliver(os.path.join(data, a4c[0]), name="again.dcm")
n_files = len(files) + 1
wait(lambda: archived() >= len(first) + 1, 300, "a clip of batch 2")
kill_and_restart("while batch 2 runs")
rep.check(sp.wait_settled(n_files, 300), "batch 2 did not settle: %s" % (sp.counts(),))
if wait(lambda: b"computing the study's result" in open(sp.logfile, "rb").read(), 60,
        "the result's computation to start"):
    kill_and_restart("while the study's result is computed")
wait(lambda: study_row() and study_row()[3] == 0 and study_row()[2] > v1, 60,
     "the second result")
v2 = study_row()[2]

# One study, every instance once, the duplicate skipped.
con_rows = sp.sql("SELECT id, status, verdict, verdict_codes, verdict_text FROM clips")
rep.check(len(sp.sql("SELECT id FROM studies")) == 1, "one study row")
rep.check(len(con_rows) == len(files), "%d clips for %d instances" % (len(con_rows), len(files)))
rep.check(all(r[1] == "done" and r[2] for r in con_rows),
          "a clip unfinished or without a verdict: %s" % [r[:3] for r in con_rows])
rep.check(b"duplicate: this instance was already processed" in sp.log(),
          "the re-delivered instance was not skipped as a duplicate")
rep.check(sp.counts()[3] == 0, "files failed: %s" % (sp.reasons(),))
verdicts = sorted(r[2] for r in con_rows)
n_not = sum(1 for r in con_rows if r[2] == "not_analysed")
rep.check(n_not == sum(1 for f in files if kinds[f] in EXPECT_REASON),
          "not analysed: %d, verdicts %s" % (n_not, verdicts))

# Nothing replaced: batch 1's clips and beats as they were.
after = {r[0]: r for r in sp.sql("SELECT * FROM clips")}
rep.check(all(after.get(k) == v for k, v in snapshot.items()), "a batch-1 clip changed")
rep.check(sp.sql("SELECT * FROM beats WHERE clip_id IN (%s) ORDER BY 1, 2"
                 % ",".join(str(k) for k in snapshot)) == beats1, "batch 1's beats changed")


def check_result(label):
    sid, pseudonym, version, stale, total, usable, nbeats, ef = study_row()
    efs = [r[0] for r in sp.sql("SELECT b.ef FROM beats b JOIN clips c ON c.id = b.clip_id "
                                "WHERE c.study_id = ? AND c.verdict = 'usable'", sid)]
    nuse = sp.sql("SELECT count(*) FROM clips WHERE study_id = ? AND verdict = 'usable'", sid)[0][0]
    nall = sp.sql("SELECT count(*) FROM clips WHERE study_id = ?", sid)[0][0]
    rep.check(stale == 0 and total == nall and usable == nuse and nbeats == len(efs),
              "%s: v%d stale %d, %d/%d clips (db %d/%d), %d beats (db %d)"
              % (label, version, stale, usable, total, nuse, nall, nbeats, len(efs)))
    if not efs:
        print("\n".join(l for l in sp.log().decode(errors="replace").splitlines()
                        if "verdict" in l or "study done" in l or "result" in l))
    rep.check(efs and ef is not None and abs(ef - sum(efs) / len(efs)) < 1e-9,
              "%s: study EF %s, mean of the usable clips' beats %s" % (label, ef, efs))
    print("%s: v%d EF %.1f over %d beats of %d/%d clips (truth %.1f)"
          % (label, version, ef or float("nan"), nbeats, usable, total, truth["ef"]))
    return sid, pseudonym, version


sid, pseudonym, _ = check_result("after both batches")

# A clip arriving after the result: the next version.  Its first
# computation crashes (the test-only fault hook): retried after a back-off,
# one version made.
rep.check(sp.stop() == 0, "SIGTERM did not end the daemon with 0")
marker = os.path.join(sp.dir, "finish-crashed")
sp.start(env={"EN_DAEMON_FAULT": "crash-finish:" + marker})
late = os.path.join(sp.dir, "late.dcm")
daemonlib.with_new_uids(os.path.join(data, a4c[-1]), late, SEED + 1, keep_study=True)
sp.deliver(late)
wait(lambda: study_row()[2] == v2 + 1 and study_row()[3] == 0, 200, "the late clip's version")
rep.check(os.path.exists(marker) and b"computing the study's result failed (its process died "
          b"of signal" in open(sp.logfile, "rb").read(),
          "the fault hook's crash of the result's process was not seen and retried")
_, _, v3 = check_result("after the late clip")
rep.check(v3 == v2 + 1, "late clip: version %d after %d" % (v3, v2))
vs = [r[0] for r in sp.sql("SELECT result_version FROM events WHERE state = 'result' "
                           "ORDER BY id")]
rep.check(vs == list(range(1, v3 + 1)), "result versions in the events: %s" % vs)
rep.check(len(sp.sql("SELECT id FROM studies")) == 1, "one study row after the late clip")

# Stopped cleanly, nothing due is left, and a restart computes nothing new.
rep.check(sp.stop() == 0, "SIGTERM did not end the daemon with 0")
sp.start()
time.sleep(3)
rep.check(study_row()[2] == v3, "a restart made another version: %d" % study_row()[2])
rep.check(sp.stop() == 0, "second stop")

# The journal: a "study result" line per logged version, nothing identifying.
log = sp.log()
lines = [l for l in log.decode(errors="replace").splitlines() if "study result v" in l
         and "unchanged" not in l]
logged = sorted(set(int(l.split("study result v")[1].split(":")[0]) for l in lines))
rep.check(len(lines) == len(logged) and v3 in logged and set(logged) <= set(vs),
          "result lines %s for versions %s" % (logged, vs))
rep.check(pseudonym.encode() in log, "the study's pseudonym is not in the log")
for s in secrets:
    rep.check(s.encode() not in log, "an identifying value reached the log")
san_lines = [l for l in log.decode(errors="replace").splitlines()
             if "Sanitizer" in l or "runtime error" in l]
rep.check(not san_lines, "sanitizer reports in the log: %s" % san_lines[:6])
elapsed = time.time() - T_START
print("%d instances, versions %s, %.0f s" % (len(files), vs, elapsed))
sp.close()
sys.exit(rep.finish())
