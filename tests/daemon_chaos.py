"""echonetd under chaos: 50 random SIGKILLs (20 under EN_SANITIZE), of the
daemon (restarted at once) and of the studies' processes, while a stream
of good and bad files keeps arriving, some renamed in, some written
slowly, some in folders.  Then a last clean run, after which:

- every input is archived or failed exactly once (by content), every good
  file archived, every bad one failed with a .reason;
- the database matches the spool: no row left queued or processing, one
  done row per good study, and the study of every quarantined file that
  has one is failed;
- no stray temporary is left in work/, failed/ or the output folder, and
  no attempt counter in work/;
- no patient identifier or delivered name is in any log.

max_attempts is high, so the children's kills (each counts as a crash of
its study) never quarantine a good file."""
import hashlib
import os
import random
import re
import signal
import threading
import time

import daemonlib as dl
import enlib

rep = enlib.Report("daemon_chaos")
san = dl.sanitized()
slow = 4 if san else 1
kills_wanted = 20 if san else 50
n_good, n_bad = (12, 4) if san else (30, 8)
manifest = enlib.load_manifest()
small = sorted([m for m in manifest if m["expect"] == "ok" and 12 <= m["frames"] <= 16],
               key=lambda m: (m["frames"], m["rows"] * m["cols"]))[0]
src = os.path.join(enlib.TESTDATA, small["file"])
bad_src = [os.path.join(enlib.TESTDATA, "bad", n) for n in
           ("not_dicom.txt", "trunc50_us_mf_mono2_explicit.dcm")]
rng = random.Random(50)

sp = dl.Spool(concurrency=2, settle_ms=200, rescan_ms=300, stop_grace_s=0, max_attempts=100,
              incomplete_wait_s=2, study_timeout_s=60 * slow)
gen = os.path.join(sp.dir, "gen")
os.makedirs(gen)


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


inputs = []     # (path, good)
for i in range(n_good):
    p = os.path.join(gen, "good%03d.dcm" % i)
    dl.with_new_uids(src, p, "chaos-%d" % i)
    inputs.append((p, True))
for i in range(n_bad):
    p = os.path.join(gen, "bad%03d.dcm" % i)
    data = open(bad_src[i % len(bad_src)], "rb").read()
    open(p, "wb").write(data + b"\n%d" % i if i % len(bad_src) == 0 else data[:len(data) - i])
    inputs.append((p, False))
rng.shuffle(inputs)
good_digest = {digest(p) for p, g in inputs if g}
bad_digest = {digest(p) for p, g in inputs if not g}
rep.check(len(good_digest) == n_good and len(bad_digest) == n_bad, "inputs are not distinct")

# The delivery stream: spread over the chaos, in three ways.
done_delivering = threading.Event()


def deliver_all():
    for k, (p, _) in enumerate(inputs):
        time.sleep(rng.uniform(0.1, 0.8) * slow)
        how = k % 5
        if how == 3:
            sp.deliver(p, name="Patient_%03d.dcm" % k, slow=True)
        elif how == 4:
            folder = os.path.join(sp.staging, "Export_%03d" % k)
            os.makedirs(os.path.join(folder, "SE1"))
            os.link(p, os.path.join(folder, "SE1", "IM1"))
            os.rename(folder, os.path.join(sp.inbox, "Export_%03d" % k))
        else:
            sp.deliver(p, name="Patient_%03d.dcm" % k)
    done_delivering.set()


def children(pid):
    """Live children of pid (the studies' processes)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            st = open("/proc/%s/stat" % d).read()
        except OSError:
            continue
        fields = st[st.rfind(")") + 2:].split()
        if fields[0] not in "ZX" and int(fields[1]) == pid:
            out.append(int(d))
    return out


sp.start()
feeder = threading.Thread(target=deliver_all)
feeder.start()
kills = {"daemon": 0, "child": 0}
t0 = time.time()
while sum(kills.values()) < kills_wanted and time.time() - t0 < 240 * slow:
    time.sleep(rng.uniform(0.05, 0.6) * slow)
    if rng.random() < 0.5:
        kids = children(sp.proc.pid)
        if kids:
            try:
                os.kill(rng.choice(kids), signal.SIGKILL)
                kills["child"] += 1
            except ProcessLookupError:
                pass
            continue
    sp.proc.kill()
    sp.proc.wait()
    kills["daemon"] += 1
    sp.start()
print("chaos: %d daemon kills, %d study-process kills in %.0f s"
      % (kills["daemon"], kills["child"], time.time() - t0))
rep.check(sum(kills.values()) >= kills_wanted, "only %d kills in the time allowed" % sum(kills.values()))
feeder.join()

# The last, clean run: everything settles.
ok = sp.wait_settled(len(inputs), 180 * slow)
time.sleep(1)
c = sp.counts()
rep.check(ok and c[0] == 0 and c[1] == 0, "not settled: %s" % (c,))
rep.check(sp.stop() == 0, "final stop")

archived = [digest(os.path.join(sp.archive, n)) for n in os.listdir(sp.archive)]
failed = {n[:-4]: digest(os.path.join(sp.failed, n)) for n in os.listdir(sp.failed)
          if n.endswith(".dcm")}
everything = archived + list(failed.values())
rep.check(sorted(everything) == sorted(good_digest | bad_digest),
          "inputs not each archived or failed exactly once: %d outputs for %d inputs, "
          "%d duplicates" % (len(everything), len(inputs), len(everything) - len(set(everything))))
rep.check(set(archived) == good_digest, "%d of %d good files archived"
          % (len(set(archived) & good_digest), n_good))
rep.check(set(failed.values()) == bad_digest, "%d of %d bad files failed (and %d good)"
          % (len(set(failed.values()) & bad_digest), n_bad, len(set(failed.values()) & good_digest)))
reasons = sp.reasons()
rep.check(set(reasons) == set(failed), "failed entries and reasons differ")

rows = sp.clips()
states = [r["status"] for r in rows]
rep.check("processing" not in states and "queued" not in states,
          "rows left unfinished: %s" % sorted(set(states)))
done = {r["pseudonym"] for r in rows if r["status"] == "done"}
rep.check(len(done) == n_good, "%d done studies for %d good files" % (len(done), n_good))
by_study = {}
for r in rows:
    by_study.setdefault(r["pseudonym"], set()).add(r["status"])
for job, r in reasons.items():
    if r.get("study", "-") != "-":
        rep.check("failed" in by_study.get(r["study"], set()),
                  "quarantined %s: its study is %s in the database" % (job, by_study.get(r["study"])))

temp = re.compile(r"(\.tmp\.\d+\.\d+$)|(^\.incoming-)")
for d in (sp.work, sp.failed, sp.site.out):
    stray = [n for n in os.listdir(d) if temp.search(n)]
    rep.check(not stray, "stray temporaries in %s: %s" % (os.path.basename(d), stray))
rep.check(os.listdir(sp.work) == [".echonetd.lock"], "work/ holds %s" % os.listdir(sp.work))

blob = sp.log() + b"".join(open(os.path.join(sp.failed, j + ".reason"), "rb").read()
                           for j in reasons)
for s in small["phi_strings"] + ["Patient_", "Export_"]:
    rep.check(s.encode() not in blob, "%r in a log or reason" % s)
sp.close()
rep.finish()
