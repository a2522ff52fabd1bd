"""echonetd-recv against DCMTK's own peers (echoscu, storescu): what it
accepts arrives in the inbox whole and bit for bit; what it refuses gets a
clear status (association rejection or C-STORE status) and one log line;
a transfer cut by the peer, a stalled peer, and a SIGKILL of the receiver
mid-transfer leave nothing half-written in the inbox, lose nothing that was
acknowledged, and store nothing twice; no identifier reaches the log."""
import os
import signal
import sys
import tempfile
import time

import numpy as np
import pydicom
from pydicom.uid import generate_uid

import enlib
import netlib

rep = enlib.Report("net_recv")
DATA = enlib.TESTDATA
work = tempfile.TemporaryDirectory(prefix="en-net-data-")
W = work.name


def data(name):
    return os.path.join(DATA, name)


def variant(src, dst, sop_class=None, frames=None, seed=0):
    """A copy of src with new UIDs (another instance), optionally of another
    SOP class or with `frames` frames of noise (a large instance)."""
    ds = pydicom.dcmread(src)
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[dst, str(seed)])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if sop_class:
        ds.SOPClassUID = sop_class
        ds.file_meta.MediaStorageSOPClassUID = sop_class
    if frames:
        rng = np.random.default_rng(seed)
        ds.NumberOfFrames = frames
        ds.PixelData = rng.integers(0, 255, (frames, ds.Rows, ds.Columns), np.uint8).tobytes()
    ds.save_as(dst)
    return dst


def basic_text_sr(dst):
    """A minimal Basic Text SR: the receiver must take SR instances too."""
    from pydicom.dataset import Dataset, FileMetaDataset
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[dst])
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[dst, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[dst, "series"])
    ds.Modality = "SR"
    ds.PatientName, ds.PatientID = "SRTEST^ONLY", "SR-0042"
    ds.ValueType, ds.ContinuityOfContent = "CONTAINER", "SEPARATE"
    cn = Dataset()
    cn.CodeValue, cn.CodingSchemeDesignator, cn.CodeMeaning = "18748-4", "LN", "Diagnostic imaging report"
    ds.ConceptNameCodeSequence = [cn]
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.save_as(dst, write_like_original=False)
    return dst


def same_dataset(a, b):
    da, db = pydicom.dcmread(a), pydicom.dcmread(b)
    return (da.file_meta.TransferSyntaxUID == db.file_meta.TransferSyntaxUID and
            da == db)


def by_uid(files):
    out = {}
    for f in files:
        out.setdefault(netlib.sop_uid(f), []).append(f)
    return out


sent = []   # every file offered to a receiver: their identifiers must stay out of the logs


# ---- 1. association refusals and C-ECHO --------------------------------
rcv = netlib.Receiver(allow="US1, ORTHANC")
try:
    rcv.start()
    r = rcv.echoscu()
    rep.check(r.returncode == 0, "C-ECHO from an allowed AE title: rc %d %s" % (r.returncode, r.stderr))
    r = rcv.echoscu(aet="INTRUDER")
    rep.check(r.returncode != 0 and "Calling AE Title Not Recognized" in r.stderr,
              "unknown calling AE title not rejected: %s" % r.stderr)
    r = rcv.echoscu(aec="SOMEONEELSE")
    rep.check(r.returncode != 0 and "Called AE Title Not Recognized" in r.stderr,
              "wrong called AE title not rejected: %s" % r.stderr)
    time.sleep(0.3)
    log = rcv.log()
    lines = [l for l in log.splitlines() if "INTRUDER" in l]
    rep.check(len(lines) == 1 and "refused" in lines[0] and "[recv] allow" in lines[0],
              "one refusal line for the unknown AE title: %r" % lines)
    lines = [l for l in log.splitlines() if "SOMEONEELSE" in l]
    rep.check(len(lines) == 1 and "refused" in lines[0], "one line for the wrong called AE: %r" % lines)

    # ---- 2. what an echo study holds arrives whole, bit for bit --------
    files = [variant(data("us_mf_mono2_explicit.dcm"), os.path.join(W, "usmf.dcm")),
             variant(data("us_single_rgb_explicit.dcm"), os.path.join(W, "us.dcm")),
             variant(data("sc_mf_mono2_explicit.dcm"), os.path.join(W, "sc.dcm")),
             variant(data("us_mf_mono2_explicit.dcm"), os.path.join(W, "volume.dcm"),
                     sop_class="1.2.840.10008.5.1.4.1.1.6.2"),   # Enhanced US Volume
             basic_text_sr(os.path.join(W, "sr.dcm"))]
    jpeg = variant(data("us_mf_rgb_jpeg_baseline.dcm"), os.path.join(W, "jpeg.dcm"))
    deflated = variant(data("us_mf_mono2_deflate.dcm"), os.path.join(W, "deflate.dcm"))
    sent += files + [jpeg, deflated]
    # -R: propose what the files hold (storescu's default list lacks
    # Enhanced US Volume).
    r = rcv.storescu(files, extra=["-R"])
    rep.check(r.returncode == 0 and len(netlib.acked(r.stdout)) == len(files),
              "storescu of %d echo instances: rc %d\n%s" % (len(files), r.returncode, r.stdout[-1500:]))
    r1 = rcv.storescu([jpeg], extra=["-xy"])
    r2 = rcv.storescu([deflated], extra=["-xd"])
    rep.check(r1.returncode == 0 and r2.returncode == 0, "JPEG / deflated instances: %s %s" %
              (r1.stdout[-600:], r2.stdout[-600:]))
    got = by_uid(rcv.inbox_files())
    for f in files + [jpeg, deflated]:
        copies = got.get(netlib.sop_uid(f), [])
        rep.check(len(copies) == 1, "%s: %d copies in the inbox" % (os.path.basename(f), len(copies)))
        if copies:
            rep.check(same_dataset(f, copies[0]),
                      "%s arrived changed (data set or transfer syntax)" % os.path.basename(f))
    rep.check(all(os.path.basename(p).startswith("r") and p.endswith(".dcm")
                  for p in rcv.inbox_files()), "inbox names are the receiver's own")
    rep.check(rcv.staging_files() == [], "staging left: %s" % rcv.staging_files())

    # ---- 3. a SOP class echonetd cannot use: 0122H, one line ------------
    before = len(rcv.inbox_files())
    ct = [variant(data("us_single_rgb_explicit.dcm"), os.path.join(W, "ct%d.dcm" % i),
                  sop_class="1.2.840.10008.5.1.4.1.1.2", seed=i) for i in range(2)]
    sent += ct
    r = rcv.storescu(ct)
    rep.check(r.stdout.count("Refused: SOPClassNotSupported") == 2,
              "CT instances not refused with 0122H: %s" % r.stdout[-800:])
    rep.check(len(rcv.inbox_files()) == before, "a refused instance reached the inbox")
    time.sleep(0.3)
    lines = [l for l in rcv.log().splitlines() if "CTImageStorage" in l]
    rep.check(len(lines) == 1 and "not a SOP class echonetd uses" in lines[0],
              "two CT refusals on one association: one line expected, got %r" % lines)

    # ---- 4. a peer cut mid-transfer: nothing half-written ---------------
    big = variant(data("us_mf_mono2_explicit.dcm"), os.path.join(W, "big.dcm"), frames=500, seed=7)
    sent.append(big)
    before = len(rcv.inbox_files())
    p = rcv.storescu([big], background=True)
    rep.check(netlib.wait_for_staging_bytes(rcv, 1 << 20, proc=p), "transfer never started")
    p.kill()
    p.wait()
    rep.check(rcv.wait_log("nothing of it kept", 15), "no line for the cut transfer")
    rep.check(len(rcv.inbox_files()) == before and rcv.staging_files() == [],
              "cut transfer left files: inbox %d->%d, staging %s" %
              (before, len(rcv.inbox_files()), rcv.staging_files()))

    # ---- 5. reload: a new peer is allowed without a restart --------------
    r = rcv.echoscu(aet="NEWCART")
    rep.check(r.returncode != 0, "NEWCART accepted before it was allowed")
    rcv.opts["allow"] = "US1 ORTHANC NEWCART"
    rcv.write_conf()
    rcv.proc.send_signal(signal.SIGHUP)
    rep.check(rcv.wait_log("reloaded", 10), "no reload line")
    r = rcv.echoscu(aet="NEWCART")
    rep.check(r.returncode == 0, "NEWCART refused after the reload: %s" % r.stderr)
    rep.check(rcv.stop() == 0, "SIGTERM: exit status")
finally:
    log1 = rcv.log()
    rcv.close()


# ---- 6. limits: instance size, a stalled peer, too many associations ----
rcv = netlib.Receiver(allow="US1", max_associations=1, timeout_s=3)
rcv.limits = {"max_file_mb": 2}
rcv.write_conf()
try:
    rcv.start()
    r = rcv.storescu([data("us_mf_mono2_explicit.dcm")])
    rep.check("Refused: OutOfResources" in r.stdout, "over max_file_mb not refused with A700: %s"
              % r.stdout[-800:])
    rep.check(rcv.inbox_files() == [] and rcv.staging_files() == [], "oversized instance kept")
    rep.check(rcv.wait_log("larger than 2 MiB", 5), "no line for the oversized instance")
    # A peer that stops mid-instance holds the only association slot...
    small = variant(data("us_mf_mono2_explicit.dcm"), os.path.join(W, "stall.dcm"), frames=100,
                    seed=11)   # ~30 MB: several socket buffers
    rcv.limits = {"max_file_mb": 2048}
    rcv.write_conf()
    rcv.proc.send_signal(signal.SIGHUP)
    rcv.wait_log("reloaded", 10)
    p = rcv.storescu([small], background=True)
    rep.check(netlib.wait_for_staging_bytes(rcv, 1 << 20, proc=p), "stalled transfer never started")
    p.send_signal(signal.SIGSTOP)
    # ...so a second peer is turned away for now (transient rejection)...
    r = rcv.echoscu()
    rep.check(r.returncode != 0 and "Local Limit Exceeded" in r.stderr,
              "association past max_associations not rejected: %s" % r.stderr)
    rep.check(rcv.wait_log("already running", 5), "no line for the busy rejection")
    # ...until the receiver drops the silent peer after timeout_s.
    rep.check(rcv.wait_log("nothing of it kept", 20), "stalled peer never dropped")
    rep.check(rcv.staging_files() == [] and rcv.inbox_files() == [], "stalled transfer kept files")
    p.send_signal(signal.SIGKILL)
    p.wait()
    # The slot is free once the dropped association's thread has ended.
    t0 = time.time()
    while rcv.echoscu().returncode != 0 and time.time() - t0 < 5:
        time.sleep(0.2)
    rep.check(rcv.echoscu().returncode == 0, "slot not freed after the stalled peer was dropped")
finally:
    log2 = rcv.log()
    rcv.close()


# ---- 7. SIGKILL of the receiver mid-transfer ---------------------------
rcv = netlib.Receiver(allow="US1")
try:
    rcv.start()
    study = [variant(data("us_mf_mono2_explicit.dcm"), os.path.join(W, "k0.dcm"), seed=20),
             variant(data("us_single_rgb_explicit.dcm"), os.path.join(W, "k1.dcm"), seed=21),
             variant(data("us_mf_mono2_explicit.dcm"), os.path.join(W, "kbig.dcm"), frames=500,
                     seed=22),
             variant(data("sc_mf_mono2_explicit.dcm"), os.path.join(W, "k3.dcm"), seed=23)]
    sent += study
    p = rcv.storescu(study, background=True)
    # The third file is the large one: kill while it streams in.
    t0 = time.time()
    while time.time() - t0 < 60 and len(rcv.inbox_files()) < 2 and p.poll() is None:
        time.sleep(0.002)
    rep.check(netlib.wait_for_staging_bytes(rcv, 1 << 20, proc=p), "large transfer never started")
    rcv.proc.send_signal(signal.SIGKILL)
    rcv.proc.wait()
    out = p.communicate(timeout=120)[0]
    acked = netlib.acked(out)
    rep.check(len(acked) == 2, "expected the two files before the large one acknowledged, got %s"
              % acked)
    rep.check(len(rcv.staging_files()) == 1, "a killed transfer leaves its staging file: %s"
              % rcv.staging_files())
    got = by_uid(rcv.inbox_files())
    for f in acked:
        rep.check(len(got.get(netlib.sop_uid(f), [])) == 1, "acknowledged %s lost" % f)
    for f in rcv.inbox_files():
        ds = pydicom.dcmread(f)
        rep.check(len(ds.PixelData) > 0, "half file in the inbox: %s" % f)
    # Restart: the leftover is removed; the peer sends what was not acknowledged.
    rcv.start()
    rep.check("removed 1 unfinished transfer" in rcv.log(), "leftover not reported at start")
    rep.check(rcv.staging_files() == [], "leftover kept: %s" % rcv.staging_files())
    rest = [f for f in study if f not in acked]
    r = rcv.storescu(rest)
    rep.check(r.returncode == 0 and len(netlib.acked(r.stdout)) == len(rest),
              "resending after restart: %s" % r.stdout[-800:])
    got = by_uid(rcv.inbox_files())
    for f in study:
        copies = got.get(netlib.sop_uid(f), [])
        rep.check(len(copies) == 1, "%s stored %d times" % (os.path.basename(f), len(copies)))
        if copies:
            rep.check(same_dataset(f, copies[0]), "%s changed" % os.path.basename(f))
    rcv.stop()
finally:
    log3 = rcv.log()
    rcv.close()


# ---- 8. nothing identifying in any log line -----------------------------
secrets = set()
for f in sent:
    secrets |= netlib.identifiers(f)
for log in (log1, log2, log3):
    leaked = [s for s in secrets if s in log]
    rep.check(not leaked, "identifiers in the receiver's log: %s" % leaked[:3])
    rep.check(not netlib.sanitizer_errors(log), "sanitizer: %s" % netlib.sanitizer_errors(log)[:3])

# ---- 9. a bad setting is refused at start, naming it --------------------
rcv = netlib.Receiver(allow="US1 THIS_TITLE_IS_TOO_LONG")
try:
    rcv.start(wait=False)
    rc = rcv.proc.wait(30)
    rep.check(rc == 3 and "[recv] allow" in rcv.log(), "bad allow-list: rc %s, %s" % (rc, rcv.log()))
finally:
    rcv.close()
work.cleanup()
rep.finish()
