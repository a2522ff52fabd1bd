"""Helpers shared by the Python end-to-end tests: paths from make check's
environment, running echonetctl in a throw-away site, and the fan model.

Each test prints one line per case and exits 1 if any case failed, so
automake counts it as one test and the log says exactly what broke."""
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np

TOP_SRCDIR = os.environ.get("EN_TOP_SRCDIR", ".")
TOP_BUILDDIR = os.environ.get("EN_TOP_BUILDDIR", ".")
TESTDATA = os.environ.get("EN_TESTDATA", os.path.join(TOP_BUILDDIR, "tests", "data"))
ECHONETCTL = os.environ.get("EN_ECHONETCTL", os.path.join(TOP_BUILDDIR, "echonetctl"))


class Site:
    """A temporary echonetd site: its own secret, output folder, config."""

    def __init__(self, keystore=False):
        self.tmp = tempfile.TemporaryDirectory(prefix="en-test-")
        self.dir = self.tmp.name
        self.out = os.path.join(self.dir, "out")
        os.makedirs(self.out)
        self.conf = os.path.join(self.dir, "echonetd.conf")
        self.keystore = os.path.join(self.dir, "keys.tsv") if keystore else ""
        with open(self.conf, "w") as f:
            f.write("[paths]\noutput_dir = %s\n[deid]\nsecret_file = %s/secret\n"
                    % (self.out, self.dir))
            if keystore:
                f.write("keystore_file = %s\n" % self.keystore)

    def run(self, *args, timeout=120):
        cmd = [ECHONETCTL, "-c", self.conf] + list(args)
        return subprocess.run(cmd, capture_output=True, timeout=timeout)

    def close(self):
        self.tmp.cleanup()


def load_manifest():
    with open(os.path.join(TESTDATA, "manifest.json")) as f:
        return json.load(f)


def fan_angles(fan):
    """(left, right) edge angles in radians from straight down."""
    if "angle_left_deg" in fan:
        return math.radians(fan["angle_left_deg"]), math.radians(fan["angle_right_deg"])
    h = math.radians(fan["half_angle_deg"])
    return -h, h


def sector_mask(rows, cols, apex_x, apex_y, left, right, radius, radius_inner=0.0, top_y=0.0):
    """Rasterises an annular sector: pixel centres between the two edges
    (angles from +y, i.e. straight down) and between the two radii."""
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float64)
    dx, dy = xx - apex_x, yy - apex_y
    r = np.hypot(dx, dy)
    ang = np.arctan2(dx, dy)
    return (ang >= left) & (ang <= right) & (r <= radius) & (r >= radius_inner) & (yy >= top_y)


def iou(a, b):
    inter = np.logical_and(a, b).sum()
    union = np.logical_or(a, b).sum()
    return inter / union if union else 0.0


class Report:
    def __init__(self, name):
        self.name = name
        self.failed = 0
        self.passed = 0

    def check(self, ok, what):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print("FAIL %s: %s" % (self.name, what), flush=True)
        return ok

    def finish(self):
        print("%s: %d checks passed, %d failed" % (self.name, self.passed, self.failed))
        sys.exit(1 if self.failed else 0)
