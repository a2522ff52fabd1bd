"""The result objects echonetd sends back (en_sr.h), read back with DCMTK's
dsrdump and dcmdump, pydicom and Orthanc: the SR is a Comprehensive SR with
TID 5200 at its root, LVEF (18043-0, LN) in % (UCUM) for the study (Mean)
and for every beat (Beat Number), the algorithm's name, version and every
model's SHA-256, VerificationFlag UNVERIFIED, PreliminaryFlag PRELIMINARY,
a not-for-diagnosis comment exactly when the phantom models made it; the
Encapsulated PDF holds the PDF byte for byte; both carry the original
study's UID, patient and accession number, so Orthanc files them in the
original study; the same result version gives the same UIDs, a new version
new ones; bad input is refused without quoting identifiers."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pydicom

import enlib
import netlib

MAKE = os.environ.get("EN_NET_SR_MAKE", os.path.join(enlib.TOP_BUILDDIR, "tests", "net-sr-make"))
rep = enlib.Report("net_sr")
work = tempfile.TemporaryDirectory(prefix="en-net-sr-")
W = work.name
SHA_SEG, SHA_EF = "a1" * 32, "b2" * 32
PDF = os.path.join(W, "report.pdf")
with open(PDF, "wb") as f:   # a small real PDF: one page, one line of text
    f.write(b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
            b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
            b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 100]>>endobj\n"
            b"trailer<</Root 1 0 R>>\n%%EOF\n")

STUDY = {"--study-uid": "1.2.826.0.1.3680043.8.498.77123", "--patient-id": "NET-SR-0042",
         "--patient-name": "TESTPATIENT^SRONLY", "--accession": "ACCSR0042",
         "--birth": "19700101", "--sex": "F", "--study-date": "20260101",
         "--study-time": "093000"}
BEATS = [54.1, 58.6, 55.0]


def make(out, version=1, phantom=True, extra=(), study=STUDY, pseudonym="0123456789abcdef"):
    args = [MAKE, "--seed", "%s/v%d" % (pseudonym, version), "--version", str(version),
            "--pseudonym", pseudonym, "--ef", "55.9", "--sr", out + ".sr.dcm",
            "--pdf", PDF, "--pdf-out", out + ".pdf.dcm",
            "--model", "segmentation:DeepLabV3-ResNet50:%s:phantom-trained default model, "
                       "not for clinical use" % SHA_SEG,
            "--model", "ejection fraction:R(2+1)D-18:%s:phantom-trained default model, "
                       "not for clinical use" % SHA_EF]
    for b in BEATS:
        args += ["--beat", str(b)]
    for k, v in study.items():
        args += [k, v]
    if phantom:
        args.append("--phantom")
    r = subprocess.run(args + list(extra), capture_output=True, text=True)
    uids = dict(l.split("=", 1) for l in r.stdout.split() if "=" in l)
    return r, uids


r, uids = make(os.path.join(W, "v1"))
rep.check(r.returncode == 0, "net-sr-make: %s" % r.stderr)
sr, pdf = os.path.join(W, "v1.sr.dcm"), os.path.join(W, "v1.pdf.dcm")

# ---- dsrdump: the document as DCMTK reads (and checks) it -----------------
d = subprocess.run(["dsrdump", "-v", sr], capture_output=True, text=True)
rep.check(d.returncode == 0 and not re.search(r"^(W|E):", d.stderr, re.M),
          "dsrdump complains: rc %d %s" % (d.returncode, d.stderr[-800:]))
out = d.stdout
for want in ("Comprehensive SR Document", "Verification Flag   : UNVERIFIED",
             "Preliminary Flag    : PRELIMINARY", "Completion Flag     : COMPLETE",
             '"Adult Echocardiography Procedure Report"',
             '(87878005,SCT,"Left Ventricle")', '(399064001,SCT,"2D mode")',
             '"Left Ventricular Ejection Fraction by US")="55.9" (%,UCUM,"%")',
             '(373098007,SCT,"Mean")', '"Algorithm Name")="echonetd EchoNet-Dynamic"',
             '"Algorithm Version")="0.1.0"', '(121007,DCM,"Device")'):
    rep.check(want in out, "dsrdump lacks %s" % want)
for i, b in enumerate(BEATS):
    rep.check('Fraction by US")="%.1f" (%%,UCUM,"%%")' % b in out, "beat %d EF missing" % (i + 1))
    rep.check('"Beat Number")="%d"' % (i + 1) in out, "beat number %d missing" % (i + 1))

# ---- pydicom: the header and the full texts dsrdump shortens --------------
ds = pydicom.dcmread(sr)
rep.check(ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33" and ds.Modality == "SR",
          "not a Comprehensive SR: %s" % ds.SOPClassUID)
rep.check(ds.StudyInstanceUID == STUDY["--study-uid"] and ds.PatientID == STUDY["--patient-id"] and
          str(ds.PatientName) == STUDY["--patient-name"] and
          ds.AccessionNumber == STUDY["--accession"], "SR is not in the original study")
rep.check(ds.ContentTemplateSequence[0].TemplateIdentifier == "5200" and
          ds.ContentTemplateSequence[0].MappingResource == "DCMR", "template identification")
rep.check(ds.SeriesInstanceUID == uids.get("sr_series") and
          ds.SOPInstanceUID == uids.get("sr_instance"), "SR UIDs differ from the derived ones")
rep.check(any(i.CodingSchemeDesignator == "99ECHONETD" for i in
              ds.CodingSchemeIdentificationSequence), "local coding scheme not declared")


def texts(item, out):
    for c in getattr(item, "ContentSequence", []):
        if c.ValueType == "TEXT":
            out.append((c.ConceptNameCodeSequence[0].CodeMeaning, c.TextValue))
        texts(c, out)
    return out


t = texts(ds, [])
params = [v for k, v in t if k == "Algorithm Parameters"]
rep.check(any(SHA_SEG in p and "DeepLabV3" in p for p in params) and
          any(SHA_EF in p and "R(2+1)D" in p for p in params),
          "model SHA-256s not in Algorithm Parameters: %s" % params)
comments = [v for k, v in t if k == "Comment"]
rep.check(any("NOT FOR DIAGNOSIS" in c for c in comments), "phantom result lacks the note")
rep.check(any("0123456789abcdef" in c and "version 1" in c for c in comments),
          "no echonetd reference in the comments")

# ---- the Encapsulated PDF ---------------------------------------------------
p = pydicom.dcmread(pdf)
body = open(PDF, "rb").read()
rep.check(p.SOPClassUID == "1.2.840.10008.5.1.4.1.1.104.1" and p.Modality == "DOC",
          "not an Encapsulated PDF: %s" % p.SOPClassUID)
rep.check(p.MIMETypeOfEncapsulatedDocument == "application/pdf" and
          p.EncapsulatedDocumentLength == len(body) and
          bytes(p.EncapsulatedDocument)[:len(body)] == body, "PDF bytes changed")
rep.check(p.StudyInstanceUID == STUDY["--study-uid"] and p.PatientID == STUDY["--patient-id"] and
          p.AccessionNumber == STUDY["--accession"], "PDF is not in the original study")
rep.check(p.SOPInstanceUID == uids.get("pdf_instance") and p.SeriesInstanceUID != ds.SeriesInstanceUID,
          "PDF UIDs: own series expected")
dd = subprocess.run(["dcmdump", "-q", pdf], capture_output=True, text=True)
rep.check(dd.returncode == 0 and "EncapsulatedPDFStorage" in dd.stdout, "dcmdump: %s" % dd.stderr)

# ---- UIDs: one set per result version ----------------------------------------
r2, again = make(os.path.join(W, "again"))
r3, v2 = make(os.path.join(W, "v2"), version=2, phantom=False)
rep.check(r2.returncode == 0 and again == uids, "same version, other UIDs: %s %s" % (again, uids))
rep.check(r3.returncode == 0 and not set(v2.values()) & set(uids.values()),
          "a new version reuses UIDs")
ds2 = pydicom.dcmread(os.path.join(W, "v2.sr.dcm"))
rep.check(not any("NOT FOR DIAGNOSIS" in v for k, v in texts(ds2, [])) and
          "NOT FOR DIAGNOSIS" not in ds2.SeriesDescription,
          "a result of real models carries the phantom note")
rep.check(all(re.fullmatch(r"2\.25\.\d{1,39}", u) for u in uids.values()), "UID form: %s" % uids)

# ---- refusals, and nothing identifying in them ----------------------------------
bad = dict(STUDY)
bad["--study-uid"] = "not a uid"
r4, _ = make(os.path.join(W, "bad"), study=bad)
rep.check(r4.returncode != 0 and "Study Instance UID" in r4.stderr and "not a uid" not in r4.stderr,
          "bad study UID: %s" % r4.stderr)
bad = dict(STUDY)
bad["--patient-id"] = "NET\\SECRET42"     # a backslash: two values where LO allows one
r5, _ = make(os.path.join(W, "bad2"), study=bad)
rep.check(r5.returncode != 0 and "patient ID" in r5.stderr and "SECRET42" not in r5.stderr,
          "bad patient ID: %s" % r5.stderr)
with open(os.path.join(W, "notpdf.pdf"), "w") as f:
    f.write("hello")
r6 = subprocess.run([MAKE, "--seed", "s", "--study-uid", STUDY["--study-uid"], "--ef", "50",
                     "--sr", os.path.join(W, "x.sr.dcm"), "--pdf", os.path.join(W, "notpdf.pdf"),
                     "--pdf-out", os.path.join(W, "x.pdf.dcm")], capture_output=True, text=True)
rep.check(r6.returncode != 0 and "not a PDF" in r6.stderr, "non-PDF accepted: %s" % r6.stderr)
rep.check(not os.path.exists(os.path.join(W, "x.pdf.dcm")), "a refused PDF left a file")
for r_ in (r, r2, r3, r4, r5, r6):
    for v in (STUDY["--patient-name"], STUDY["--patient-id"], STUDY["--accession"],
              STUDY["--study-uid"]):
        rep.check(v not in r_.stdout + r_.stderr, "identifier in the tool's output")

# ---- Orthanc files both in the original study ------------------------------------
if os.path.exists(netlib.ORTHANC):
    pacs = netlib.Orthanc(W)
    try:
        img = netlib.make_study([os.path.join(enlib.TESTDATA, "us_single_rgb_explicit.dcm")],
                                os.path.join(W, "orig"), seed=31,
                                patient=(STUDY["--patient-name"], STUDY["--patient-id"]),
                                accession=STUDY["--accession"])
        ds0 = pydicom.dcmread(img[0])
        ds0.StudyInstanceUID = STUDY["--study-uid"]
        ds0.save_as(img[0])
        ids = [pacs.upload(f)["ID"] for f in (img[0], sr, pdf)]
        studies = {pacs.get("/instances/%s/study" % i)["ID"] for i in ids}
        rep.check(len(studies) == 1, "Orthanc put the objects in %d studies" % len(studies))
        series = pacs.get("/studies/%s/series" % studies.pop())
        rep.check(sorted(s["MainDicomTags"].get("Modality") for s in series) == ["DOC", "SR", "US"],
                  "series in the study: %s" % [s["MainDicomTags"].get("Modality") for s in series])
    finally:
        pacs.close()
else:
    print("note: Orthanc not installed, study placement not checked")
work.cleanup()
rep.finish()
