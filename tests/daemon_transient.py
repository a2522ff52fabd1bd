"""echonetd through a full disk: transient errors wait, they do not use up
attempts.

The output folder is made to refuse writes for a while: a small tmpfs
filled to the last byte when this test may mount one (root, a system that
allows it), else a file-size limit put on the running daemon with prlimit
(RLIMIT_FSIZE: every write past 4 KiB fails with EFBIG, the database's
too; its children inherit it) and lifted the same way.  Good studies
delivered meanwhile fail with a transient error (exit 75): the daemon
backs off (1 s, 2 s, 4 s, ...), takes no file and starts no study while it
waits, and counts no attempt.  When the space comes back, every study is
done: none in failed/, although max_attempts is 2."""
import atexit
import os
import re
import resource
import subprocess
import time

import daemonlib as dl
import enlib

rep = enlib.Report("daemon_transient")
slow = 4 if dl.sanitized() else 1
manifest = enlib.load_manifest()
small = sorted([m for m in manifest if m["expect"] == "ok" and 12 <= m["frames"] <= 16],
               key=lambda m: (m["frames"], m["rows"] * m["cols"]))[0]
src = os.path.join(enlib.TESTDATA, small["file"])

sp = dl.Spool(max_attempts=2, min_free_mb=0, concurrency=2, study_timeout_s=60 * slow)
gen = os.path.join(sp.dir, "gen")
os.makedirs(gen)
files = []
for i in range(6):
    p = os.path.join(gen, "full%d.dcm" % i)
    dl.with_new_uids(src, p, "transient-%d" % i)
    files.append(p)

mounted = False
if os.environ.get("EN_TEST_NO_MOUNT", "") in ("", "0") and os.geteuid() == 0:
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs", sp.site.out],
                       capture_output=True)
    mounted = r.returncode == 0
    if mounted:
        # Should the test die half-way (the normal end unmounts itself).
        atexit.register(lambda: os.path.ismount(sp.site.out) and
                        subprocess.run(["umount", "-l", sp.site.out]))
    else:
        print("cannot mount a tmpfs here (%s): using a file-size limit" % r.stderr.decode().strip())
filler = os.path.join(sp.site.out, "filler")
if mounted:
    print("output folder on a 2 MiB tmpfs, filled")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    for chunk in (65536, 4096, 512, 1):     # to the last byte
        try:
            while True:
                os.write(fd, b"\0" * chunk)
        except OSError:
            pass
    os.close(fd)
    sp.start()
else:
    print("daemon under RLIMIT_FSIZE = 4 KiB (set and lifted with prlimit)")
    sp.start()
    resource.prlimit(sp.proc.pid, resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))

try:
    for p in files[:4]:
        sp.deliver(p)
    # Back-off grows while the disk stays full.
    t0 = time.time()
    waits = []
    while time.time() - t0 < 60 * slow:
        waits = [int(x) for x in re.findall(rb"no file is taken for (\d+) s", sp.log())]
        if waits and max(waits) >= 4:
            break
        time.sleep(0.05)
    print("back-off waits logged: %s" % waits)
    rep.check(waits[:3] == [1, 2, 4], "back-off did not double from 1 s: %s" % waits)
    # While it waits, a new file stays in the inbox.
    sp.deliver(files[4])
    time.sleep(1.0)
    rep.check(len(os.listdir(sp.inbox)) == 1, "a file was taken during the back-off: %s"
              % os.listdir(sp.inbox))
    c = sp.counts()
    rep.check(c[3] == 0, "a study went to failed/ while the disk was full: %s" % (c,))
    rep.check(b"attempt 1 of 2 failed" not in sp.log(), "a transient error was counted")
finally:
    # The space comes back.
    if mounted:
        os.unlink(filler)
    else:
        resource.prlimit(sp.proc.pid, resource.RLIMIT_FSIZE,
                         (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
sp.deliver(files[5])
ok = sp.wait_settled(len(files), 120 * slow)
c = sp.counts()
rep.check(ok and c[2] == len(files) and c[3] == 0, "after the disk came back: %s" % (c,))
rep.check(b"the transient errors are over" in sp.log(), "end of the transient errors not logged")
rows = sp.clips()
rep.check(len(rows) == len(files) and all(r["status"] == "done" for r in rows),
          "database: %s" % [(r["status"]) for r in rows])
rep.check(not [n for n in os.listdir(sp.work) if n.endswith(".attempts")], "sidecars left in work/")
rep.check(sp.stop() == 0, "stop")
blob = sp.log()
for s in small["phi_strings"]:
    rep.check(s.encode() not in blob, "PHI %r in the log" % s)
if mounted:
    subprocess.run(["umount", sp.site.out])
sp.close()
rep.finish()
