"""echonetd against a symlink swapped in after its checks, for real: for 20
seconds (10 under EN_SANITIZE) one name in the inbox flips, as fast as
renameat2(RENAME_EXCHANGE) goes, between a hard link of a DICOM inside the
spool and a symbolic link to a DICOM outside it, while ordinary files keep
arriving; the daemon pauses 1 ms between its last check of a file and the
claim (a test-only hook), so that swaps land in between.

Whatever the interleaving of the daemon's look, wholeness walk, claim and
the child's read: the outside DICOM is never processed (no study of it in
the database) nor archived, archive/ holds only regular files with inside
content, everything in failed/ is a symbolic link with its reason, and
every ordinary file is archived (nothing lost)."""
import ctypes
import errno
import hashlib
import os
import stat
import threading
import time

import daemonlib as dl
import enlib

rep = enlib.Report("daemon_race")
san = dl.sanitized()
slow = 4 if san else 1
seconds = 10 if san else 20
manifest = enlib.load_manifest()
small = sorted([m for m in manifest if m["expect"] == "ok" and 12 <= m["frames"] <= 16],
               key=lambda m: (m["frames"], m["rows"] * m["cols"]))[0]
src = os.path.join(enlib.TESTDATA, small["file"])

sp = dl.Spool(settle_ms=100, rescan_ms=300)
gen = os.path.join(sp.dir, "gen")
outside = os.path.join(sp.dir, "outside")
os.makedirs(gen)
os.makedirs(outside)


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


secret = os.path.join(outside, "Outside_Secret.dcm")
dl.with_new_uids(src, secret, "race-outside")
inside = os.path.join(sp.staging, "inside.dcm")
dl.with_new_uids(src, inside, "race-inside")
ordinary = []
for i in range(8):
    p = os.path.join(gen, "ordinary%d.dcm" % i)
    dl.with_new_uids(src, p, "race-ordinary-%d" % i)
    ordinary.append(p)
allowed = {digest(inside)} | {digest(p) for p in ordinary}
secret_digest = digest(secret)

stop = threading.Event()
swaps = [0, 0]      # exchanges, names put back after the daemon took one
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, RENAME_EXCHANGE = -100, 2


def put(path, kind):
    """A new hard link of the inside DICOM, or symbolic link to the outside
    one, renamed in at path."""
    tmp = os.path.join(sp.staging, ".put")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    if kind == "link":
        os.symlink(secret, tmp)
    else:
        os.link(inside, tmp)
    os.rename(tmp, path)


def swapper():
    """As an attacker would: the name in the inbox and a dot-file beside it
    (which the daemon ignores) are exchanged atomically, as fast as the
    kernel goes; whichever one the daemon takes is put back."""
    name = os.path.join(sp.inbox, "swap_Doe.dcm")
    other = os.path.join(sp.inbox, ".swap_Doe.dcm")
    put(name, "file")
    put(other, "link")
    a, b = name.encode(), other.encode()
    while not stop.is_set():
        for _ in range(1000):
            if libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) == 0:
                swaps[0] += 1
                continue
            if ctypes.get_errno() != errno.ENOENT:
                raise OSError(ctypes.get_errno(), "renameat2")
            # The daemon took the name: put back the kind it took.
            put(name, "file" if os.path.islink(other) else "link")
            swaps[1] += 1
            break
    os.unlink(other)


# The test-only pause between the daemon's last check and its claim makes
# the interleaving the race needs common rather than lucky.
sp.start(env={"EN_DAEMON_FAULT": "claim-delay:1"})
t = threading.Thread(target=swapper)
t.start()
t0 = time.time()
k = 0
while time.time() - t0 < seconds:
    if k < len(ordinary) and time.time() - t0 > k * seconds / len(ordinary):
        sp.deliver(ordinary[k])
        k += 1
    time.sleep(0.05)
stop.set()
t.join()
while k < len(ordinary):
    sp.deliver(ordinary[k])
    k += 1
print("swapper: %d exchanges, %d names put back in %d s" % (swaps[0], swaps[1], seconds))

# Let it drain: the inbox ends empty, work/ too.
t0 = time.time()
while time.time() - t0 < 120 * slow:
    c = sp.counts()
    if not os.listdir(sp.inbox) and c[1] == 0:
        break
    time.sleep(0.2)
time.sleep(1)
c = sp.counts()
rep.check(not os.listdir(sp.inbox) and c[1] == 0, "not drained: %s" % (c,))

archived = [os.path.join(sp.archive, n) for n in os.listdir(sp.archive)]
kinds = [stat.S_IFMT(os.lstat(p).st_mode) for p in archived]
rep.check(all(k == stat.S_IFREG for k in kinds), "archived something that is not a regular file")
digests = [digest(p) for p in archived if stat.S_ISREG(os.lstat(p).st_mode)]
rep.check(secret_digest not in digests, "the outside DICOM was archived")
rep.check(all(d in allowed for d in digests), "archived content that was never delivered")
for p in ordinary:
    rep.check(digest(p) in digests, "lost an ordinary file: %s" % os.path.basename(p))

failed = [n[:-4] for n in os.listdir(sp.failed) if n.endswith(".dcm")]
reasons = sp.reasons()
links = [j for j in failed if stat.S_ISLNK(os.lstat(os.path.join(sp.failed, j + ".dcm")).st_mode)]
rep.check(len(links) == len(failed), "failed/ holds %d entries that are not symbolic links"
          % (len(failed) - len(links)))
rep.check(all(j in reasons and "a symbolic link" in reasons[j].get("message", "") for j in failed),
          "a failed entry without a reason naming a symbolic link")
swapped = sum("just before it was taken" in r.get("message", "") for r in reasons.values())
returned = sp.log().count(b"returned to the inbox to be checked")
print("daemon: %d inside copies archived, %d symbolic links quarantined (%d swapped in between "
      "the check and the claim), %d other files returned to the inbox"
      % (len(digests) - len(ordinary), len(links), swapped, returned))
rep.check(swapped > 0, "the race never happened: no symbolic link swapped in after the check")

# The database: one study per delivered DICOM inside, none for the outside one.
rows = sp.clips()
studies = {r["pseudonym"] for r in rows}
rep.check(len(studies) == 1 + len(ordinary), "%d studies in the database, %d delivered"
          % (len(studies), 1 + len(ordinary)))
rep.check(all(r["status"] == "done" for r in rows), "rows not done: %s"
          % sorted(set(r["status"] for r in rows)))
rep.check(digest(secret) == secret_digest and os.path.exists(secret), "the outside file changed")
rep.check(sp.stop() == 0, "stop")

blob = sp.log()
for s in small["phi_strings"] + ["swap_Doe", "Outside_Secret"]:
    rep.check(s.encode() not in blob, "%r in the log" % s)
sp.close()
rep.finish()
