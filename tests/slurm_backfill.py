"""A back-fill through a real Slurm (issue 14): a single-node cluster started
here (scripts/slurm-up.sh: munged, slurmctld, slurmd), the job script
contrib/slurm/echonetd-array.sbatch submitted as an array over a small
archive's list with the dependent merge (contrib/slurm/submit.sh), and the
merged database checked against one process over the same files.

Also: a task cancelled mid-shard (scancel) makes the merge job fail and
name it; submitted again, it skips what it did, and the merge then holds
every clip once, as the single run does.  A shard made with another site
secret is refused by the merge job.  Skipped (exit 77, with the reason)
only when the cluster cannot start here (not root, Slurm not installed)."""
import atexit
import os
import re
import socket
import subprocess
import sys
import time

import enlib
import mergelib

rep = enlib.Report("slurm_backfill")
top = enlib.TOP_SRCDIR
ctl = enlib.ECHONETCTL
slow = os.environ.get("EN_SANITIZE", "") not in ("", "0")
deadline = 1800 if slow else 600
site = enlib.Site()
tmp = site.dir
state = os.path.join(tmp, "slurm")


def free_port_pair():
    """Two free TCP ports in a row, for slurmctld and slurmd, so a second
    run (or a real Slurm on this machine) is never in the way."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("", 0))
            p = s.getsockname()[1]
        if p > 60000:
            continue
        try:
            with socket.socket() as s:
                s.bind(("", p + 1))
            return p
        except OSError:
            continue
    return 16817


env = dict(os.environ, ECHONETD_SLURM_PORT=str(free_port_pair()))
up = subprocess.run(["sh", os.path.join(top, "scripts", "slurm-up.sh"), "up", state],
                    capture_output=True, text=True, env=env, timeout=180)
if up.returncode == 77:
    print(up.stderr.strip() or "SKIP: the test Slurm cluster cannot start here")
    site.close()
    sys.exit(77)


def down():
    subprocess.run(["scancel", "--full", "--quiet", "--partition=test"], env=env,
                   capture_output=True)
    subprocess.run(["sh", os.path.join(top, "scripts", "slurm-up.sh"), "down", state], env=env,
                   capture_output=True, timeout=120)


def fail_hard(what):
    rep.check(False, what)
    for log in ("slurmctld.log", "slurmd.log"):
        p = os.path.join(state, "log", log)
        if os.path.exists(p):
            print("---- %s (tail)\n%s" % (log, "".join(open(p).readlines()[-15:])))
    down()
    site.close()
    rep.finish()


# Whatever happens below, the daemons started here stop with the test.
atexit.register(down)
if up.returncode != 0:
    fail_hard("slurm-up.sh: exit %d: %s %s" % (up.returncode, up.stdout, up.stderr))
env["SLURM_CONF"] = os.path.join(state, "slurm.conf")


def job_state(jobid):
    """(state, exit code) of a job from slurmctld (no accounting here)."""
    r = subprocess.run(["scontrol", "-o", "show", "job", str(jobid)], capture_output=True,
                       text=True, env=env)
    states = re.findall(r"JobState=(\S+)", r.stdout)
    codes = re.findall(r" ExitCode=(\d+):\d+", r.stdout)
    return states, codes


def wait_job(jobid, what):
    t0 = time.time()
    while time.time() - t0 < deadline:
        states, codes = job_state(jobid)
        if states and all(s in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL",
                                "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE") for s in states):
            return states, codes
        time.sleep(0.5)
    fail_hard("%s: job %s not finished after %d s (%s)" % (what, jobid, deadline, job_state(jobid)))


def submit(*args):
    r = subprocess.run(["sh", os.path.join(top, "contrib", "slurm", "submit.sh")] + list(args)
                       + ["--", "--cpus-per-task=1"], capture_output=True, text=True, env=env)
    ids = dict(l.split() for l in r.stdout.splitlines() if len(l.split()) == 2)
    if r.returncode != 0 or "array" not in ids or "merge" not in ids:
        fail_hard("submit.sh %s: exit %d: %s %s" % (args, r.returncode, r.stdout, r.stderr))
    return ids["array"], ids["merge"]


# ---- the site, the archive, the list, and one process over all of it --------
conf = site.conf
with open(conf, "a") as f:
    f.write("[paths]\ndatabase = %s/results.db\n[nn]\nthreads = 1\n" % tmp)
archive = os.path.join(tmp, "archive")
files = mergelib.make_archive(archive, tmp, 7300, rep)
flist = os.path.join(tmp, "files.txt")
r = subprocess.run([ctl, "-c", conf, "process", "--dry-run", archive], capture_output=True, text=True)
with open(flist, "w") as f:
    f.write(r.stdout)
rep.check(r.stdout.splitlines() == files, "the list is not the archive's DICOM files: %s" % r.stdout)

ref = os.path.join(tmp, "ref.db")
os.makedirs(os.path.join(tmp, "ref-out"))
r = subprocess.run([ctl, "-c", conf, "--set", "paths.database=" + ref, "--set",
                    "paths.output_dir=%s/ref-out" % tmp, "process", "--files", flist],
                   capture_output=True, text=True, timeout=deadline)
rep.check(r.returncode == 0, "single run: exit %d: %s" % (r.returncode, r.stderr[-1500:]))
# The single run made the site secret; the tasks read it (never make their own).
rep.check(os.path.exists(os.path.join(tmp, "secret")), "no site secret after the single run")

# ---- the array, with shard 2 cancelled mid-shard -------------------------------
shard_dir = os.path.join(tmp, "shards")
env.update(ECHONETD_CONF=conf, ECHONETD_LIST=flist, ECHONETD_SHARDS="3",
           ECHONETD_SHARD_DIR=shard_dir, ECHONETD_SCRATCH=os.path.join(tmp, "scratch"),
           ECHONETCTL=ctl, ECHONETD_PROGRESS_S="0")
array, merge = submit()
log2 = os.path.join(shard_dir, "logs", "shard-2-job-%s.log" % array)
t0 = time.time()
while time.time() - t0 < deadline:
    if os.path.exists(log2) and "echonetctl process: 1/2 files" in open(log2).read():
        break
    time.sleep(0.1)
else:
    fail_hard("shard 2 never finished its first file (%s)" % job_state(array + "_2"))
subprocess.run(["scancel", "%s_2" % array], env=env, check=False)
states, codes = wait_job(merge, "merge after the cancelled task")
rep.check(states == ["FAILED"] and codes == ["1"],
          "merge with a shard cancelled: %s exit %s, expected FAILED 1" % (states, codes))
task2, _ = job_state(array + "_2")
rep.check(task2 == ["CANCELLED"], "shard 2: %s, expected CANCELLED" % task2)
mlog = open(os.path.join(shard_dir, "logs", "merge-job-%s.log" % merge)).read()
rep.check("shard(s) 2 of 3 did not finish" in mlog and "--tasks 2" in mlog,
          "merge job did not name the shard to submit again: %s" % mlog[-1500:])
for k, complete in ((1, True), (2, False), (3, True)):
    mark = os.path.join(shard_dir, "shard-%d-of-3.complete" % k)
    rep.check(os.path.exists(mark) == complete, "shard %d: complete mark %s" % (k, os.path.exists(mark)))
s2 = mergelib.clips(os.path.join(shard_dir, "shard-2-of-3.db"))
done2 = [c for c in s2.values() if c[0] == "done"]
rep.check(len(done2) == 1, "the cancelled shard kept %d done clips, expected 1 (cancelled mid-shard, "
          "its database copied back from scratch)" % len(done2))
results = os.path.join(tmp, "results.db")
partial = mergelib.clips(results)
rep.check(len([c for c in partial.values() if c[0] == "done"]) == 5,
          "after the first merge: %d done clips, expected 5" % len(partial))

# ---- shard 2 again, and its merge ------------------------------------------------
array2, merge2 = submit("--tasks", "2")
states, codes = wait_job(merge2, "merge after shard 2 ran again")
rep.check(states == ["COMPLETED"] and codes == ["0"], "second merge job: %s exit %s: %s"
          % (states, codes, open(os.path.join(shard_dir, "logs", "merge-job-%s.log" % merge2)).read()[-1500:]))
log2 = open(os.path.join(shard_dir, "logs", "shard-2-job-%s.log" % array2)).read()
rep.check("2/2 files (1 processed, 1 already done, 0 failed)" in log2,
          "shard 2 did not resume where it stopped: %s" % log2[-1000:])
mergelib.compare(rep, "after the back-fill", results, ref)
rep.check(any(c[5] for c in mergelib.clips(ref).values()), "no clip had a beat: beats untested")
for k in (1, 2, 3):
    log = os.path.join(shard_dir, "logs", "shard-%d-job-%s.log" % (k, array))
    text = open(log).read() if os.path.exists(log) else ""
    rep.check("shard %d/3" % k in text, "shard %d's log does not say which shard it took" % k)

# Merging the same shards again changes nothing.
h = mergelib.dump(results)
shards = [os.path.join(shard_dir, "shard-%d-of-3.db" % k) for k in (1, 2, 3)]
r = subprocess.run([ctl, "-c", conf, "merge"] + shards, capture_output=True, text=True)
rep.check(r.returncode == 0 and mergelib.dump(results) == h,
          "merging again: exit %d, changed %s" % (r.returncode, mergelib.dump(results) != h))

# ---- a shard of another site is refused by the merge job ------------------------
other = enlib.Site()
foreign_dir = os.path.join(tmp, "foreign")
os.makedirs(foreign_dir)
r = subprocess.run([ctl, "-c", other.conf, "--set", "paths.database=%s/shard-1-of-1.db" % foreign_dir,
                    "process", files[-1]], capture_output=True, text=True, timeout=deadline)
rep.check(r.returncode == 0, "foreign shard: %s" % r.stderr[-1000:])
open(os.path.join(foreign_dir, "shard-1-of-1.complete"), "w").close()
fenv = dict(env, ECHONETD_SHARDS="1", ECHONETD_SHARD_DIR=foreign_dir)
r = subprocess.run(["sbatch", "--parsable", "--export=ALL", "--output=%s/merge.log" % foreign_dir,
                    os.path.join(top, "contrib", "slurm", "echonetd-merge.sbatch")],
                   capture_output=True, text=True, env=fenv)
states, codes = wait_job(r.stdout.strip().split(";")[0], "merge of a foreign shard")
flog = open(os.path.join(foreign_dir, "merge.log")).read()
rep.check(states == ["FAILED"] and "another site secret" in flog,
          "foreign shard merge: %s: %s" % (states, flog[-1000:]))
rep.check(mergelib.dump(results) == h, "the refused shard changed the merged database")

other.close()
down()
site.close()
rep.finish()
