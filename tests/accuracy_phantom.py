"""The shipped default models, end to end, on held-out simulated studies:
bench/accuracy.py (the benchmark docs/accuracy.md reports) on a few short
studies from seeds and machine layouts the models never saw in training,
through `echonetctl process` with no [models] configured (so the defaults
are what runs, and the database must say they are phantom-trained).

The thresholds are looser than the issue's targets (measured on 40
studies in docs/accuracy.md) because a handful of short clips is a noisy
sample; they still fail on any real regression: a broken normalisation,
sector framing, clip placement or model file sends EF errors to 20 points
and Dice below 0.5."""
import json
import os
import subprocess
import sys
import tempfile

import enlib

TOP = os.environ.get("EN_TOP_SRCDIR", os.path.join(os.path.dirname(__file__), ".."))
CTL = os.environ.get("EN_ECHONETCTL", os.path.join(TOP, "build", "echonetctl"))
rep = enlib.Report("accuracy_phantom")
n = 3 if os.environ.get("EN_SANITIZE", "") not in ("", "0") else 5
with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, "acc.json")
    r = subprocess.run([sys.executable, os.path.join(TOP, "bench", "accuracy.py"), "--echonetctl", CTL,
                        "--studies", str(n), "--seed", "61000", "--max-seconds", "3",
                        "--json-out", out, "--threads", "2", "--check", "--targets", "8,0.85,0.9"],
                       capture_output=True, text=True)
    print(r.stdout)
    print(r.stderr[-3000:])
    rep.check(r.returncode == 0, "benchmark missed the smoke targets (exit %d)" % r.returncode)
    if os.path.exists(out):
        s = json.load(open(out))
        rep.check(s["failed"] == 0, "%d studies failed" % s["failed"])
        rep.check(s["beat_precision"] is not None and s["beat_precision"] >= 0.8,
                  "beat precision %s" % s["beat_precision"])
    else:
        rep.check(False, "no benchmark output")
        # The defaults ran, and the database said what they are (the
        # benchmark configured no models).
        origins = s.get("models", [])
        rep.check(len(origins) == 2 and all("phantom-trained default model, not for clinical use"
                                                in o for o in origins),
                  "stored model origins: %s" % origins)
sys.exit(rep.finish())
