"""report_edge.py - reports for the studies that are not typical.

Each scenario of tests/test-report-driver must render without error into
one A4 PDF page and a readable, non-blank 1240x1754 PNG, leave nothing but
those two files, and say the right thing:

  zero    no beat: an em dash for the EF with the reason, no thresholds,
          "No beats were detected.", the flag
  many    500 beats: the table shows the first rows and "and N more beats",
          and rows + N = 500; ED/ES markers are left off at that scale
  long    10000 frames: the curve is drawn min-max per column, said so
          under the plot, and the PDF stays small
  nan     NaN sizes, a beat without EF, unknown frame rate, no flags, no
          models, no key frames: an em dash (never "nan") in the beat's
          row, the mean and SD over the scored beats only
  allnan  no size at all: "no LV size data", the reason for no EF
  stress  30 long flags with invalid UTF-8 and control characters (shown
          as '?' and spaces), 10 models: "and N more flags/models", with
          shown + N adding up
  absurd  values no pipeline should produce (infinite and 1e300 sizes and
          EFs, a 1e-300 frame rate, frames out of range): renders on one
          page in a few seconds, the usable part of the curve still drawn

Run by automake with $PYTHON (Debian's python3 with opencv and numpy).
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

try:
    import cv2
except ImportError as e:  # pragma: no cover - environment problem
    print("skip: %s lacks OpenCV: %s" % (sys.executable, e))
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from enlib import TOP_BUILDDIR, Report  # noqa: E402

DRIVER = os.path.join(TOP_BUILDDIR, "tests", "test-report-driver")
DASH = "\u2014"
# a beat row in pdftotext -layout: six cells, then an optional note
ROW = re.compile(r"^\s*(\d+)\s+(\d+|%s)\s+(\d+|%s)\s+(\d+|%s)\s+(\d+|%s)\s+([\d.]+|%s)"
                 r"(\s+[A-Za-z].*)?\s*$" % ((DASH,) * 5), re.M)

for tool in ("pdftotext", "pdfinfo"):
    if not shutil.which(tool):
        print("skip: %s not found (install poppler-utils)" % tool)
        sys.exit(77)


def render(rep, folder, scenario):
    """Renders; checks the files and returns (flat text, layout text)."""
    pdf = os.path.join(folder, scenario + ".pdf")
    png = os.path.join(folder, scenario + ".png")
    out = subprocess.run([DRIVER, scenario, pdf, png], capture_output=True, text=True,
                         timeout=60)
    if not rep.check(out.returncode == 0, "%s: driver failed: %s" % (scenario, out.stderr)):
        return "", ""
    rep.check(sorted(os.listdir(folder)) == sorted([scenario + ".pdf", scenario + ".png"]),
              "%s: folder holds %s" % (scenario, os.listdir(folder)))
    info = subprocess.run(["pdfinfo", pdf], capture_output=True, text=True).stdout
    rep.check(re.search(r"^Pages:\s+1$", info, re.M), "%s: not one page" % scenario)
    img = cv2.imread(png, cv2.IMREAD_GRAYSCALE)
    if rep.check(img is not None and img.shape == (1754, 1240),
                 "%s: PNG unreadable or wrong size" % scenario):
        ink = (img < 200).mean()
        rep.check(0.02 < ink < 0.6, "%s: PNG ink coverage %.3f" % (scenario, ink))
    flat = subprocess.run(["pdftotext", "-enc", "UTF-8", pdf, "-"], capture_output=True,
                          check=True).stdout.decode("utf-8")
    layout = subprocess.run(["pdftotext", "-enc", "UTF-8", "-layout", pdf, "-"],
                            capture_output=True, check=True).stdout.decode("utf-8")
    rep.check("nan" not in flat.lower().split(), "%s: 'nan' printed" % scenario)
    return re.sub(r"\s+", " ", flat), layout


def has(rep, scenario, text, *words):
    for w in words:
        rep.check(w in text, "%s: %r not found" % (scenario, w))


def zero(rep, text, layout):
    has(rep, "zero", text, DASH + " ", "No EF: no systole found: the LV size curve has no "
        "clear minima", "No beats were detected.", "no_beat", "Not a diagnosis.")
    rep.check("Below 50 %" not in text, "zero: thresholds judged without an EF")
    rep.check("Beat spread" not in text, "zero: a beat spread without beats")


def many(rep, text, layout):
    m = re.search(r"and (\d+) more beats", text)
    rows = ROW.findall(layout)
    if rep.check(m, "many: no 'and N more beats'"):
        more = int(m.group(1))
        rep.check(len(rows) + more == 500 and len(rows) >= 5,
                  "many: %d rows shown + %d more != 500" % (len(rows), more))
        rep.check([int(r[0]) for r in rows] == list(range(1, len(rows) + 1)),
                  "many: rows are not beats 1..n in order")
    has(rep, "many", text, "500 beats", "ED/ES markers omitted at this scale")


def long_video(rep, text, layout, pdf_size):
    has(rep, "long", text, "10000 frames at 50.0 fps", "10000 frames; each column spans about",
        "Not a diagnosis.")
    rep.check(pdf_size < 300000, "long: PDF is %d bytes (curve not downsampled?)" % pdf_size)


def nan(rep, text, layout):
    has(rep, "nan", text, "frame rate not known", "57.3 %", "SD 3.2 %",
        "4 beats (1 without EF)", "No quality flags.", "not recorded", "not available")
    rep.check(re.search(r"^\s*2\s+75\s+43\s+70\s+75\s+%s\s+no EF\s*$" % DASH, layout, re.M),
              "nan: beat 2's row does not show an em dash and 'no EF'")
    rep.check("phantom" not in text, "nan: phantom warning without models")


def allnan(rep, text, layout):
    has(rep, "allnan", text, "no LV size data", "No EF: the LV was not found in any frame")


def stress(rep, text, layout):
    m = re.search(r"and (\d+) more flags", text)
    shown = len(set(re.findall(r"flag_(\d\d):", text)))
    if rep.check(m, "stress: no 'and N more flags'"):
        rep.check(shown + int(m.group(1)) == 30, "stress: %d flags shown + %s more != 30"
                  % (shown, m.group(1)))
    has(rep, "stress", text, "and 7 more models", "bad byte ? here, a tab and a newline",
        "phantom-trained default model, not for clinical use", "Not a diagnosis.")


def absurd(rep, text, layout):
    has(rep, "absurd", text, "LV size per frame", "Not a diagnosis.", "frame")
    rep.check("inf" not in text.lower().split(), "absurd: 'inf' printed")
    rep.check(not re.search(r"\d{8}", text), "absurd: a giant number is printed")
    has(rep, "absurd", text, "frame rate not known", "No EF:")


def main():
    rep = Report("report_edge")
    checks = {"zero": zero, "many": many, "nan": nan, "allnan": allnan, "stress": stress,
              "absurd": absurd}
    tmp = tempfile.mkdtemp(prefix="en-report-edge-")
    try:
        for scenario in ["zero", "many", "long", "nan", "allnan", "stress", "absurd"]:
            folder = os.path.join(tmp, scenario)
            os.makedirs(folder)
            text, layout = render(rep, folder, scenario)
            if scenario == "long":
                long_video(rep, text, layout, os.path.getsize(os.path.join(folder, "long.pdf")))
            elif text:
                checks[scenario](rep, text, layout)
    finally:
        shutil.rmtree(tmp)
    rep.finish()


if __name__ == "__main__":
    main()
