"""echonetd's journal output, live: the daemon runs with its stderr on a
real systemd-journald stream (as under its unit: JOURNAL_STREAM names
stderr), processes a good and a bad file, and the entries are read back
with journalctl -o json.  Checked: our fields (ECHONET_JOB, ECHONET_STUDY,
ECHONET_STAGE, ECHONET_EF, ECHONET_BEATS, ECHONET_DURATION_MS), the
MESSAGE_IDs of start, study done and study failed, priorities, the journal
query docs/operations.md gives, and that no field of any entry holds a
patient identifier or a delivered file name.

Needs root, systemd-journald, journalctl, systemd-cat and a build with
libsystemd.  When no journald runs (a container), this test starts one for
its duration and stops it afterwards.  Exits 77 (skipped) when it cannot
run, saying why."""
import json
import os
import signal
import subprocess
import sys
import time

import daemonlib as dl
import enlib

JOURNALD = "/lib/systemd/systemd-journald"
SOCKET = "/run/systemd/journal/socket"
MSGID = {"started": "e7b3c9d2a4f14e68b0d5a1c6f2983b57", "done": "4b1d0a6c9e2f4c8e9a3b7d51e06f2a10",
         "failed": "9f3e27c4a1b84d06b5c2e8d7130a6f41"}


def skip(why):
    print("skip: " + why)
    sys.exit(77)


def have_libsystemd():
    cfg = os.path.join(os.environ.get("EN_TOP_BUILDDIR", "."), "config.h")
    return os.path.exists(cfg) and "#define HAVE_LIBSYSTEMD 1" in open(cfg).read()


if os.geteuid() != 0:
    skip("needs root to read the system journal (and to start journald)")
for tool in ("journalctl", "systemd-cat"):
    if subprocess.run(["sh", "-c", "command -v " + tool], capture_output=True).returncode:
        skip(tool + " not installed")
if not have_libsystemd():
    skip("echonetd was built without libsystemd")

own_journald = None
if not os.path.exists(SOCKET):
    if not os.access(JOURNALD, os.X_OK):
        skip("no journald running and none to start")
    own_journald = subprocess.Popen([JOURNALD], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        if os.path.exists(SOCKET):
            break
        time.sleep(0.05)
    else:
        own_journald.kill()
        skip("could not start systemd-journald")

rep = enlib.Report("daemon_journal")
try:
    manifest = enlib.load_manifest()
    good = sorted([m for m in manifest if m["expect"] == "ok" and 12 <= m["frames"] <= 40],
                  key=lambda m: m["frames"])[0]
    sp = dl.Spool()
    # A tag of our own, so this run's entries are told from any other's.
    tag = "echonetd-test-%d" % os.getpid()
    cmd = ["systemd-cat", "-t", tag, "sh", "-c",
           'JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) exec "$0" -c "$1" -v',
           dl.ECHONETD, sp.site.conf]
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)
    proc = subprocess.Popen(cmd, env=env)
    sp.proc = proc

    def entries():
        r = subprocess.run(["journalctl", "--no-pager", "-o", "json", "_PID=%d" % proc.pid],
                           capture_output=True, text=True)
        return [json.loads(l) for l in r.stdout.splitlines() if l.strip()]

    def wait_for(pred, timeout):
        t0 = time.time()
        while time.time() - t0 < timeout:
            subprocess.run(["journalctl", "--sync"], capture_output=True)
            es = entries()
            if pred(es):
                return es
            time.sleep(0.3)
        return entries()

    es = wait_for(lambda es: any(e.get("MESSAGE_ID") == MSGID["started"] for e in es), 60)
    rep.check(any(e.get("MESSAGE_ID") == MSGID["started"] for e in es),
              "no start entry in the journal: %s" % [e.get("MESSAGE") for e in es][:5])
    names = [sp.deliver(os.path.join(enlib.TESTDATA, good["file"]), name="Doe_John_echo.dcm"),
             sp.deliver(os.path.join(enlib.TESTDATA, "bad", "not_dicom.txt"), name="Roe_Jane.dcm")]
    done = lambda es: (any(e.get("MESSAGE_ID") == MSGID["done"] for e in es)
                       and any(e.get("MESSAGE_ID") == MSGID["failed"] for e in es))
    es = wait_for(done, 120 * (4 if dl.sanitized() else 1))
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    es = wait_for(lambda es: any("stopped" in e.get("MESSAGE", "") for e in es), 20)

    rep.check(all(e.get("SYSLOG_IDENTIFIER") == "echonetd" for e in es),
              "entries not tagged echonetd: %s" % {e.get("SYSLOG_IDENTIFIER") for e in es})
    d = [e for e in es if e.get("MESSAGE_ID") == MSGID["done"]]
    f = [e for e in es if e.get("MESSAGE_ID") == MSGID["failed"]]
    rep.check(len(d) == 1 and len(f) == 1, "done/failed entries: %d/%d" % (len(d), len(f)))
    if d:
        e = d[0]
        for k in ("ECHONET_JOB", "ECHONET_STUDY", "ECHONET_STAGE", "ECHONET_EF", "ECHONET_BEATS",
                  "ECHONET_DURATION_MS"):
            rep.check(k in e, "study-done entry lacks %s: %s" % (k, sorted(e)))
        rep.check(e.get("ECHONET_STAGE") == "done" and e.get("PRIORITY") == "6",
                  "done entry stage/priority: %s/%s" % (e.get("ECHONET_STAGE"), e.get("PRIORITY")))
        rows = [r["pseudonym"] for r in sp.clips() if r["status"] == "done"]
        rep.check(rows == [e.get("ECHONET_STUDY")],
                  "ECHONET_STUDY %s is not the stored pseudonym %s" % (e.get("ECHONET_STUDY"), rows))
        rep.check(e.get("ECHONET_JOB", "").startswith("j"), "job field: %s" % e.get("ECHONET_JOB"))
        # The query docs/operations.md gives for one study.
        r = subprocess.run(["journalctl", "--no-pager", "-o", "json",
                            "ECHONET_STUDY=" + e.get("ECHONET_STUDY", "none"), "_PID=%d" % proc.pid],
                           capture_output=True, text=True)
        rep.check(len(r.stdout.splitlines()) >= 2, "journalctl ECHONET_STUDY= query found %d entries"
                  % len(r.stdout.splitlines()))
    if f:
        rep.check(f[0].get("PRIORITY") == "4" and "EN_EFORMAT" in f[0].get("MESSAGE", ""),
                  "failed entry: %s" % f[0])
    # No patient identifier and no delivered name in any field of any entry.
    phi = good["phi_strings"] + ["ZZBURN", "Doe_John", "Roe_Jane"] + names
    blob = json.dumps(es)
    leaks = [s for s in phi if s and s in blob]
    rep.check(not leaks, "identifying strings in the journal: %s" % leaks)
    rep.check(len(es) >= 5, "too few journal entries: %d" % len(es))
finally:
    if own_journald:
        own_journald.send_signal(signal.SIGTERM)
        own_journald.wait(timeout=20)
        for n in ("socket", "stdout", "dev-log", "io.systemd.journal"):
            try:
                os.unlink(os.path.join("/run/systemd/journal", n))
            except OSError:
                pass
sys.exit(rep.finish())
