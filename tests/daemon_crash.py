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
"""
import os
import random
import signal
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
    rows = sp.sql("SELECT id, status, video_frames FROM clips")
    st = [r[1] for r in rows]
    rep.check(len(rows) == expect_done and all(s == "done" for s in st),
              "%s: %d studies (%d expected), statuses %s" % (label, len(rows), expect_done, sorted(set(st))))
    half = sp.sql("SELECT c.id FROM clips c WHERE status='done' AND video_frames <> "
                  "(SELECT count(*) FROM frames f WHERE f.clip_id = c.id)")
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
leftovers = [n for n in os.listdir(sp.work)]
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

blob = sp.log()
for s in small["phi_strings"]:
    rep.check(s.encode() not in blob, "PHI %r in the log" % s)
sp.close()
rep.finish()
