"""echonetd's inbox beyond plain files, and its spool lock, as real
processes on a temporary spool:

1. Folders: a PACS-style export renamed in whole, a USB-style copy written
   file by file, a tree nested deeper than the daemon walks.  Every regular
   file inside (up to 8 levels) is taken like a top-level one under a job
   name of its own; the emptied folders are removed; a folder nested
   deeper goes to failed/ whole, with a reason.
2. What cannot be processed (symbolic links, FIFOs, sockets, device nodes
   when the test may make one), at the top and inside folders: moved to
   failed/ with a .reason saying what it is.  A link's target outside the
   spool is never read: it is not in the database, and it is untouched.
3. The lock: a second daemon on the same spool exits 3 naming the first,
   which goes on working; after a SIGKILL the next start takes the lock.
No delivered name (folder names included) reaches a log or a reason."""
import os
import signal
import socket
import stat
import subprocess
import time

import daemonlib as dl
import enlib

rep = enlib.Report("daemon_inbox")
slow = 4 if dl.sanitized() else 1
manifest = enlib.load_manifest()
small = sorted([m for m in manifest if m["expect"] == "ok" and 12 <= m["frames"] <= 16],
               key=lambda m: (m["frames"], m["rows"] * m["cols"]))[0]
src = os.path.join(enlib.TESTDATA, small["file"])
bad_src = os.path.join(enlib.TESTDATA, "bad", "not_dicom.txt")

sp = dl.Spool()
gen = os.path.join(sp.dir, "gen")
outside = os.path.join(sp.dir, "outside")
os.makedirs(gen)
os.makedirs(outside)
seq = [0]


def good(path):
    """A new study (fresh UIDs) at path."""
    seq[0] += 1
    dl.with_new_uids(src, path, "inbox-%d" % seq[0])
    return path


# A DICOM outside the spool that links point at: it must never be read.
secret = good(os.path.join(outside, "Outside_Patient.dcm"))
secret_bytes = open(secret, "rb").read()
names = ["Outside_Patient"]
expect_good, expect_bad = 0, {}   # bad: what its reason must say -> count

# 1a. A PACS-style export, renamed into the inbox whole.
exp = os.path.join(sp.staging, "EXPORT_Doe")
series = os.path.join(exp, "DICOM", "ST0001", "SE0001")
os.makedirs(series)
for i in (1, 2):
    good(os.path.join(series, "IM%04d" % i))
    expect_good += 1
with open(os.path.join(exp, "README_Doe.txt"), "wb") as f:
    f.write(open(bad_src, "rb").read())
expect_bad["EN_EFORMAT"] = 1
os.symlink(secret, os.path.join(series, "IM_link_Doe"))
os.mkfifo(os.path.join(series, "pipe_Doe"))
expect_bad["a symbolic link"] = 1
expect_bad["a FIFO"] = 1
names += ["EXPORT_Doe", "README_Doe", "IM_link_Doe", "pipe_Doe"]

# 1b. Nested deeper than the daemon walks: one file at level 3 is taken,
# the folder at level 9 (with a file deep inside) goes to failed/ whole.
deep = os.path.join(sp.staging, "deep_Roe")
lvl = deep
for i in range(1, 12):
    lvl = os.path.join(lvl, "level%d" % i)
    os.makedirs(lvl)
    if i == 3:
        good(os.path.join(lvl, "mid_Roe.dcm"))
        expect_good += 1
good(os.path.join(lvl, "bottom_Roe.dcm"))
expect_bad["a folder"] = 1
names += ["deep_Roe", "mid_Roe", "bottom_Roe"]

# 2. Things that are not files, at the top of the inbox.
os.symlink(secret, os.path.join(sp.inbox, "link_Jones.dcm"))
os.mkfifo(os.path.join(sp.inbox, "fifo_Jones.dcm"))
so = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
so.bind(os.path.join(sp.inbox, "sock_Jones.dcm"))
expect_bad["a symbolic link"] += 1
expect_bad["a FIFO"] += 1
expect_bad["a socket"] = 1
try:
    os.mknod(os.path.join(sp.inbox, "dev_Jones.dcm"), 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    expect_bad["a device node"] = 1
except OSError as e:
    print("no device node test (cannot mknod here: %s)" % e)
names += ["link_Jones", "fifo_Jones", "sock_Jones", "dev_Jones"]

sp.start()
os.rename(exp, os.path.join(sp.inbox, "EXPORT_Doe"))
os.rename(deep, os.path.join(sp.inbox, "deep_Roe"))
# 1c. A USB-style copy: a folder made in the inbox, its files written in
# slowly one after the other, with pauses longer than settle_ms.
usb = os.path.join(sp.inbox, "USB_Smith")
os.makedirs(usb)
for i in (1, 2):
    p = good(os.path.join(gen, "usb%d.dcm" % i))
    data = open(p, "rb").read()
    with open(os.path.join(usb, "Smith_%d.dcm" % i), "wb") as f:
        step = max(1, len(data) // 4)
        for k in range(0, len(data), step):
            f.write(data[k:k + step])
            f.flush()
            time.sleep(0.1)
    expect_good += 1
    time.sleep(0.8)
names += ["USB_Smith", "Smith_"]
# And one plain file, as always.
sp.deliver(good(os.path.join(gen, "plain.dcm")))
expect_good += 1

total = expect_good + sum(expect_bad.values())
t0 = time.time()
while time.time() - t0 < 90 * slow:
    c = sp.counts()
    if not os.listdir(sp.inbox) and c[1] == 0 and c[2] + c[3] == total:
        break
    time.sleep(0.2)
c = sp.counts()
rep.check(not os.listdir(sp.inbox), "inbox not emptied (folders left?): %s" % os.listdir(sp.inbox))
rep.check(c[1] == 0, "work/ not empty: %s" % (c,))
rep.check(c[2] == expect_good, "archived %d of %d good files: %s" % (c[2], expect_good, c))
rep.check(c[3] == sum(expect_bad.values()) and c[4] == c[3],
          "failed/: %d entries, %d reasons, %d expected" % (c[3], c[4], sum(expect_bad.values())))
reasons = sp.reasons()
for what, n in expect_bad.items():
    got = sum(what in r.get("message", "") or what == r.get("error") for r in reasons.values())
    rep.check(got == n, "%d reasons for %r, %d expected: %s" % (got, what, n,
                                                               [r.get("message") for r in reasons.values()]))
for job, r in reasons.items():
    path = os.path.join(sp.failed, job + ".dcm")
    rep.check(os.path.lexists(path), "reason without its entry: %s" % job)
# Everything archived is a regular file; no link was followed.
for n in os.listdir(sp.archive):
    p = os.path.join(sp.archive, n)
    rep.check(stat.S_ISREG(os.lstat(p).st_mode), "archived something that is not a file: %s" % n)
    rep.check(open(p, "rb").read() != secret_bytes, "the outside file was archived: %s" % n)
rows = sp.clips()
rep.check(len(rows) == expect_good and all(r["status"] == "done" for r in rows),
          "database: %d rows (%d good files): %s" % (len(rows), expect_good,
                                                     sorted(set(r["status"] for r in rows))))
rep.check(open(secret, "rb").read() == secret_bytes, "the outside file was changed")
rep.check(sp.wait_log("removed an emptied folder from the inbox", 1), "folder removal not logged")

# 3. The lock.  A second daemon on the same spool: exit 3, naming the first.
first = sp.proc.pid
env = dict(os.environ)
env.pop("NOTIFY_SOCKET", None)
r = subprocess.run([dl.ECHONETD, "-c", sp.site.conf], capture_output=True, timeout=60 * slow, env=env)
rep.check(r.returncode == 3, "second daemon exit %d" % r.returncode)
rep.check(b"another echonetd (pid %d) is using this spool" % first in r.stderr,
          "second daemon's message: %r" % r.stderr[-300:])
sp.deliver(good(os.path.join(gen, "after_lock.dcm")))
total += 1
rep.check(sp.wait_settled(total, 60 * slow) and sp.counts()[2] == expect_good + 1,
          "the first daemon stopped working: %s" % (sp.counts(),))
# A SIGKILLed daemon's lock is free at once.
sp.proc.kill()
sp.proc.wait()
sp.start()
rep.check(sp.proc.poll() is None and sp.wait_log("started:", 1), "no start after a SIGKILL")
rep.check(sp.stop() == 0, "stop")
so.close()

blob = sp.log() + b"".join(open(os.path.join(sp.failed, j + ".reason"), "rb").read()
                           for j in reasons)
for n in names:
    rep.check(n.encode() not in blob, "delivered name %r in a log or reason" % n)
for s in small["phi_strings"]:
    rep.check(s.encode() not in blob, "PHI %r in a log or reason" % s)
sp.close()
rep.finish()
