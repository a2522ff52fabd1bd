"""net_hostile.py - echonetd-recv against data sets made to crash a DICOM
parser (issue 12 hardening): sequences nested 7000 deep, the way DCMTK's
recursive parser overflows its stack, sent over C-STORE.

The receiver never parses a data set: DIMSE_receiveDataSetInFile streams it
bit for bit into the staging file, and en_dicom_scan walks that file (no
recursion) before anything is acknowledged.  What the reader would refuse
before parsing must not reach the inbox either: the peer hears a failure
status (C000, Cannot understand), the journal gets one line, the
association goes on (a good instance after it on the same association is
stored), and the receiver keeps running.

The files are built byte by byte by tests/dicom_hostile.py's builder
(pydicom cannot write 7000 levels).  DCMTK's storescu is the peer: it
reads and re-encodes the file recursively itself, so it runs with an
unlimited stack (its own process, not the receiver's) and takes ~20 s to
encode 7000 levels; the receiver's timeout is raised to match.
"""
import os
import resource
import subprocess
import sys
import tempfile
import time

import enlib
import netlib
import dicom_hostile as H

rep = enlib.Report("net_hostile")
work = tempfile.TemporaryDirectory(prefix="en-net-hostile-")
W = work.name


def write(name, data):
    p = os.path.join(W, name)
    with open(p, "wb") as f:
        f.write(data)
    return p


def big_stack():
    resource.setrlimit(resource.RLIMIT_STACK, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def storescu(rcv, files):
    cmd = ["storescu", "-v", "-nh", "-aet", "US1", "-aec", "ECHONETD", "127.0.0.1",
           str(rcv.port)] + files
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=600, preexec_fn=big_stack)


def statuses(out):
    """(file, status text) per C-STORE, from storescu -v."""
    res, cur = [], None
    for line in out.splitlines():
        if "Sending file:" in line:
            cur = line.split("Sending file:", 1)[1].strip()
        elif "Received Store Response" in line and cur:
            res.append((cur, line.split("Received Store Response", 1)[1].strip()))
            cur = None
    return res


deep = write("deep7000.dcm", H.part10(H.EXPLICIT, H.head() + H.nest_undefined(H.DEPTH)))
over = write("deep65.dcm", H.part10(H.EXPLICIT, H.head() + H.nest_undefined(H.LIMIT + 1)))
at = write("deep64.dcm", H.part10(H.EXPLICIT, H.head() + H.nest_undefined(H.LIMIT)))
implicit = write("implicit65.dcm", H.part10(H.IMPLICIT, H.head(False) +
                                            H.nest_defined(H.LIMIT + 1, False)))
good = os.path.join(enlib.TESTDATA, "us_single_rgb_explicit.dcm")

rcv = netlib.Receiver(allow="US1", timeout_s=120)
try:
    rcv.start()
    # ---- 1. 7000 levels, then a good instance on the same association ------
    t0 = time.time()
    r = storescu(rcv, [deep, good])
    st = statuses(r.stdout)
    rep.check(len(st) == 2, "storescu saw %d responses: %s" % (len(st), r.stdout[-1200:]))
    if len(st) == 2:
        rep.check(st[0][0] == deep and "Error: CannotUnderstand" in st[0][1],
                  "7000 levels: status %r, expected C000 (Cannot understand)" % (st[0],))
        rep.check(st[1][0] == good and "(Success)" in st[1][1],
                  "the instance after it on the same association: %r" % (st[1],))
    rep.check(rcv.proc.poll() is None, "receiver died (rc %s): %s" % (rcv.proc.poll(), rcv.log()))
    inbox = rcv.inbox_files()
    rep.check(len(inbox) == 1 and netlib.sop_uid(inbox[0]) == netlib.sop_uid(good),
              "inbox holds %d files, expected only the good instance" % len(inbox))
    rep.check(rcv.staging_files() == [], "staging left: %s" % rcv.staging_files())
    time.sleep(0.3)
    lines = [l for l in rcv.log().splitlines() if "instance refused" in l]
    rep.check(len(lines) == 1 and "nested deeper than 64" in lines[0] and
              "before any parsing" in lines[0], "one refusal line naming the nesting: %r" % lines)
    print("7000 levels sent and refused in %.1f s (storescu's encoding is most of it)"
          % (time.time() - t0))

    # ---- 2. the bound is the reader's: 64 levels stored, 65 refused ---------
    before = len(rcv.inbox_files())
    r = storescu(rcv, [at, over, implicit])
    st = dict(statuses(r.stdout))
    rep.check("(Success)" in st.get(at, ""), "64 levels not stored: %r" % st.get(at))
    rep.check("CannotUnderstand" in st.get(over, ""), "65 levels not refused: %r" % st.get(over))
    rep.check("CannotUnderstand" in st.get(implicit, ""),
              "65 levels, implicit VR defined lengths, not refused: %r" % st.get(implicit))
    rep.check(len(rcv.inbox_files()) == before + 1, "inbox: %d -> %d, expected one more"
              % (before, len(rcv.inbox_files())))
    time.sleep(0.3)
    lines = [l for l in rcv.log().splitlines() if "instance refused" in l]
    rep.check(len(lines) == 2, "one refusal line per association, got %r" % lines)

    # ---- 3. still serving -----------------------------------------------------
    r = rcv.echoscu()
    rep.check(r.returncode == 0, "C-ECHO after the hostile instances: %s" % r.stderr)
    rep.check(rcv.stop() == 0, "SIGTERM: exit status")
    rep.check(not netlib.sanitizer_errors(rcv.log()),
              "sanitizer: %s" % netlib.sanitizer_errors(rcv.log())[:3])
finally:
    rcv.close()
work.cleanup()
rep.finish()
