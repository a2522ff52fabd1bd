"""The model host ([daemon] warm_models): studies start with the models the
host loaded once, never with models the configuration no longer names, and
losing the host loses no study.

1. With the default (warm_models = yes) a model host process runs beside
   the daemon; studies are forked by it ("models ready ... kept by the
   model host"), are done, and store the configured models' SHA-256.
2. A weights file replaced under the same name, without a reload: the next
   study loads its own models and stores the new weights' SHA-256.
3. SIGHUP: a new model host starts; the next studies are forked by it again
   with the new weights.
4. The model host SIGKILLed while a study runs (a hang, so it surely runs):
   the study is not counted against its attempts (max_attempts = 1 would
   quarantine it), the host comes back, and the next study is forked by it.
5. warm_models = no: no host; every study loads its own models.
"""
import os
import shutil
import signal
import subprocess
import time

import daemonlib as dl
import enlib
import testmodels

rep = enlib.Report("daemon_warm")
slow = 4 if dl.sanitized() else 1
manifest = enlib.load_manifest()
good = sorted([m for m in manifest if m["expect"] == "ok" and 12 <= m["frames"] <= 40],
              key=lambda m: m["frames"])[0]
src = os.path.join(enlib.TESTDATA, good["file"])

sp = dl.Spool(max_attempts=1, study_timeout_s=60 * slow)
n = [0]
_write_conf = sp.write_conf


def write_conf(**over):
    # Two engine threads: the host then has threads besides its main one
    # (a study's end must still reach it).
    _write_conf(**over)
    with open(sp.site.conf) as f:
        conf = f.read().replace("threads = 1", "threads = 2")
    with open(sp.site.conf, "w") as f:
        f.write(conf)


sp.write_conf = write_conf
sp.write_conf()


def deliver_new(marker=None):
    n[0] += 1
    path = os.path.join(sp.dir, "in%d.dcm" % n[0])
    dl.with_new_uids(src, path, "warm%d" % n[0], comment=marker)
    sp.deliver(path)


def host_pids():
    out = subprocess.run(["pgrep", "-f", "--", "--model-host --config %s" % sp.site.conf],
                         capture_output=True, text=True).stdout
    # Its studies are forks of it, with the same command line: the host is
    # the one whose parent is the daemon.
    pids = []
    for p in out.split():
        try:
            ppid = int(open("/proc/%s/stat" % p).read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        if ppid == sp.proc.pid:
            pids.append(int(p))
    return pids


def weights_sha(path):
    """The SHA-256 echonetd records for a weights file (its metadata)."""
    import json
    import struct
    with open(path, "rb") as f:
        (hlen,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(hlen))["__metadata__"]["content_sha256"]


def stored_models():
    return sp.sql("SELECT seg_model, ef_model FROM clips ORDER BY id")


def wait_count(text, count, timeout):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if sp.log().count(text.encode()) >= count:
            return True
        time.sleep(0.1)
    return False


WARM = "kept by the model host"
COLD = "loaded by the study's process"

# 1. Warm by default.
sp.start()
rep.check(wait_count("model host ready", 1, 60 * slow), "model host not ready")
rep.check(len(host_pids()) == 1, "model host processes: %s" % host_pids())
for _ in range(2):
    deliver_new()
rep.check(sp.wait_settled(2, 120 * slow), "first two: %s" % (sp.counts(),))
log = sp.log()
rep.check(log.count(WARM.encode()) == 2 and COLD.encode() not in log,
          "first studies not forked by the host: %d warm" % log.count(WARM.encode()))
seg_sha, ef_sha = weights_sha(sp.models["seg"]), weights_sha(sp.models["ef"])
rep.check(stored_models() == [(seg_sha, ef_sha)] * 2, "stored models %s" % stored_models())

# 2. Weights replaced in place, no reload: the study loads its own.
other = os.path.join(sp.dir, "other")
os.makedirs(other)
new = testmodels.build(other, 8, "daemon_warm replacement")
new_seg = weights_sha(new["seg"])
rep.check(new_seg != seg_sha, "replacement weights are not different")
tmp = sp.models["seg"] + ".new"
shutil.copyfile(new["seg"], tmp)
os.rename(tmp, sp.models["seg"])
deliver_new()
rep.check(sp.wait_settled(3, 120 * slow), "after replacement: %s" % (sp.counts(),))
rep.check(sp.log().count(COLD.encode()) == 1, "replaced weights: study did not load its own")
rep.check(stored_models()[-1] == (new_seg, ef_sha),
          "replaced weights: stored %s, want %s" % (stored_models()[-1], (new_seg, ef_sha)))

# 3. Reload: a new host with the new weights.
old_hosts = host_pids()
sp.proc.send_signal(signal.SIGHUP)
rep.check(wait_count("model host ready", 2, 60 * slow), "no new model host after SIGHUP")
time.sleep(0.5)
rep.check(host_pids() and host_pids() != old_hosts, "host after reload: %s (was %s)"
          % (host_pids(), old_hosts))
deliver_new()
rep.check(sp.wait_settled(4, 120 * slow), "after reload: %s" % (sp.counts(),))
rep.check(sp.log().count(WARM.encode()) == 3, "after reload the study was not forked by the host")
rep.check(stored_models()[-1] == (new_seg, ef_sha), "after reload: stored %s" % (stored_models()[-1],))
sp.stop()

# 4. The host killed under a running study.  The hang marker holds the
# study (study_timeout_s is long) so the kill surely lands while it runs.
sp.start(env={"EN_DAEMON_FAULT": "hang:EN_TEST_HANG_WARM"})
rep.check(wait_count("model host ready", 3, 60 * slow), "host not ready after restart")
deliver_new(marker="EN_TEST_HANG_WARM")
rep.check(sp.wait_log("attempt 1 started (forked by the model host)", 60 * slow),
          "hanging study not started by the host")
time.sleep(1.0)
hosts = host_pids()
rep.check(len(hosts) == 1, "hosts before the kill: %s" % hosts)
for p in hosts:
    os.kill(p, signal.SIGKILL)
rep.check(sp.wait_log("the model host died", 30 * slow), "host death not logged")
rep.check(sp.wait_log("transient error", 30 * slow), "the study was not treated as transient")
rep.check(wait_count("model host ready", 4, 60 * slow), "host not started again")
c = sp.counts()
rep.check(c[3] == 0, "the study lost to the host's death was quarantined: %s" % (c,))
sp.stop(timeout=60)
# Without the fault it is done (its attempt was not used up).
sp.start()
rep.check(sp.wait_settled(5, 120 * slow), "hang study after restart: %s" % (sp.counts(),))
c = sp.counts()
rep.check(c[2] == 5 and c[3] == 0, "archive/failed after the host's death: %s" % (c,))
deliver_new()
rep.check(sp.wait_settled(6, 120 * slow), "after restart: %s" % (sp.counts(),))
sp.stop()

# 5. warm_models = no.
sp.write_conf(warm_models="no")
sp.start()
before = sp.log().count(COLD.encode())
deliver_new()
rep.check(sp.wait_settled(7, 120 * slow), "cold: %s" % (sp.counts(),))
time.sleep(0.3)
rep.check(not host_pids(), "a model host runs with warm_models = no: %s" % host_pids())
rep.check(sp.log().count(COLD.encode()) == before + 1, "warm_models = no: study did not load its own")
rep.check(sp.stop() == 0, "stop")
rep.finish()
