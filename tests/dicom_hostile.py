#!/usr/bin/python3
"""dicom_hostile.py - files made to crash or stall the reader are refused
before DCMTK parses them, with one line naming why (issue 10, items 3, 7).

Made here, byte by byte (pydicom cannot write 7000 levels):
  * sequences nested 7000 deep (~370 KB), the way DCMTK overflowed its stack
    on: explicit VR with undefined and with defined lengths, implicit VR
    with defined lengths (a dictionary sequence DCMTK would recurse into),
    inside an undefined-length UN, inside a deflated data set, and as a raw
    data set without the Part 10 header;
  * the bound itself: 64 levels are walked, 65 refused;
  * zeros: a valid file followed by 1 GiB of (sparse) zeros, a 2 GiB sparse
    file, 128 KiB of zeros between elements; but 96 bytes of zero padding
    at the end are accepted (DCMTK reads them), 100 are a cut file;
  * more elements than the walk allows;
  * an 89 KB JPEG file declaring 255 frames of 2048x2048 (1 GiB decoded).

Each is checked at three levels: the scanner's verdict (test-dicom-scan),
the reader (dicom-dump: exit 1, one "EN_E...:" line naming the file and the
cause) and `echonetctl convert` (exit 1, one line naming the file and the
cause).  The refusals of the
sparse files must not read them: each run must finish in well under the
time a read of 1-2 GiB takes (< 5 s: a correctness bound, not a benchmark),
and the reader's peak memory must stay small (the JPEG file grew the
process to 1.09 GB before).  This test also runs under ASan/UBSan.
"""
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

import cv2
import numpy as np
import pydicom
from pydicom.encaps import encapsulate

import enlib

BUILD = os.environ.get("EN_TOP_BUILDDIR", ".")
SCAN = os.path.join(BUILD, "tests", "test-dicom-scan")
DUMP = os.path.join(BUILD, "tests", "dicom-dump")
SANITIZED = os.environ.get("EN_SANITIZE") == "1"
MAX_RSS_MB = 600 if SANITIZED else 200
DEPTH = 7000
LIMIT = 64  # EN_DICOM_SCAN_MAX_DEPTH

passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what)


# ---- bytes ------------------------------------------------------------------

def tag(g, e, be=False):
    return struct.pack(">HH" if be else "<HH", g, e)


def ex(g, e, vr, value, length=None):
    """An explicit VR little endian element."""
    if len(value) % 2:
        value += b"\0" if vr == b"UI" else b" "
    n = len(value) if length is None else length
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
        return tag(g, e) + vr + b"\0\0" + struct.pack("<I", n) + value
    return tag(g, e) + vr + struct.pack("<H", n) + value


def im(g, e, value, length=None):
    """An implicit VR little endian element."""
    if len(value) % 2:
        value += b" "
    return tag(g, e) + struct.pack("<I", len(value) if length is None else length) + value


UNDEF = 0xFFFFFFFF
ITEM_UNDEF = tag(0xFFFE, 0xE000) + struct.pack("<I", UNDEF)
ITEM_END = tag(0xFFFE, 0xE00D) + b"\0\0\0\0"
SEQ_END = tag(0xFFFE, 0xE0DD) + b"\0\0\0\0"


def item(body):
    return tag(0xFFFE, 0xE000) + struct.pack("<I", len(body)) + body


def part10(ts, dataset, sop="1.2.840.10008.5.1.4.1.1.88.33"):
    meta = (ex(2, 1, b"OB", b"\0\1") + ex(2, 2, b"UI", sop.encode()) +
            ex(2, 3, b"UI", b"1.2.826.0.1.3680043.8.498.1") + ex(2, 0x10, b"UI", ts.encode()))
    return b"\0" * 128 + b"DICM" + ex(2, 0, b"UL", struct.pack("<I", len(meta))) + meta + dataset


def head(explicit=True):
    el = ex if explicit else (lambda g, e, vr, v: im(g, e, v))
    return (el(8, 0x16, b"UI", b"1.2.840.10008.5.1.4.1.1.88.33") +
            el(8, 0x18, b"UI", b"1.2.826.0.1.3680043.8.498.2") + el(8, 0x60, b"CS", b"SR"))


CONTENT = (0x0040, 0xA730)  # ContentSequence: a sequence in DCMTK's dictionary


def nest_undefined(depth, explicit=True):
    """depth ContentSequences of undefined length, each item holding one
    small element, as a structured report nests its content."""
    rel = ex(0x40, 0xA010, b"CS", b"CONTAINS") if explicit else im(0x40, 0xA010, b"CONTAINS")
    seq = (tag(*CONTENT) + (b"SQ\0\0" if explicit else b"") + struct.pack("<I", UNDEF))
    return (seq + ITEM_UNDEF + rel) * depth + (ITEM_END + SEQ_END) * depth


def nest_defined(depth, explicit=True):
    rel = ex(0x40, 0xA010, b"CS", b"CONTAINS") if explicit else im(0x40, 0xA010, b"CONTAINS")
    body = b""
    for _ in range(depth):
        it = item(rel + body)
        body = tag(*CONTENT) + (b"SQ\0\0" if explicit else b"") + struct.pack("<I", len(it)) + it
    return body


EXPLICIT, IMPLICIT, DEFLATED = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.1.99"


def deflate(data):
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    return z.compress(data) + z.flush()


def nested_files(d, depth):
    """name -> bytes for every way of nesting depth levels."""
    un_body = nest_undefined(depth - 1, explicit=False)  # the UN is a level too
    return {
        "explicit-undefined": part10(EXPLICIT, head() + nest_undefined(depth)),
        "explicit-defined": part10(EXPLICIT, head() + nest_defined(depth)),
        "implicit-defined": part10(IMPLICIT, head(False) + nest_defined(depth, False)),
        "implicit-undefined": part10(IMPLICIT, head(False) + nest_undefined(depth, False)),
        "un-undefined": part10(EXPLICIT, head() + tag(0x0009, 0x0010) + b"LO" + struct.pack("<H", 4)
                               + b"ACME" + tag(0x0009, 0x1010) + b"UN\0\0" + struct.pack("<I", UNDEF)
                               + ITEM_UNDEF + un_body + ITEM_END + SEQ_END),
        "deflated": part10(DEFLATED, deflate(head() + nest_undefined(depth))),
        "raw": head() + nest_undefined(depth),
    }


def write(d, name, data):
    p = os.path.join(d, name + ".dcm")
    with open(p, "wb") as f:
        f.write(data)
    return p


def sparse(d, name, prefix, total):
    p = os.path.join(d, name + ".dcm")
    with open(p, "wb") as f:
        f.write(prefix)
        f.truncate(total)
    return p


def jpeg_bomb(d, good):
    """An 89 KB JPEG file declaring 255 frames of 2048x2048: every fragment
    is the start of a real 2048x2048 JPEG stream, cut after its header."""
    ok, enc = cv2.imencode(".jpg", np.zeros((2048, 2048), np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 50])
    stream = enc.tobytes()
    frag = stream[:stream.index(b"\xff\xda") + 12] + b"\xff\xd9"
    frag += b"\0" * (348 - len(frag)) if len(frag) < 348 else b""
    ds = pydicom.dcmread(good)
    ds.Rows = ds.Columns = 2048
    ds.NumberOfFrames = 255
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    if "PlanarConfiguration" in ds:
        del ds.PlanarConfiguration
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.50"
    ds.PixelData = encapsulate([frag] * 255)
    ds["PixelData"].is_undefined_length = True
    p = os.path.join(d, "jpeg-bomb.dcm")
    ds.save_as(p, write_like_original=False)
    return p


# ---- running ------------------------------------------------------------------

def scan(path):
    r = subprocess.run([SCAN, path], capture_output=True, text=True, timeout=60)
    state, end, size, refuse, detail = (r.stdout.rstrip("\n").split("\t", 4) + [""] * 5)[:5]
    return state, refuse, detail


def run(cmd, timeout=60):
    """(returncode, stdout, stderr, seconds, peak RSS in MiB) of one process,
    its own peak from wait4."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdout=out, stderr=err)
        timer = threading.Timer(timeout, p.kill)
        timer.start()
        _, status, usage = os.wait4(p.pid, 0)
        timer.cancel()
        p.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        secs = time.monotonic() - t0
        out.seek(0)
        err.seek(0)
        return (p.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"),
                secs, usage.ru_maxrss / 1024)


def refused(label, cmd, path, code, needle, max_s=None, max_rss=None):
    rc, out, err, secs, rss = run(cmd)
    lines = [l for l in err.splitlines() if l.strip()]
    one = lines[0] if len(lines) == 1 else err[:400]
    check(rc == 1, "%s: exit %d (want 1): %s" % (label, rc, err[:400]))
    check(len(lines) == 1, "%s: stderr is not one line: %r" % (label, err[:400]))
    check((code is None or code in one) and path in one and needle in one,
          "%s: line lacks %s, the file or %r: %s" % (label, code, needle, one))
    check(not any(m in err for m in ("Sanitizer", "runtime error:", "Segmentation")),
          "%s: crash or sanitizer report" % label)
    if max_s is not None:
        check(secs < max_s, "%s: took %.1f s (the refusal must not read the file)" % (label, secs))
    if max_rss is not None:
        check(rss < max_rss, "%s: peak RSS %.0f MiB (bound %d)" % (label, rss, max_rss))
    print("%-28s exit %d in %.2f s: %s" % (label, rc, secs, one[:150]))


def main():
    site = enlib.Site()
    good = os.path.join(enlib.TESTDATA, "us_single_mono2_jpeg_baseline.dcm")
    with tempfile.TemporaryDirectory(prefix="dicom_hostile.") as d:
        # A good file converts (and the site secret is made, with its notice).
        r = site.run("convert", good, os.path.join(d, "good.avi"))
        check(r.returncode == 0, "convert of a good file: %s" % r.stderr[-300:])
        # -- nesting: every encoding, 7000 deep, refused naming the depth
        for name, data in nested_files(d, DEPTH).items():
            p = write(d, "nest-" + name, data)
            st, ref, detail = scan(p)
            check(ref == "EN_ELIMIT" and "nested deeper than %d" % LIMIT in detail,
                  "scan nest-%s (%d KB): %s %s %s" % (name, len(data) >> 10, st, ref, detail))
            refused("dicom-dump nest-" + name, [DUMP, "--out", os.devnull, p], p, "EN_ELIMIT",
                    "nested deeper than %d" % LIMIT)
            if name == "explicit-undefined":
                check(350 << 10 < len(data) < 400 << 10, "the 7000-deep file is %d bytes" % len(data))
                refused("convert nest-" + name, [enlib.ECHONETCTL, "-c", site.conf, "convert", p,
                                                 os.path.join(d, "x.avi")], p, None,
                        "nested deeper than %d" % LIMIT)
        # -- the bound: 64 levels walk to the end, 65 are refused
        for depth, want in ((LIMIT, "-"), (LIMIT + 1, "EN_ELIMIT")):
            for name, data in nested_files(d, depth).items():
                st, ref, detail = scan(write(d, "bound-%d-%s" % (depth, name), data))
                check(ref == want and (want != "-" or st == "complete"),
                      "scan %d levels, %s: %s %s %s" % (depth, name, st, ref, detail))

        # -- zeros
        src = open(good, "rb").read()
        p = sparse(d, "zeros-after", src, len(src) + (1 << 30))
        st, ref, detail = scan(p)
        check(ref == "EN_EFORMAT" and st == "truncated" and "zero bytes" in detail,
              "scan zeros-after: %s %s %s" % (st, ref, detail))
        refused("dicom-dump zeros-after", [DUMP, "--out", os.devnull, p], p, "EN_EFORMAT",
                "zero bytes", max_s=5)
        refused("convert zeros-after", [enlib.ECHONETCTL, "-c", site.conf, "convert", p,
                                        os.path.join(d, "x.avi")], p, None, "zero bytes",
                max_s=5)
        p = sparse(d, "sparse-2g", b"", (2 << 30) - 4096)
        st, ref, detail = scan(p)
        check(ref == "EN_EFORMAT" and "zero bytes" in detail, "scan sparse-2g: %s %s %s" % (st, ref, detail))
        refused("dicom-dump sparse-2g", [DUMP, "--out", os.devnull, p], p, "EN_EFORMAT", "zero bytes",
                max_s=5)
        refused("convert sparse-2g", [enlib.ECHONETCTL, "-c", site.conf, "convert", p,
                                      os.path.join(d, "x.avi")], p, None, "zero bytes", max_s=5)
        mid = part10(IMPLICIT, head(False) + b"\0" * (128 << 10) + im(0x0020, 0x000D, b"1.2.3"))
        st, ref, detail = scan(write(d, "zeros-inside", mid))
        check(ref == "EN_EFORMAT" and st == "unknown", "scan zeros-inside: %s %s %s" % (st, ref, detail))
        # Zero padding DCMTK reads (whole zero "elements") is tolerated; a
        # cut one is a cut.
        p = write(d, "zero-padded", src + b"\0" * 96)
        st, ref, detail = scan(p)
        check(st == "complete" and ref == "-", "scan zero-padded: %s %s %s" % (st, ref, detail))
        rc, out, err, _, _ = run([DUMP, "--out", os.devnull, p])
        check(rc == 0, "dicom-dump zero-padded: exit %d: %s" % (rc, err[:300]))
        st, ref, detail = scan(write(d, "zero-padded-cut", src + b"\0" * 100))
        check(st == "truncated" and ref == "-", "scan zero-padded-cut: %s %s %s" % (st, ref, detail))

        # -- too many elements (1,000,001 empty ones)
        many = part10(IMPLICIT, head(False) + im(0x0009, 0x0010, b"ACME") +
                      im(0x0009, 0x1001, b"") * 1000001)
        p = write(d, "many-elements", many)
        st, ref, detail = scan(p)
        check(ref == "EN_ELIMIT" and "more than 1000000" in detail,
              "scan many-elements: %s %s %s" % (st, ref, detail))
        refused("dicom-dump many-elements", [DUMP, "--out", os.devnull, p], p, "EN_ELIMIT",
                "more than 1000000")

        # -- decoded size per byte of file
        p = jpeg_bomb(d, good)
        size = os.path.getsize(p)
        check(80 << 10 < size < 100 << 10, "the JPEG bomb is %d bytes" % size)
        refused("dicom-dump jpeg-bomb", [DUMP, "--out", os.devnull, p], p, "EN_ELIMIT",
                "per byte of file", max_rss=MAX_RSS_MB)
        refused("convert jpeg-bomb", [enlib.ECHONETCTL, "-c", site.conf, "convert", p,
                                      os.path.join(d, "x.avi")], p, None, "per byte of file",
                max_rss=MAX_RSS_MB)
    site.close()
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
