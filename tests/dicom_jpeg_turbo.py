"""dicom_jpeg_turbo.py - JPEG Baseline frames decoded by libjpeg-turbo are
DCMTK's frames, byte for byte (issue 13), and what turbo declines still
decodes through DCMTK.

bench/dicom-decode-bench reads each file through en_dicom_read twice, once
with DCMTK's codec (en_dicom_limits.jpeg_via_dcmtk) and once the default
way, and counts differing bytes.  Files:
  * every JPEG Baseline file of the test corpus: YBR_FULL_422 (4:2:2),
    YBR_FULL (4:4:4), MONOCHROME2, single- and multi-frame, and the JPEG
    Extended one (not turbo's: both ways DCMTK);
  * what turbo declines, made here: progressive streams, two fragments per
    frame, MONOCHROME1, a frame cut in half (libjpeg warns: DCMTK decides,
    so both ways must give the same result, whether pixels or an error).
"""
import os
import subprocess
import tempfile

import cv2
import numpy as np
import pydicom
from pydicom.encaps import encapsulate, generate_pixel_data_frame

import enlib

BUILD = os.environ.get("EN_TOP_BUILDDIR", ".")
BENCH = os.path.join(BUILD, "bench", "dicom-decode-bench")
rep = enlib.Report("dicom_jpeg_turbo")
work = tempfile.TemporaryDirectory(prefix="en-jpeg-")
W = work.name


THREADS = (1, 3)


def bench(path, threads):
    r = subprocess.run([BENCH, "--reps", "1", "--threads", str(threads), path],
                       capture_output=True, text=True, timeout=300)
    fields = dict(kv.split("=", 1) for kv in r.stdout.split()[1:]) if r.returncode == 0 else {}
    return r, fields


def same(path, what):
    for t in THREADS:
        r, f = bench(path, t)
        rep.check(r.returncode == 0 and f.get("diff_bytes") == "0" and
                  f.get("turbo_threads") == str(t),
                  "%s, %d threads: %s %s" % (what, t, r.stdout.strip(), r.stderr.strip()))


def frames_of(ds):
    n = int(getattr(ds, "NumberOfFrames", 1))
    return list(generate_pixel_data_frame(ds.PixelData, n))


def rewrite(src, name, change):
    ds = pydicom.dcmread(src)
    change(ds)
    p = os.path.join(W, name)
    ds.save_as(p)
    return p


corpus = [f for f in sorted(os.listdir(enlib.TESTDATA))
          if f.endswith(".dcm") and ("jpeg_baseline" in f or "jpeg_extended" in f)]
rep.check(len(corpus) >= 5, "JPEG files in the corpus: %s" % corpus)
for f in corpus:
    same(os.path.join(enlib.TESTDATA, f), f)

mono = os.path.join(enlib.TESTDATA, "us_mf_mono2_jpeg_baseline.dcm")
rgb = os.path.join(enlib.TESTDATA, "us_mf_rgb_jpeg_baseline.dcm")


def progressive(ds):
    out = []
    for fr in frames_of(ds):
        img = cv2.imdecode(np.frombuffer(fr, np.uint8), cv2.IMREAD_GRAYSCALE)
        ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1,
                                             cv2.IMWRITE_JPEG_QUALITY, 90])
        out.append(enc.tobytes())
    ds.PixelData = encapsulate(out)


def split(ds):
    ds.PixelData = encapsulate(frames_of(ds), fragments_per_frame=2)


def mono1(ds):
    ds.PhotometricInterpretation = "MONOCHROME1"


def cut(ds):
    fr = frames_of(ds)
    fr[3] = fr[3][:len(fr[3]) // 2] + b"\xff\xd9"
    ds.PixelData = encapsulate(fr)


def long_loop(ds):
    fr = frames_of(ds)
    fr = (fr * (150 // len(fr) + 1))[:150]
    ds.NumberOfFrames = len(fr)
    ds.PixelData = encapsulate(fr)
    for tag in ("FrameTimeVector", "FrameIncrementPointer"):
        if tag in ds:
            delattr(ds, tag)


for name, src, change in [("progressive", mono, progressive), ("split", rgb, split),
                          ("mono1", mono, mono1)]:
    same(rewrite(src, name + ".dcm", change), name + " (declined: DCMTK both ways)")
p = rewrite(rgb, "long.dcm", long_loop)
same(p, "150-frame loop")
r, f = bench(p, 3)
rep.check(f.get("frames") == "150", "150-frame loop read as %s frames" % f.get("frames"))

# A damaged frame: both ways the same outcome, pixels or refusal.
p = rewrite(mono, "cut.dcm", cut)
for t in THREADS:
    r, f = bench(p, t)
    if r.returncode == 0:
        rep.check(f.get("diff_bytes") == "0", "cut frame decoded differently: %s" % r.stdout)
    else:
        rep.check(r.stderr.count("dicom-decode-bench:") >= 1,
                  "cut frame: no reason given: %s" % r.stderr)

work.cleanup()
rep.finish()
