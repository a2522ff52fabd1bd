"""Converts every generated sample study with echonetctl and prints one
line per study, then the totals.  Used by demo.sh; exits non-zero if any
study that should convert did not."""
import json
import os
import subprocess
import sys

ctl, conf, studies = sys.argv[1:4]
manifest = json.load(open(os.path.join(studies, "manifest.json")))
print("%-34s %-16s %6s %14s %-9s %s" % ("sample file", "pseudonym", "frames", "fps (source)", "sector", "syntax"))
ok = bad = unexpected = 0
for m in manifest:
    path = os.path.join(studies, m["file"])
    r = subprocess.run([ctl, "-c", conf, "convert", path, "--json"], capture_output=True, text=True)
    if r.returncode == 0:
        j = json.loads(r.stdout)
        ok += 1
        print("%-34s %-16s %6d %14s %-9s %s" % (m["file"][:34], j["pseudonym"], j["video"]["frames"],
              "%.1f (%s)" % (j["fps"], j["fps_source"][:4]), j["sector"]["method"], j["transfer_syntax"]))
    else:
        bad += 1
        unexpected += m["expect"] == "ok"
        print("%-34s refused: %s" % (m["file"][:34], r.stderr.strip().replace("echonetctl convert: ", "").replace(path + ": ", "")[:110]))
outdir = os.path.join(os.path.dirname(conf), "..", "output")
print("\n%d converted, %d refused (%d of them unexpectedly); AVIs in %s"
      % (ok, bad, unexpected, os.path.normpath(outdir)))
sys.exit(1 if unexpected else 0)
