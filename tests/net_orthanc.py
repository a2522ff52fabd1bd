"""Orthanc, playing the PACS, pushes a simulated echo study to echonetd-recv
the way its auto-routing does (REST /modalities/.../store, a C-STORE SCU
of its own): every instance arrives in the inbox whole and unchanged, the
study's instances over one association and over several; an AE title not
on the allow-list is turned away and Orthanc says so; the log holds no
identifier.  Exits 77 (skipped) where Orthanc is not installed."""
import os
import sys
import tempfile

import pydicom

import enlib
import netlib

if not os.path.exists(netlib.ORTHANC):
    print("skip: Orthanc not installed (Debian package orthanc)")
    sys.exit(77)

rep = enlib.Report("net_orthanc")
DATA = enlib.TESTDATA
work = tempfile.TemporaryDirectory(prefix="en-net-orthanc-")
rcv = netlib.Receiver(allow="ORTHANC")
pacs = None
try:
    rcv.start()
    pacs = netlib.Orthanc(work.name, aet="ORTHANC",
                          modalities={"echonetd": ("ECHONETD", rcv.port),
                                      "wrongname": ("NOTECHONETD", rcv.port)})
    # One study as an echo cart sends it: multi-frame loops in several
    # encodings, a single-frame image, a secondary capture.
    srcs = [os.path.join(DATA, n) for n in (
        "us_mf_mono2_explicit.dcm", "us_mf_rgb_jpeg_baseline.dcm", "us_mf_mono2_jpegls.dcm",
        "us_mf_mono2_odd_rle.dcm", "us_single_rgb_explicit.dcm", "sc_mf_mono2_explicit.dcm")]
    study = netlib.make_study(srcs, os.path.join(work.name, "study"), seed=12)
    ids = [pacs.upload(f)["ID"] for f in study]
    study_id = pacs.get("/instances/%s/study" % ids[0])["ID"]

    # The whole study, one association.
    ok, ans = pacs.store("echonetd", [study_id])
    rep.check(ok and ans.get("FailedInstancesCount", 1) == 0 and ans.get("InstancesCount") == len(study),
              "Orthanc store of the study: %s" % ans)
    want = {netlib.sop_uid(f): f for f in study}
    got = {}
    for p in rcv.inbox_files():
        got.setdefault(netlib.sop_uid(p), []).append(p)
    rep.check(sorted(got) == sorted(want), "inbox holds %d of %d instances" % (len(got), len(want)))
    for uid, f in want.items():
        copies = got.get(uid, [])
        if not rep.check(len(copies) == 1, "%s: %d copies" % (os.path.basename(f), len(copies))):
            continue
        a, b = pydicom.dcmread(f), pydicom.dcmread(copies[0])
        rep.check(a.file_meta.TransferSyntaxUID == b.file_meta.TransferSyntaxUID,
                  "%s: sent as %s, stored as %s (Orthanc transcoded it)" %
                  (os.path.basename(f), a.file_meta.TransferSyntaxUID, b.file_meta.TransferSyntaxUID))
        rep.check(a.PixelData == b.PixelData and a.StudyInstanceUID == b.StudyInstanceUID,
                  "%s: pixels or study changed on the way" % os.path.basename(f))
    rep.check(rcv.staging_files() == [], "staging not empty")

    # Clips of one study over several associations (one per instance, as
    # routing rules that fire per instance do): same study, all arrive.
    more = netlib.make_study(srcs[:3], os.path.join(work.name, "study2"), seed=13,
                             patient=("ROUTED^PER^INSTANCE", "NET-0002"), accession="ACC0002")
    before = len(rcv.inbox_files())
    results = []
    for f in more:
        iid = pacs.upload(f)["ID"]
        results.append(pacs.store("echonetd", [iid])[0])
    rep.check(all(results), "per-instance stores: %s" % results)
    rep.check(len(rcv.inbox_files()) == before + len(more), "per-instance pushes: %d new files" %
              (len(rcv.inbox_files()) - before))
    assoc_lines = [l for l in rcv.log().splitlines() if "association from AE 'ORTHANC'" in l and
                   "released" in l]
    # (Orthanc may open more than one association for a study: one per
    # set of SOP classes and transfer syntaxes it negotiates.)
    rep.check(len(assoc_lines) >= 1 + len(more), "%d associations logged, expected at least %d"
              % (len(assoc_lines), 1 + len(more)))

    # A SOP class echonetd cannot use: Orthanc hears the refusal (0122H).
    ct_src = os.path.join(work.name, "ct.dcm")
    ds = pydicom.dcmread(srcs[4])
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.save_as(ct_src)
    ct = netlib.make_study([ct_src], os.path.join(work.name, "ct"), seed=14)
    before = len(rcv.inbox_files())
    ok, ans = pacs.store("echonetd", [pacs.upload(ct[0])["ID"]])
    rep.check(not ok, "a CT image was accepted: %s" % ans)
    rep.check(len(rcv.inbox_files()) == before, "the CT image reached the inbox")
    rep.check(rcv.wait_log("CTImageStorage", 5), "no refusal line for the CT image")

    # Orthanc calling us by the wrong name: refused, nothing stored.
    before = len(rcv.inbox_files())
    ok, ans = pacs.store("wrongname", [study_id])
    rep.check(not ok, "store to the wrong called AE title succeeded: %s" % ans)
    rep.check(len(rcv.inbox_files()) == before, "a refused association stored something")
    rep.check(rcv.wait_log("called AE title 'NOTECHONETD'", 5), "no refusal line for the wrong name")

    secrets = set()
    for f in study + more + ct:
        secrets |= netlib.identifiers(f)
    leaked = [s for s in secrets if s in rcv.log()]
    rep.check(not leaked, "identifiers in the log: %s" % leaked[:3])
    rep.check(rcv.stop() == 0, "receiver exit status")
    rep.check(not netlib.sanitizer_errors(rcv.log()), "sanitizer: %s" %
              netlib.sanitizer_errors(rcv.log())[:3])
finally:
    if pacs:
        pacs.close()
    rcv.close()
    work.cleanup()
rep.finish()
