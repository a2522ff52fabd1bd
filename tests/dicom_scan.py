#!/usr/bin/python3
"""dicom_scan.py - en_dicom_scan_file, the intake's "is it whole yet?" walk.

  * every good generated file is complete, the deflated ones too (walked
    while inflating); every file of Debian's pydicom corpus that pydicom
    reads without complaint and that has the DICM magic is not called
    truncated, except the corpus's own deliberately cut files (pydicom reads
    lazily and misses those), which are;
  * every prefix of a good file (cut at 40 points, including inside the
    preamble, the meta group, headers, values and fragments) is truncated
    or unknown, never complete; those past the meta group are truncated;
  * the generator's truncated and lying files are not complete;
  * nothing crashes (this also runs under ASan/UBSan).
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

BUILD = os.environ.get("EN_TOP_BUILDDIR", ".")
DATA = os.environ.get("EN_TESTDATA", os.path.join(BUILD, "tests", "data"))
DRIVER = os.path.join(BUILD, "tests", "test-dicom-scan")

passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what)


def scan(paths):
    out = {}
    for k in range(0, len(paths), 200):
        chunk = paths[k:k + 200]
        r = subprocess.run([DRIVER] + chunk, capture_output=True, text=True)
        check(r.returncode in (0, 1) and not r.stderr, f"driver ran cleanly on {chunk[0]}..: {r.stderr[-400:]}")
        for p, line in zip(chunk, r.stdout.splitlines()):
            state, end, size, refuse, detail = line.split("\t", 4)
            check(refuse == "-", f"{p}: refused ({refuse}: {detail})")
            out[p] = (state, int(end), int(size), detail)
    return out


def main():
    with open(os.path.join(DATA, "manifest.json")) as fh:
        manifest = json.load(fh)
    good = [e for e in manifest if e["kind"] == "good"]
    paths = [os.path.join(DATA, e["file"]) for e in good]
    res = scan(paths)
    for e, p in zip(good, paths):
        check(res[p][0] == "complete", f"{e['file']}: {res[p]} (want complete)")

    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory() as tmp:
        cuts = []
        for e, p in zip(good, paths):
            blob = open(p, "rb").read()
            points = sorted(set([0, 1, 64, 128, 131, 132, 140, 200, len(blob) - 1, len(blob) - 2,
                                 len(blob) - 8] + list(rng.integers(132, len(blob), 29))))
            for n in points:
                if not 0 <= n < len(blob):
                    continue
                q = os.path.join(tmp, f"{e['file']}.{n}")
                with open(q, "wb") as fh:
                    fh.write(blob[:n])
                cuts.append((e, q, n))
        res = scan([q for _, q, _ in cuts])
        for e, q, n in cuts:
            st = res[q][0]
            check(st != "complete", f"{os.path.basename(q)} cut at {n} called complete")
            if n >= 132 + 200:
                check(st == "truncated", f"{os.path.basename(q)} cut at {n}: {res[q]}")

    bad_dir = os.path.join(DATA, "bad")
    bad = sorted(os.path.join(bad_dir, f) for f in os.listdir(bad_dir))
    res = scan(bad)
    for p in bad:
        name = os.path.basename(p)
        if name.startswith("trunc") or name in ("empty.dcm", "pixeldata_length_lies.dcm",
                                                "pixeldata_length_4gib.dcm"):
            check(res[p][0] == "truncated", f"bad/{name}: {res[p]}")
        if name == "not_dicom.txt":
            # Short and not zeros: no DICOM file is on its way; the reader
            # decides at once instead of the intake waiting for more.
            check(res[p][0] == "unknown", f"bad/{name}: {res[p]}")

    try:
        import pydicom
        from pydicom.errors import InvalidDicomError
        corpus = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")
        files = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(corpus) for f in fs)
        res = scan(files)
        agreed = 0
        for p in files:
            try:
                with open(p, "rb") as fh:
                    head = fh.read(132)
                if head[128:132] != b"DICM":
                    continue
                pydicom.dcmread(p)
            except (InvalidDicomError, Exception):
                continue
            # pydicom reads lazily and does not notice its own deliberately
            # cut files; those must be caught here.
            cut = "truncated" in os.path.basename(p)
            check((res[p][0] == "truncated") == cut, f"corpus {os.path.relpath(p, corpus)}: {res[p]}")
            agreed += 1
        print(f"pydicom corpus: {len(files)} files scanned, {agreed} read by pydicom checked")
    except ImportError:
        print("pydicom corpus: skipped (pydicom not available)")

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
