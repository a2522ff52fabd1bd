#!/usr/bin/env python3
"""dicom_corpus.py - en_dicom_read against files it did not choose.

Runs tests/dicom-dump (60 s timeout each) over:
  * Debian's pydicom test corpus (every regular file, DICOM or not);
  * the generator's bad files ($EN_TESTDATA/bad/ and manifest entries that
    expect an error), when the generator has run;
  * truncated copies of corpus images, made here in a temporary folder;
  * copies whose header lies (NumberOfFrames, Rows, Columns, bit depth,
    samples, PixelData length...), made here with pydicom or byte patches;
  * a few deterministic byte-flipped copies (a tiny fuzz).

Every run must either succeed (exit 0, one JSON line on stdout) or fail
cleanly: exit 1 with exactly one non-empty line on stderr, "EN_E...: " and
naming the file.  A signal, a timeout, another exit code or any sanitizer
report is a failure.  Files that must be refused (lying headers, truncated
pixel data, bad generator files) fail the test if they convert, and the
limit overrides of dicom-dump must produce EN_ELIMIT naming the limit.
"""
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile

try:
    import pydicom
except ImportError:  # pragma: no cover
    print("skip: pydicom not available to", sys.executable)
    sys.exit(77)

TIMEOUT = 60
SANITIZER_MARKS = ("Sanitizer", "runtime error:", "==ERROR", "Segmentation fault")


class Result:
    def __init__(self):
        self.runs = 0
        self.converted = 0
        self.refused = 0
        self.failures = []

    def fail(self, path, why):
        self.failures.append((path, why))
        print("FAIL %s: %s" % (path, why))


def corpus_dir():
    return os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")


def run(dump, path, extra=()):
    """Returns (kind, detail): kind is ok, refused or bad."""
    try:
        r = subprocess.run([dump, "--out", os.devnull] + list(extra) + [path],
                           capture_output=True, text=True, errors="replace", timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return "bad", "timeout after %d s" % TIMEOUT
    if any(m in r.stderr for m in SANITIZER_MARKS):
        return "bad", "sanitizer or crash report: " + r.stderr.strip()[:2000]
    if r.returncode == 0:
        lines = [l for l in r.stdout.splitlines() if l.strip()]
        try:
            info = json.loads(lines[0]) if len(lines) == 1 else None
        except ValueError:
            info = None
        if info is None:
            return "bad", "exit 0 but stdout is not one JSON line: %r" % r.stdout[:300]
        return "ok", "%dx%dx%d %s %s" % (info["frames"], info["cols"], info["rows"],
                                         info["transfer_syntax_name"], info["photometric"])
    if r.returncode != 1:
        return "bad", "exit status %d (signal or abort): %s" % (r.returncode, r.stderr.strip()[:500])
    lines = r.stderr.splitlines()
    if len(lines) != 1 or not lines[0].strip():
        return "bad", "exit 1 but stderr is not exactly one line: %r" % r.stderr[:500]
    if not lines[0].startswith("EN_E") or path not in lines[0]:
        return "bad", "error line lacks the code or the file name: " + lines[0]
    return "refused", lines[0]


def check(res, dump, path, must_fail=False, code=None, extra=(), needle=None, phi=()):
    kind, detail = run(dump, path, extra)
    res.runs += 1
    label = path + ("" if not extra else " " + " ".join(extra))
    if kind == "bad":
        res.fail(label, detail)
        return
    leaked = [p for p in phi if p and p in detail]
    if leaked:
        res.fail(label, "identifying value(s) in the output: %d" % len(leaked))  # not printed
        return
    if kind == "ok":
        res.converted += 1
        if must_fail:
            res.fail(label, "converted although it must be refused (%s)" % detail)
            return
    else:
        res.refused += 1
        if code and not detail.startswith(code + ":"):
            res.fail(label, "expected %s, got: %s" % (code, detail))
            return
        if needle and needle not in detail:
            res.fail(label, "message lacks %r: %s" % (needle, detail))
            return
    print("%-7s %s: %s" % (kind, label, detail))


# ---- files made on the fly ------------------------------------------------

def truncated_copies(src_dir, tmp):
    """(path, must_fail): cuts at 50% and 90% land in the pixel data."""
    names = ["MR_small.dcm", "CT_small.dcm", "ExplVR_BigEnd.dcm", "MR_small_RLE.dcm",
             "MR_small_jpeg_ls_lossless.dcm", "JPEG-lossy.dcm", "SC_rgb_jpeg_dcmtk.dcm",
             "SC_rgb_rle_2frame.dcm", "SC_ybr_full_422_uncompressed.dcm", "image_dfl.dcm",
             "SC_rgb_dcmtk_+eb+cy+np.dcm", "MR_small_implicit.dcm", "MR_small_jp2klossless.dcm",
             "SC_rgb_gdcm_KY.dcm"]
    out = []
    for name in names:
        src = os.path.join(src_dir, name)
        if not os.path.exists(src):
            continue
        data = open(src, "rb").read()
        for frac in (0.02, 0.1, 0.5, 0.9):
            dst = os.path.join(tmp, "trunc-%02d-%s" % (int(frac * 100), name))
            with open(dst, "wb") as fp:
                fp.write(data[:int(len(data) * frac)])
            out.append((dst, frac >= 0.5))
        for cut in (128, 132, 140):
            dst = os.path.join(tmp, "trunc-at%d-%s" % (cut, name))
            with open(dst, "wb") as fp:
                fp.write(data[:cut])
            out.append((dst, True))
    return out


def lie(src_dir, tmp, name, tag, change):
    ds = pydicom.dcmread(os.path.join(src_dir, name))
    change(ds)
    dst = os.path.join(tmp, "lie-%s-%s" % (tag, name))
    ds.save_as(dst, write_like_original=True)
    return dst


def set_attr(key, value):
    def change(ds):
        if value is None:
            if key in ds:
                del ds[key]
        else:
            setattr(ds, key, value)
    return change


def set_raw(tag, vr, value):
    """Stores a value pydicom would refuse for the real VR (e.g. IS 'abc')."""
    def change(ds):
        if tag in ds:
            del ds[tag]
        ds.add_new(tag, vr, value)
    return change


def lying_copies(src_dir, tmp):
    """(path, expected code, "any" for any refusal, or None for robustness only)."""
    cases = [
        ("MR_small.dcm", "frames5", set_attr("NumberOfFrames", 5), "EN_EFORMAT"),
        ("MR_small.dcm", "rows128", set_attr("Rows", 128), "EN_EFORMAT"),
        ("MR_small.dcm", "rows65535", set_attr("Rows", 65535), "EN_ELIMIT"),
        ("MR_small.dcm", "rows0", set_attr("Rows", 0), "EN_EFORMAT"),
        ("MR_small.dcm", "norows", set_attr("Rows", None), "EN_EFORMAT"),
        ("MR_small.dcm", "nocols", set_attr("Columns", None), "EN_EFORMAT"),
        ("MR_small.dcm", "bits12", set_attr("BitsAllocated", 12), "EN_EUNSUPPORTED"),
        ("MR_small.dcm", "bits32", set_attr("BitsAllocated", 32), "EN_EUNSUPPORTED"),
        ("MR_small.dcm", "bits8", set_attr("BitsAllocated", 8), None),
        ("MR_small.dcm", "spp3", set_attr("SamplesPerPixel", 3), "EN_EFORMAT"),
        ("MR_small.dcm", "rgb", lambda ds: (setattr(ds, "SamplesPerPixel", 3),
                                          setattr(ds, "PhotometricInterpretation", "RGB")), "EN_EFORMAT"),
        ("MR_small.dcm", "palette-nolut", set_attr("PhotometricInterpretation", "PALETTE COLOR"), None),
        ("MR_small.dcm", "nopi", set_attr("PhotometricInterpretation", None), "EN_EFORMAT"),
        ("MR_small.dcm", "frames-abc", set_raw(0x00280008, "LO", "abc"), "EN_EFORMAT"),
        ("MR_small.dcm", "frames-neg", set_attr("NumberOfFrames", "-1"), "EN_EFORMAT"),
        ("MR_small.dcm", "frames-huge", set_raw(0x00280008, "LO", "99999999999"), "EN_ELIMIT"),
        ("MR_small.dcm", "frames2000", lambda ds: (setattr(ds, "NumberOfFrames", 2000),
                                                  setattr(ds, "Rows", 2048), setattr(ds, "Columns", 2048)),
         "EN_ELIMIT"),
        ("MR_small.dcm", "stored-gt-alloc", set_attr("BitsStored", 24), "EN_EFORMAT"),
        ("MR_small.dcm", "highbit", set_attr("HighBit", 40), None),
        ("MR_small.dcm", "nopixels", set_attr("PixelData", None), "EN_ENOTIMAGE"),
        ("SC_rgb_rle_2frame.dcm", "frames3", set_attr("NumberOfFrames", 3), "EN_EFORMAT"),
        ("JPEG-lossy.dcm", "frames2", set_attr("NumberOfFrames", 2), "EN_EFORMAT"),
        ("SC_rgb_jpeg_dcmtk.dcm", "rows200", set_attr("Rows", 200), "EN_EFORMAT"),
        ("SC_rgb_jpeg_dcmtk.dcm", "mono", lambda ds: (setattr(ds, "SamplesPerPixel", 1),
                                                      setattr(ds, "PhotometricInterpretation", "MONOCHROME2")),
         None),
        ("MR_small_RLE.dcm", "cols128", set_attr("Columns", 128), None),
        ("MR_small_jpeg_ls_lossless.dcm", "rows32", set_attr("Rows", 32), "EN_EFORMAT"),
        ("SC_rgb_jpeg_gdcm.dcm", "cols50", set_attr("Columns", 50), "EN_EFORMAT"),
        # JPEG 2000: EN_EFORMAT with OpenJPEG, EN_EUNSUPPORTED without; refused either way.
        ("MR_small_jp2klossless.dcm", "rows32", set_attr("Rows", 32), "any"),
        ("MR_small_jp2klossless.dcm", "frames2", set_attr("NumberOfFrames", 2), "any"),
        ("SC_rgb_gdcm_KY.dcm", "cols200", set_attr("Columns", 200), "any"),
    ]
    out = []
    for name, tag, change, code in cases:
        if os.path.exists(os.path.join(src_dir, name)):
            out.append((lie(src_dir, tmp, name, tag, change), code))
    out.extend(patched_lengths(src_dir, tmp))
    return out


def patched_lengths(src_dir, tmp):
    """Byte-level lies pydicom would not write: PixelData lengths."""
    out = []
    for name, tag_bytes, explicit in (("MR_small.dcm", b"\xe0\x7f\x10\x00OW\x00\x00", True),
                                      ("MR_small_implicit.dcm", b"\xe0\x7f\x10\x00", False)):
        src = os.path.join(src_dir, name)
        if not os.path.exists(src):
            continue
        data = bytearray(open(src, "rb").read())
        pos = data.rfind(tag_bytes)
        if pos < 0:
            continue
        off = pos + len(tag_bytes)
        for tag, length in (("pixlen-huge", 0xFFFFFFF0), ("pixlen-undef", 0xFFFFFFFF), ("pixlen-small", 16)):
            patched = bytearray(data)
            patched[off:off + 4] = struct.pack("<I", length)
            dst = os.path.join(tmp, "%s-%s" % (tag, name))
            with open(dst, "wb") as fp:
                fp.write(patched)
            out.append((dst, "EN_EFORMAT" if tag != "pixlen-undef" else None))
    return out


def fuzzed_copies(src_dir, tmp, count=8):
    """Deterministic byte flips: robustness only."""
    rnd = random.Random(1234)
    names = ["MR_small.dcm", "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "JPEG-lossy.dcm",
             "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_rle_2frame.dcm", "ExplVR_BigEnd.dcm", "image_dfl.dcm",
             "MR_small_jp2klossless.dcm", "SC_rgb_gdcm_KY.dcm", "693_J2KI.dcm"]
    out = []
    for name in names:
        src = os.path.join(src_dir, name)
        if not os.path.exists(src):
            continue
        data = open(src, "rb").read()
        for i in range(count):
            mutated = bytearray(data)
            for _ in range(rnd.randint(1, 16)):
                mutated[rnd.randrange(len(mutated))] = rnd.randrange(256)
            dst = os.path.join(tmp, "fuzz%d-%s" % (i, name))
            with open(dst, "wb") as fp:
                fp.write(mutated)
            out.append(dst)
    return out


def generator_bad_files(testdata):
    """(path, expected code or None, identifying strings the message must
    not contain) for the generator's refused files."""
    out, seen = [], set()
    man_path = os.path.join(testdata, "manifest.json") if testdata else None
    if man_path and os.path.exists(man_path):
        man = json.load(open(man_path))
        if isinstance(man, dict):
            man = man.get("files") or man.get("entries") or []
        for e in man:
            if e.get("expect") == "error" or e.get("kind") == "bad":
                path = os.path.join(testdata, e["file"])
                code = next((v for v in e.values() if isinstance(v, str) and v.startswith("EN_E")), None)
                out.append((path, code, e.get("phi_strings", [])))
                seen.add(os.path.realpath(path))
    bad = os.path.join(testdata, "bad") if testdata else None
    if bad and os.path.isdir(bad):
        for name in sorted(os.listdir(bad)):
            path = os.path.join(bad, name)
            if os.path.isfile(path) and os.path.realpath(path) not in seen and not name.endswith(".json"):
                out.append((path, None, []))
    return out


def limit_checks(res, dump, src_dir):
    path = os.path.join(src_dir, "SC_rgb_rle_2frame.dcm")
    if not os.path.exists(path):
        res.fail(path, "missing corpus file for the limit checks")
        return
    for opt, value, needle in (("--max-frames", "1", "max_frames=1"), ("--max-rows", "99", "max_rows=99"),
                               ("--max-cols", "50", "max_cols=50"),
                               ("--max-pixel-bytes", "1000", "max_pixel_bytes=1000"),
                               ("--max-file-bytes", "100", "max_file_bytes=100")):
        check(res, dump, path, must_fail=True, code="EN_ELIMIT", extra=(opt, value), needle=needle)


def main():
    builddir = os.environ.get("EN_TOP_BUILDDIR")
    if not builddir:
        print("EN_TOP_BUILDDIR not set: run through make check")
        return 99
    dump = os.path.join(builddir, "tests", "dicom-dump")
    testdata = os.environ.get("EN_TESTDATA")
    src_dir = corpus_dir()
    if not os.path.isdir(src_dir):
        print("skip: no pydicom test corpus at", src_dir)
        return 77
    res = Result()
    for root, _, files in sorted(os.walk(src_dir)):
        for name in sorted(files):
            check(res, dump, os.path.join(root, name))
    corpus = (res.converted, res.refused)
    for path, code, phi in generator_bad_files(testdata):
        check(res, dump, path, must_fail=True, code=code, phi=phi)
    tmp = tempfile.mkdtemp(prefix="dicom_corpus.")
    try:
        for path, must_fail in truncated_copies(src_dir, tmp):
            check(res, dump, path, must_fail=must_fail, code="EN_EFORMAT" if must_fail else None)
        for path, code in lying_copies(src_dir, tmp):
            check(res, dump, path, must_fail=code is not None, code=None if code == "any" else code)
        for path in fuzzed_copies(src_dir, tmp):
            check(res, dump, path)
        limit_checks(res, dump, src_dir)
    finally:
        if not res.failures:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("made files kept in", tmp)
    print("pydicom corpus: %d converted, %d refused cleanly" % corpus)
    print("all runs: %d converted, %d refused cleanly, %d failed" % (res.converted, res.refused,
                                                                      len(res.failures)))
    print("%d passed, %d failed" % (res.runs - len(res.failures), len(res.failures)))
    return 1 if res.failures else 0


if __name__ == "__main__":
    sys.exit(main())
