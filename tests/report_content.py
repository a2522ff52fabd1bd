"""report_content.py - what a reader finds on a generated study's report.

tests/test-report-driver renders the "study" scenario (three beats of EF
47.3, 52.1 and 45.0, two quality flags, phantom-trained models, key frames
with masks) to PDF and PNG.  Here:

- pdftotext finds the pseudonym, the processing date, the mean EF as shown
  in large type ("48.1 %"), its class, the beat spread (SD, min-max, beat
  count), each beat's EF, each flag's name and explanation, the models'
  architectures, hashes and origin, the phantom warning and the
  not-a-diagnosis note; pdfinfo says one A4 page;
- the PNG opens with OpenCV at 1240x1754, is not blank, and the outline
  colour appears in the key-frame area only, on each key frame at its own
  size (and not at all when the key frames come without masks: "nomask");
- the same input renders to the same PDF and PNG bytes;
- PHI: the driver is handed the kind of identifying text the pipeline holds
  while it fills the report input (a source path and output folder with
  "ZZPHI^NAME" in them, a patient name).  None of it may appear in the
  PDF's text, its raw bytes, its decompressed streams, or the PNG's bytes:
  the report never prints a path.

Run by automake with $PYTHON (Debian's python3 with opencv and numpy).
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zlib

try:
    import cv2
    import numpy as np
except ImportError as e:  # pragma: no cover - environment problem
    print("skip: %s lacks OpenCV/numpy: %s" % (sys.executable, e))
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from enlib import TOP_BUILDDIR, Report  # noqa: E402

DRIVER = os.path.join(TOP_BUILDDIR, "tests", "test-report-driver")
PAGE_W, PAGE_H = 1240, 1754
OUTLINE = (255, 40, 40)  # EN_REPORT_OUTLINE_* in en_report.h
PHI = ["ZZPHI^NAME", "ZZPHI", "DOE^JANE", "19700101", "ZZHOSPITAL"]

for tool in ("pdftotext", "pdfinfo"):
    if not shutil.which(tool):
        print("skip: %s not found (install poppler-utils)" % tool)
        sys.exit(77)


def render(folder, scenario, extra=()):
    pdf = os.path.join(folder, scenario + ".pdf")
    png = os.path.join(folder, scenario + ".png")
    out = subprocess.run([DRIVER, scenario, pdf, png] + list(extra),
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError("%s %s failed: %s" % (DRIVER, scenario, out.stderr))
    return pdf, png


def pdf_text(pdf, layout=False):
    """pdftotext's text; in reading order with runs of white space made
    single spaces, or (layout) with the page's lines and columns kept."""
    cmd = ["pdftotext", "-enc", "UTF-8"] + (["-layout"] if layout else []) + [pdf, "-"]
    out = subprocess.run(cmd, capture_output=True, check=True, timeout=60)
    text = out.stdout.decode("utf-8")
    return text if layout else re.sub(r"\s+", " ", text)


def pdf_pages(pdf):
    out = subprocess.run(["pdfinfo", pdf], capture_output=True, text=True, check=True)
    pages = re.search(r"^Pages:\s+(\d+)", out.stdout, re.M)
    size = re.search(r"^Page size:\s+([\d.]+) x ([\d.]+) pts", out.stdout, re.M)
    return int(pages.group(1)), (float(size.group(1)), float(size.group(2)))


def pdf_streams(data):
    """Every stream of the PDF, inflated where it is Flate-compressed."""
    for m in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", data, re.S):
        raw = m.group(1)
        try:
            yield zlib.decompress(raw)
        except zlib.error:
            yield raw


def outline_mask(img):
    """Pixels of the outline colour (BGR image), allowing for antialiasing."""
    b, g, r = (img[:, :, i].astype(int) for i in range(3))
    return (abs(r - OUTLINE[0]) < 25) & (abs(g - OUTLINE[1]) < 25) & (abs(b - OUTLINE[2]) < 25)


def check_text(rep, text):
    want = [
        "a1b2c3d4e5f60718",                  # pseudonym
        "Processed 2024-05-01 12:03 UTC",
        "48.1 %",                            # mean of 47.3, 52.1, 45.0 in large type
        "Reduced EF (below 50 %)",
        "SD 3.6 %",                          # sample SD of the three beats
        "range 45.0\u201352.1 %",
        "3 beats",
        "47.3", "52.1", "45.0",
        "clip shifted back to fit the video",
        "beats_disagree", "beat EFs differ by 7.1 points",
        "clip_shifted",
        "deeplabv3_resnet50", "r2plus1d_18", "3f9a2c1d", "b7e4d210",
        "echonetd phantom training set v1",
        "phantom-trained default model, not for clinical use",
        "Not a diagnosis.",
        "150 frames at 50.0 fps (CineRate)",
        "Below 50 %: yes",
        "ED, frame 0", "ES, frame 25",
    ]
    for w in want:
        rep.check(w in text, "pdftotext does not find %r" % w)
    rep.check("nan" not in text.lower().split(), "a NaN is printed as 'nan'")


def check_rows(rep, layout):
    """Each beat's row, as laid out: number, systole, clip start, ED, ES, EF."""
    for row in ("1 25 0 0 25 47.3", "2 75 43 50 75 52.1",
                "3 125 86 100 125 45.0 clip shifted back to fit the video"):
        pat = r"^\s*" + r"\s+".join(re.escape(c) for c in row.split()) + r"\s*$"
        rep.check(re.search(pat, layout, re.M), "beat row %r not found" % row)


def check_png(rep, png, expect_outline):
    img = cv2.imread(png, cv2.IMREAD_COLOR)
    if not rep.check(img is not None, "OpenCV cannot read %s" % png):
        return
    rep.check(img.shape == (PAGE_H, PAGE_W, 3), "PNG is %s" % (img.shape,))
    grey = img.mean(axis=2)
    ink = (grey < 200).mean()
    rep.check(0.03 < ink < 0.6, "PNG ink coverage %.3f (blank or black?)" % ink)
    rep.check(grey.std() > 20, "PNG has no contrast")
    out = outline_mask(img)
    n = int(out.sum())
    if not expect_outline:
        rep.check(n == 0, "%d outline-coloured pixels without masks" % n)
        return
    rep.check(n > 300, "only %d outline-coloured pixels" % n)
    ys, xs = np.nonzero(out)
    # the key frames sit in the top right quarter, right of the EF summary
    rep.check(xs.min() > PAGE_W * 0.45 and ys.max() < PAGE_H * 0.35,
              "outline colour outside the key frames: x %d-%d y %d-%d"
              % (xs.min(), xs.max(), ys.min(), ys.max()))
    # both key frames carry their own outline: the driver's LV is an
    # ellipse 62 px tall at ED and 48 px at ES, scaled alike
    half = PAGE_W - (PAGE_W - xs.min()) / 2
    ed, es = ys[xs < half], ys[xs > half]
    if rep.check(len(ed) > 100 and len(es) > 100, "outline on only one key frame"):
        ratio = (ed.max() - ed.min()) / (es.max() - es.min())
        rep.check(abs(ratio - 62.0 / 48.0) < 0.06,
                  "ED/ES outline heights ratio %.3f, want %.3f" % (ratio, 62.0 / 48.0))


def check_phi(rep, pdf, png, text, secrets):
    with open(pdf, "rb") as f:
        data = f.read()
    with open(png, "rb") as f:
        png_bytes = f.read()
    blobs = [("text", text.encode("utf-8")), ("PDF bytes", data), ("PNG bytes", png_bytes)]
    blobs += [("PDF stream", s) for s in pdf_streams(data)]
    for s in secrets:
        for what, blob in blobs:
            rep.check(s.encode("utf-8") not in blob, "%r appears in the %s" % (s, what))


def main():
    rep = Report("report_content")
    tmp = tempfile.mkdtemp(prefix="en-report-")
    try:
        # the output folder's name holds PHI too: the report must not print it
        out = os.path.join(tmp, "ZZPHI^NAME outputs")
        os.makedirs(out)
        source = "/data/ZZHOSPITAL/DOE^JANE/ZZPHI^NAME_19700101/IM0001.dcm"
        pdf, png = render(out, "study", ["--source", source, "--patient", "DOE^JANE"])
        pages, size = pdf_pages(pdf)
        rep.check(pages == 1, "%d pages" % pages)
        rep.check(abs(size[0] - 595.276) < 0.5 and abs(size[1] - 841.89) < 0.5,
                  "page is %s pt, not A4" % (size,))
        text = pdf_text(pdf)
        check_text(rep, text)
        check_rows(rep, pdf_text(pdf, layout=True))
        check_png(rep, png, True)
        check_phi(rep, pdf, png, text, PHI + [source, out, tmp])
        rep.check(sorted(os.listdir(out)) == ["study.pdf", "study.png"],
                  "output folder holds %s" % os.listdir(out))

        # the same study renders to the same bytes (the PDF's date is the
        # processing time, not the rendering time)
        again = os.path.join(tmp, "again")
        os.makedirs(again)
        pdf2, png2 = render(again, "study")
        for a, b in ((pdf, pdf2), (png, png2)):
            with open(a, "rb") as fa, open(b, "rb") as fb:
                rep.check(fa.read() == fb.read(), "%s differs on a second rendering"
                          % os.path.basename(a))

        pdf, png = render(tmp, "nomask")
        check_png(rep, png, False)
        text = pdf_text(pdf)
        rep.check("phantom-trained" not in text, "phantom warning without a phantom model")
        rep.check("48.1 %" in text, "nomask: EF missing")
    finally:
        shutil.rmtree(tmp)
    rep.finish()


if __name__ == "__main__":
    main()
