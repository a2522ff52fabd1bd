"""Odd and bad inputs through `echonetctl convert`: every file of Debian's
pydicom test corpus, the generator's bad files, and truncated copies made
here either convert or fail with exit code 1 and exactly one line on
stderr.  A crash, a signal, a sanitizer report or a hang is a failure."""
import glob
import os
import subprocess
import tempfile

import enlib

rep = enlib.Report("convert_corpus")
CORPUS = "/usr/lib/python3/dist-packages/pydicom/data/test_files"

files = sorted(p for p in glob.glob(os.path.join(CORPUS, "**", "*"), recursive=True) if os.path.isfile(p))
files += sorted(glob.glob(os.path.join(enlib.TESTDATA, "bad", "*")))
rep.check(len(files) > 50, "only %d corpus files found" % len(files))

tmp = tempfile.TemporaryDirectory(prefix="en-corpus-")
good = [m for m in enlib.load_manifest() if m["expect"] == "ok"][:6]
for m in good:
    data = open(os.path.join(enlib.TESTDATA, m["file"]), "rb").read()
    for frac in (0.05, 0.3, 0.7, 0.97):
        p = os.path.join(tmp.name, "%s.cut%02d" % (os.path.basename(m["file"]), frac * 100))
        with open(p, "wb") as f:
            f.write(data[: int(len(data) * frac)])
        files.append(p)

site = enlib.Site()
converted = failed = 0
for p in files:
    try:
        r = site.run("convert", p, os.path.join(site.dir, "x.avi"), timeout=120)
    except subprocess.TimeoutExpired:
        rep.check(False, "%s: hung (no answer in 120 s)" % p)
        continue
    err = r.stderr.decode(errors="replace")
    lines = [l for l in err.splitlines() if l.strip()]
    if r.returncode == 0:
        converted += 1
        rep.check("Sanitizer" not in err, "%s: sanitizer report: %s" % (p, err[:300]))
        continue
    failed += 1
    rep.check(r.returncode == 1, "%s: exit code %d (signal or crash?): %s" % (p, r.returncode, err[:300]))
    rep.check(len(lines) == 1, "%s: expected one error line, got %d: %s" % (p, len(lines), err[:300]))
    print("  %s -> %s" % (os.path.basename(p), lines[0] if lines else ""))
for m in [m for m in enlib.load_manifest() if m["expect"] == "error"]:
    r = site.run("convert", os.path.join(enlib.TESTDATA, m["file"]), os.path.join(site.dir, "y.avi"))
    rep.check(r.returncode == 1, "%s: expected failure, got exit %d" % (m["file"], r.returncode))
print("corpus: %d converted, %d refused with a reason" % (converted, failed))
site.close()
rep.finish()
