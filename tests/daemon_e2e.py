"""echonetd end to end, as a real process on a temporary spool: good files
delivered by rename and by slow writes, bad files, a duplicate, names it
must ignore, a file that crashes the study's process and one that hangs it
(test-only fault hook EN_DAEMON_FAULT), SIGHUP (a change, and a broken
file that is refused), disk backpressure, and a clean SIGTERM.  Every file
must end in the archive or the failed folder exactly once, failures with a
.reason and a database event, and no log line may hold a patient
identifier or a delivered file name."""
import os
import signal
import time

import daemonlib as dl
import enlib

rep = enlib.Report("daemon_e2e")
slow_factor = 4 if dl.sanitized() else 1
manifest = enlib.load_manifest()
good = sorted([m for m in manifest if m["expect"] == "ok" and 12 <= m["frames"] <= 40],
              key=lambda m: m["frames"])[:4]
gpath = [os.path.join(enlib.TESTDATA, m["file"]) for m in good]
bad = [os.path.join(enlib.TESTDATA, "bad", n) for n in ("not_dicom.txt", "trunc50_us_mf_mono2_explicit.dcm")]

sp = dl.Spool(study_timeout_s=4 * slow_factor)
tmp = sp.dir
crash = os.path.join(tmp, "crash.dcm")
hang = os.path.join(tmp, "hang.dcm")
for path, marker in ((crash, "EN_TEST_CRASH_ME"), (hang, "EN_TEST_HANG_ME")):
    dl.with_new_uids(gpath[0], path, marker, comment=marker)

sp.start(env={"EN_DAEMON_FAULT": "crash:EN_TEST_CRASH_ME"})
names = []
# Files the daemon must leave alone.
for n in (".hidden.dcm", "upload.part", "upload.tmp"):
    open(os.path.join(sp.inbox, n), "wb").write(open(gpath[0], "rb").read())
names.append(sp.deliver(gpath[0]))
names.append(sp.deliver(gpath[1], slow=True))
names.append(sp.deliver(gpath[2]))
for b in bad:
    names.append(sp.deliver(b))
names.append(sp.deliver(crash, name="crash_patient_Doe.dcm"))
total = len(names)


def settled(total, timeout):
    t0 = time.time()
    while time.time() - t0 < timeout:
        c = sp.counts()
        if c[1] == 0 and c[2] + c[3] == total and c[0] == 3:
            return True
        time.sleep(0.2)
    return False


rep.check(settled(total, 120 * slow_factor), "not settled: inbox/work/archive/failed/reasons %s" % (sp.counts(),))
c = sp.counts()
rep.check(c[2] == 3 and c[3] == 3 and c[4] == 3, "expected 3 archived and 3 failed with reasons: %s" % (c,))
rep.check(sorted(os.listdir(sp.inbox)) == [".hidden.dcm", "upload.part", "upload.tmp"],
          "ignored names touched: %s" % os.listdir(sp.inbox))
for n in os.listdir(sp.archive) + os.listdir(sp.failed):
    rep.check(n.startswith("j") and not any(n.startswith(x.split(".")[0]) for x in names),
              "output name derived from the delivered name: %s" % n)
reasons = {n: open(os.path.join(sp.failed, n)).read() for n in os.listdir(sp.failed) if n.endswith(".reason")}
# Under ASan the SEGV is caught by the sanitizer, which exits 1 instead.
crashed = [r for r in reasons.values() if "error: crash" in r or (dl.sanitized() and "error: exit1" in r)]
rep.check(len(crashed) == 1 and "attempts: 2" in crashed[0], "crash file not quarantined after 2 attempts: %s" % reasons)
rep.check(sum("error: EN_EFORMAT" in r for r in reasons.values()) == 2, "bad files' reasons: %s" % reasons)
rows = sp.clips()
rep.check(len(rows) == 3 and all(r["status"] == "done" for r in rows), "studies: %s" % rows)
fails = sp.sql("SELECT job, attempt, message FROM events WHERE state='failed' AND job IS NOT NULL")
rep.check(len(fails) == 3, "failed events with a job: %s" % fails)
# Half results: every done study has one frame row per video frame.
for r in rows:
    # (An instance screened out as not analysable stores no video frames.)
    rep.check(r["frames"] == (r["video_frames"] or 0), "study %s: %s frames stored of %s"
              % (r["id"], r["frames"], r["video_frames"]))

# The truncated file was renamed in whole: it waited incomplete_wait_s for
# the rest, then was taken anyway and failed with the reader's reason.
rep.check(sp.wait_log("is not whole DICOM yet", 1), "incomplete file not noticed")
rep.check(sp.wait_log("stayed incomplete for 4 s: taking it anyway", 1),
          "incomplete file not taken after incomplete_wait_s")

# A duplicate (the same instance again): recognised by its duplicate key,
# not processed again, archived; the stored result is untouched.
def results():
    return [(r["id"], r["finished_at"], r["ef_mean"]) for r in sp.clips()]


before = results()
sp.deliver(gpath[0])
total += 1
rep.check(settled(total, 60 * slow_factor), "duplicate not settled: %s" % (sp.counts(),))
rep.check(results() == before,
          "duplicate changed the stored results")
rep.check(sp.wait_log("duplicate: this instance was already processed", 5), "duplicate not logged")
rep.check(len(sp.sql("SELECT id FROM events WHERE message LIKE 'duplicate delivered%'")) == 1,
          "duplicate not recorded in the study's events")

# A writer that stalls mid-file (longer than settle_ms): the file is not
# taken while it ends inside an element, and is taken once it is whole.
stalled_src = os.path.join(tmp, "stalled_src.dcm")
dl.with_new_uids(gpath[2], stalled_src, "stalled")
blob = open(stalled_src, "rb").read()
failed_before = sp.counts()[3]
stalled = os.path.join(sp.inbox, "stalled_copy.dcm")
with open(stalled, "wb") as f:
    f.write(blob[:len(blob) // 2])
time.sleep(1.5)
rep.check(os.path.exists(stalled), "a half-written file was taken")
with open(stalled, "ab") as f:
    f.write(blob[len(blob) // 2:])
total += 1
rep.check(settled(total, 60 * slow_factor), "stalled file not taken once whole: %s" % (sp.counts(),))
rep.check(sp.counts()[3] == failed_before and len(sp.clips()) == 4,
          "stalled file not processed as a new study: %s" % (sp.counts(),))

# SIGHUP: a change is logged and applied; a broken file is refused.
sp.write_conf(rescan_ms=700)
sp.proc.send_signal(signal.SIGHUP)
rep.check(sp.wait_log("rescan_ms changed: 500 -> 700", 20), "reload change not logged")
good_conf = open(sp.site.conf).read()
with open(sp.site.conf, "a") as f:
    f.write("no_such_key = 1\n")
sp.proc.send_signal(signal.SIGHUP)
rep.check(sp.wait_log("reload refused", 20), "broken config not refused")
open(sp.site.conf, "w").write(good_conf)

# Disk backpressure: an impossible free-space floor pauses intake.
sp.write_conf(rescan_ms=700, min_free_mb=1 << 29)
sp.proc.send_signal(signal.SIGHUP)
rep.check(sp.wait_log("backpressure: less than", 20), "disk backpressure not logged")
sp.deliver(gpath[3])
time.sleep(2)
rep.check(sp.counts()[0] == 4, "a file was taken under backpressure: %s" % (sp.counts(),))
sp.write_conf(rescan_ms=700)
sp.proc.send_signal(signal.SIGHUP)
total += 1
rep.check(sp.wait_log("backpressure over", 20), "backpressure end not logged")
rep.check(settled(total, 60 * slow_factor), "file not taken after backpressure: %s" % (sp.counts(),))
rc = sp.stop()
rep.check(rc == 0, "SIGTERM exit %s" % rc)

# A hanging study is killed on the timeout and quarantined; others go on.
sp.start(env={"EN_DAEMON_FAULT": "hang:EN_TEST_HANG_ME"})
sp.deliver(hang, name="hang_Smith.dcm")
sp.deliver(gpath[1])
total += 2
rep.check(settled(total, 120 * slow_factor), "hang not settled: %s" % (sp.counts(),))
reasons = [open(os.path.join(sp.failed, n)).read() for n in os.listdir(sp.failed) if n.endswith(".reason")]
rep.check(sum("error: timeout" in r for r in reasons) == 1, "hang not quarantined as timeout")
rc = sp.stop()
rep.check(rc == 0, "SIGTERM exit %s" % rc)

# systemd protocol, on a notify socket of our own: READY=1 after start-up,
# STATUS= with the queue, WATCHDOG=1 at half of WATCHDOG_USEC, STOPPING=1.
# (Built without libsystemd, there are no messages: skip.)
config_h = open(os.path.join(dl.TOP_BUILDDIR, "config.h")).read()
if "#define HAVE_LIBSYSTEMD 1" in config_h:
    import socket
    nsock = os.path.join(tmp, "notify")
    so = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    so.bind(nsock)
    so.settimeout(0.2)

    def drain(seconds):
        got, t0 = [], time.time()
        while time.time() - t0 < seconds:
            try:
                got.append(so.recv(4096).decode())
            except socket.timeout:
                pass
        return got

    sp.start(env={"NOTIFY_SOCKET": nsock, "WATCHDOG_USEC": "400000"})
    sp.deliver(gpath[2])
    total += 1
    msgs = drain(3 * slow_factor)
    rep.check(any("READY=1" in m for m in msgs), "no READY=1: %s" % msgs[:5])
    rep.check(sum("WATCHDOG=1" in m for m in msgs) >= 3, "WATCHDOG=1 %d times in 3 s" % sum("WATCHDOG=1" in m for m in msgs))
    rep.check(any(m.startswith("STATUS=") and "queue" in m and "done" in m for m in msgs), "no STATUS= line")
    rep.check(settled(total, 60 * slow_factor), "notify run not settled")
    sp.proc.send_signal(signal.SIGTERM)
    msgs = drain(1)
    rep.check(any("STOPPING=1" in m for m in msgs), "no STOPPING=1")
    rep.check(sp.proc.wait(30) == 0, "notify run exit")
    # A model that does not load: no READY=1, exit 3, the setting named.
    sp.write_conf()
    conf = open(sp.site.conf).read().replace(sp.models["ef"], os.path.join(tmp, "missing.safetensors"))
    open(sp.site.conf, "w").write(conf)
    sp.start(env={"NOTIFY_SOCKET": nsock}, wait_ready=False)
    rc = sp.proc.wait(60)
    msgs = drain(0.5)
    rep.check(rc == 3 and not any("READY=1" in m for m in msgs), "missing model: exit %s, %s" % (rc, msgs))
    rep.check(b"[models] ef" in open(sp.logfile, "rb").read(), "missing model not named")
    sp.write_conf()
    so.close()

# No patient identifier and no delivered name in any log line or reason.
blob = sp.log() + b"".join(r.encode() for r in reasons)
for m in good:
    for s in m["phi_strings"]:
        rep.check(s.encode() not in blob, "PHI %r in the log" % s)
for n in names + ["hang_Smith", "crash_patient_Doe", "delivered_"]:
    rep.check(n.encode() not in blob, "delivered name %r in the log" % n)
sp.close()
rep.finish()
