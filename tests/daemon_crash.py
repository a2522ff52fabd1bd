"""echonetd under abuse, as real processes on real files:

1. SIGTERM while studies run: exit 0; with stop_grace_s = 0 the running
   studies are killed and stay in work/; the next start resumes them.
2. SIGKILL at random moments, several times, restarting each time: every
   input ends in the archive or the failed folder exactly once, the
   database holds one done study per input and no half result (every done
   study has all its frames; nothing left queued or processing).
3. A flood of files with distinct UIDs, dropped at once, with a small
   queue_max: queue backpressure is logged, all are processed, and the
   daemon's memory stays bounded.  200 files (40 under EN_SANITIZE).
4. Four SIGKILLs of the daemon in a row while one study runs, with
   max_attempts = 2: the study is still done (daemon kills are not its
   attempts).
5. Temporaries left by killed processes are removed at start-up.
6. Every quarantine marks the study's row failed, also after a restart.
"""
import os
import random
import signal
import subprocess
import time

import daemonlib as dl
import enlib

rep = enlib.Report("daemon_crash")
san = dl.sanitized()
slow = 4 if san else 1
manifest = enlib.load_manifest()
small = sorted([m for m in manifest if m["expect"] == "ok" and 12 <= m["frames"] <= 16],
               key=lambda m: (m["frames"], m["rows"] * m["cols"]))[0]
src = os.path.join(enlib.TESTDATA, small["file"])
rng = random.Random(6)

sp = dl.Spool(stop_grace_s=0, max_attempts=10)
models = sp.models
gen = os.path.join(sp.dir, "gen")
os.makedirs(gen)


def make(n, tag):
    out = []
    for i in range(n):
        p = os.path.join(gen, "%s%04d.dcm" % (tag, i))
        dl.with_new_uids(src, p, "%s-%d" % (tag, i))
        out.append(p)
    return out


def check_db(expect_done, label):
    rows = sp.clips()
    st = [r["status"] for r in rows]
    rep.check(len(rows) == expect_done and all(s == "done" for s in st),
              "%s: %d studies (%d expected), statuses %s" % (label, len(rows), expect_done, sorted(set(st))))
    half = [r["id"] for r in rows if r["status"] == "done" and r["frames"] != (r["video_frames"] or 0)]
    rep.check(not half, "%s: half results %s" % (label, half))


# 1. SIGTERM while busy.
files = make(6, "t")
sp.start()
for f in files:
    sp.deliver(f)
rep.check(sp.wait_log("attempt 1 started", 30 * slow), "no study started")
rc = sp.stop(signal.SIGTERM)
rep.check(rc == 0, "SIGTERM while busy: exit %s" % rc)
c = sp.counts()
rep.check(c[1] >= 1, "SIGTERM: nothing left in work/ to resume: %s" % (c,))
rep.check(b"resumes at the next start" in sp.log(), "killed study not reported as resumable")
sp.start()
rep.check(sp.wait_settled(6, 60 * slow), "after restart: %s" % (sp.counts(),))
c = sp.counts()
rep.check(c[2] == 6 and c[3] == 0, "SIGTERM case: archive/failed %s" % (c,))
rep.check(b"resuming work left by an earlier run" in sp.log(), "resume not logged")
check_db(6, "sigterm")
rep.check(sp.stop() == 0, "stop")

# 2. SIGKILL at random points.
files = make(10 if not san else 6, "k")
for f in files:
    sp.deliver(f)
kills = 5 if not san else 3
for i in range(kills):
    sp.start()
    time.sleep(rng.uniform(0.05, 1.0) * slow)
    sp.proc.kill()
    sp.proc.wait()
    time.sleep(0.1)
sp.start()
total = 6 + len(files)
rep.check(sp.wait_settled(total, 120 * slow), "after kills: %s" % (sp.counts(),))
c = sp.counts()
rep.check(c[2] + c[3] == total and c[1] == 0, "kills: every input once: %s" % (c,))
rep.check(c[3] == 0, "kills: %d files failed" % c[3])
check_db(total, "sigkill")
leftovers = [n for n in os.listdir(sp.work) if n != ".echonetd.lock"]
rep.check(not leftovers, "work/ not empty: %s" % leftovers)
rep.check(sp.stop() == 0, "stop after kills")

# 3. Flood with a small queue bound.
n = 200 if not san else 40
sp.write_conf(queue_max=20, settle_ms=200, rescan_ms=300, stop_grace_s=0, max_attempts=10)
files = make(n, "f")
for f in files:
    os.rename(f, os.path.join(sp.inbox, os.path.basename(f)))
sp.start()
t0 = time.time()
peak = 0
while time.time() - t0 < 600 * slow:
    peak = max(peak, sp.rss_kb())
    c = sp.counts()
    if c[0] == 0 and c[1] == 0 and c[2] + c[3] == total + n:
        break
    time.sleep(0.25)
dt = time.time() - t0
c = sp.counts()
rep.check(c[2] == total + n and c[3] == 0, "flood: %s after %.0f s" % (c, dt))
rep.check(b"backpressure: 20 files claimed" in sp.log(), "queue backpressure not logged")
rep.check(peak < (400000 if san else 60000), "daemon RSS peaked at %d kB" % peak)
check_db(total + n, "flood")
print("flood: %d files in %.1f s (%.2f s/file), daemon peak RSS %d kB" % (n, dt, dt / n, peak))
rep.check(sp.stop() == 0, "stop after flood")

# 4. Crashes of the daemon are not the study's attempts.  With
# max_attempts = 2, the daemon is SIGKILLed four times in a row while the
# same study's process runs (which dies with it): the study still runs a
# fifth time and is done, never quarantined.
sp.write_conf(stop_grace_s=0, max_attempts=2)
total += n
f4 = make(1, "a")[0]
sp.deliver(f4)
hits = 0
for i in range(4):
    sp.start()
    if sp.wait_log("attempt 1 started", 30 * slow):
        time.sleep(rng.uniform(0.0, 0.1))
        hits += sp.proc.poll() is None and b"study done" not in open(sp.logfile, "rb").read()
    sp.proc.kill()
    sp.proc.wait()
print("killed the daemon %d times while the study ran" % hits)
rep.check(hits >= 3, "only %d kills landed while the study ran" % hits)
sp.start()
total += 1
rep.check(sp.wait_settled(total, 60 * slow), "after four kills: %s" % (sp.counts(),))
rep.check(sp.counts()[3] == 0, "quarantined after daemon kills: %s" % (sp.counts(),))
rep.check(b"attempt 2 started" not in sp.log() and b"gave up" not in sp.log(),
          "a daemon kill was counted against the study")
rep.check(sp.stop() == 0, "stop after kill loop")

# 5. Temporaries a killed process leaves: at start-up those of processes
# that are gone are removed (output folder, work/, failed/); a live one
# (ours) is kept.
dead = subprocess.Popen(["true"])
dead.wait()
pid = dead.pid
stale = [os.path.join(sp.site.out, "0123abcd.avi.tmp.%d.0" % pid),
         os.path.join(sp.site.out, "0123abcd.pdf.tmp.%d.7" % pid),
         os.path.join(sp.site.out, "0123abcd.png.tmp.%d.2" % pid),
         os.path.join(sp.site.out, ".incoming-%d-3.avi" % pid),
         os.path.join(sp.site.out, ".incoming-%d-4.avi.tmp.%d.5" % (pid, pid)),
         os.path.join(sp.work, "j1-0001-00000000.attempts.tmp.%d.0" % pid),
         os.path.join(sp.failed, "j1-0001-00000000.reason.tmp.%d.1" % pid)]
live = os.path.join(sp.site.out, "0123abcd.avi.tmp.%d.0" % os.getpid())
for p in stale + [live]:
    open(p, "wb").write(b"half")
sp.start()
rep.check(not [p for p in stale if os.path.exists(p)], "stale temporaries kept: %s"
          % [os.path.basename(p) for p in stale if os.path.exists(p)])
rep.check(os.path.exists(live), "a live process's temporary was removed")
rep.check(sp.wait_log("removed %d temporary files" % len(stale), 1), "clean-up not logged")
os.unlink(live)

# 6. Every quarantine marks the study's row failed, also when the study
# was known only to a daemon that died: its process crashes once the study
# has a row (attempt 1 of 2); the daemon is killed; restarted with
# max_attempts = 1 it gives up on the file at once, from the pseudonym kept
# in the sidecar.  Then the same with max_attempts = 1 straight away.
rep.check(sp.stop() == 0, "stop before the quarantine cases")
q = make(2, "q")
for i, p in enumerate(q):
    dl.with_new_uids(p, p, "q-%d" % i, comment="EN_TEST_CRASH_LATE")
sp.deliver(q[0])
sp.start(env={"EN_DAEMON_FAULT": "crash-late:EN_TEST_CRASH_LATE"})
rep.check(sp.wait_log("attempt 1 of 2 failed", 30 * slow), "late crash not counted")
sp.proc.kill()
sp.proc.wait()
sp.write_conf(stop_grace_s=0, max_attempts=1)
sp.start(env={"EN_DAEMON_FAULT": "crash-late:EN_TEST_CRASH_LATE"})
sp.deliver(q[1])
total += 2
rep.check(sp.wait_settled(total, 60 * slow), "quarantine cases: %s" % (sp.counts(),))
reasons = [r for r in sp.reasons().values() if r.get("study", "-") != "-"]
rep.check(len(reasons) == 2, "quarantined with a study: %s; log: %s"
          % (sp.reasons(), open(sp.logfile, "rb").read()[-3000:]))
rep.check(any("gave up" in r.get("message", "") for r in reasons), "no give-up after restart")
rows = {r["pseudonym"]: r["status"] for r in sp.clips()}
for r in reasons:
    rep.check(rows.get(r["study"]) == "failed", "study %s of a quarantined file is %s in the "
              "database" % (r["study"], rows.get(r["study"])))
rep.check("processing" not in rows.values() and "queued" not in rows.values(),
          "rows left unfinished: %s" % sorted(set(rows.values())))
rep.check(sp.stop() == 0, "stop after the quarantine cases")

blob = sp.log()
for s in small["phi_strings"]:
    rep.check(s.encode() not in blob, "PHI %r in the log" % s)
sp.close()
rep.finish()
