"""End to end: every generated echo DICOM through `echonetctl convert`.

Proves, per file: the reported facts match the generator's truth (frames,
frame rate and its source, transfer syntax); the located fan matches the
true fan (IoU >= 0.95) and excludes every burned-in text box; the AVI is
112x112 MJPEG that OpenCV reads, grey in three equal channels, named by the
pseudonym; no PHI string from any tag appears in any output byte; pixels
outside the fan cannot influence the output (changing the burned-in text
leaves the AVI identical); pseudonyms are stable per site and differ
across sites; the key store exists only when configured."""
import json
import os
import shutil
import sqlite3
import stat

import cv2
import numpy as np
import pydicom

import enlib

rep = enlib.Report("convert_e2e")
manifest = enlib.load_manifest()
good = [m for m in manifest if m["expect"] == "ok"]
rep.check(len(good) >= 20, "generator made %d good files, expected >= 20" % len(good))


def read_avi(path):
    cap = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, fr = cap.read()
        if not ok:
            break
        frames.append(fr)
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return np.array(frames), fps


def check_phi(name, phi, blobs):
    for s in phi:
        needle = s.encode()
        for what, blob in blobs.items():
            if needle and needle in blob:
                rep.check(False, "%s: PHI string %r found in %s" % (name, s, what))
                return
    rep.check(True, "")


def check_file(site, m):
    name = m["file"]
    path = os.path.join(enlib.TESTDATA, name)
    r = site.run("convert", path, "--json")
    if not rep.check(r.returncode == 0, "%s: exit %d: %s" % (name, r.returncode, r.stderr.decode(errors="replace").strip())):
        return None
    res = json.loads(r.stdout)
    rep.check(res["source"]["frames"] == m["frames"], "%s: frames %s != %s" % (name, res["source"]["frames"], m["frames"]))
    rep.check(res["source"]["rows"] == m["rows"] and res["source"]["cols"] == m["cols"], "%s: geometry" % name)
    rep.check(abs(res["fps"] - m["fps"]) < 0.01, "%s: fps %s != %s" % (name, res["fps"], m["fps"]))
    rep.check(res["fps_source"] == m["fps_source"], "%s: fps_source %s != %s" % (name, res["fps_source"], m["fps_source"]))
    rep.check(res["transfer_syntax_uid"] == m["transfer_syntax"], "%s: syntax %s" % (name, res["transfer_syntax_uid"]))

    sec = res["sector"]
    located = enlib.sector_mask(m["rows"], m["cols"], sec["apex_x"], sec["apex_y"],
                                np.radians(sec["angle_left_deg"]), np.radians(sec["angle_right_deg"]),
                                sec["radius"], sec["radius_inner"], sec["top_y"])
    truth = cv2.imread(os.path.join(enlib.TESTDATA, m["fanmask"]), cv2.IMREAD_GRAYSCALE) > 127
    score = enlib.iou(located, truth)
    rep.check(score >= 0.95, "%s: fan IoU %.3f < 0.95 (%s)" % (name, score, sec["detail"]))
    for box in m.get("text_boxes", []):
        x0, y0, x1, y1 = box
        inside = located[max(0, y0):y1 + 1, max(0, x0):x1 + 1].sum()
        rep.check(inside == 0, "%s: %d pixels of burned-in box %s inside the located fan" % (name, inside, box))

    avi = res["output"]
    rep.check(os.path.basename(avi) == res["pseudonym"] + ".avi", "%s: output not named by pseudonym: %s" % (name, avi))
    frames, fps = read_avi(avi)
    rep.check(frames.shape[1:] == (112, 112, 3), "%s: AVI shape %s" % (name, frames.shape))
    rep.check(len(frames) == m["frames"], "%s: AVI has %d frames, expected %d" % (name, len(frames), m["frames"]))
    rep.check(abs(fps - m["fps"]) < 0.05, "%s: AVI fps %s != %s" % (name, fps, m["fps"]))
    if len(frames):
        spread = np.abs(frames.astype(int) - frames[..., :1].astype(int)).max()
        rep.check(spread <= 2, "%s: AVI channels differ by %d: not grey" % (name, spread))
        rep.check(frames.max() > 40, "%s: AVI is (nearly) black" % name)

    blobs = {"AVI": open(avi, "rb").read(), "JSON": r.stdout, "stderr": r.stderr,
             "file names": "\n".join(os.listdir(site.out)).encode()}
    check_phi(name, m.get("phi_strings", []), blobs)
    return res


def clean_pixels_twin(site, m, res):
    """Rewrites the burned-in boxes of a native file with other content:
    the AVI must not change by a single byte."""
    src = os.path.join(enlib.TESTDATA, m["file"])
    ds = pydicom.dcmread(src)
    arr = ds.pixel_array.copy()
    rng = np.random.default_rng(7)
    multi = arr.ndim == 4 or (arr.ndim == 3 and int(ds.get("NumberOfFrames", 1)) > 1)
    for x0, y0, x1, y1 in m["text_boxes"]:
        sl = arr[:, y0:y1 + 1, x0:x1 + 1] if multi else arr[y0:y1 + 1, x0:x1 + 1]
        # Other burned-in content, static like real text (the same patch in
        # every frame), so only its pixel values differ from the original.
        patch = rng.integers(0, 256, size=sl.shape[1:] if multi else sl.shape, dtype=arr.dtype)
        sl[...] = patch
    ds.PixelData = arr.tobytes()
    twin = os.path.join(site.dir, "twin.dcm")
    ds.save_as(twin)
    r = site.run("convert", twin, os.path.join(site.dir, "twin.avi"), "--json")
    if not rep.check(r.returncode == 0, "%s twin: %s" % (m["file"], r.stderr.decode(errors="replace"))):
        return
    a, _ = read_avi(res["output"])
    b, _ = read_avi(os.path.join(site.dir, "twin.avi"))
    rep.check(a.shape == b.shape and np.array_equal(a, b),
              "%s: changing burned-in text changed the AVI (max diff %s)"
              % (m["file"], np.abs(a.astype(int) - b.astype(int)).max() if a.shape == b.shape else "shape"))


site = enlib.Site()
twins = 0
for m in good:
    res = check_file(site, m)
    native = m["transfer_syntax"] in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")
    if (res and native and m.get("text_boxes") and twins < 4
            and m["photometric"] in ("MONOCHROME2", "RGB") and not m.get("planar")):
        clean_pixels_twin(site, m, res)
        twins += 1
rep.check(twins >= 2, "only %d clean-pixel twin checks ran" % twins)

# Pseudonyms: stable within a site, different across sites; key store only
# when configured, 0600, and holding what it must.
first = os.path.join(enlib.TESTDATA, good[0]["file"])
a = json.loads(site.run("convert", first, os.path.join(site.dir, "a.avi"), "--json").stdout)
b = json.loads(site.run("convert", first, os.path.join(site.dir, "b.avi"), "--json").stdout)
rep.check(a["pseudonym"] == b["pseudonym"], "pseudonym not stable within a site")
rep.check(not os.path.exists(os.path.join(site.dir, "keys.tsv")), "key store written although not configured")
mode = stat.S_IMODE(os.stat(os.path.join(site.dir, "secret")).st_mode)
rep.check(mode == 0o600, "site secret mode %o" % mode)
other = enlib.Site(keystore=True)
c = json.loads(other.run("convert", first, "--json").stdout)
rep.check(c["pseudonym"] != a["pseudonym"], "pseudonym identical across sites")
rep.check(os.path.exists(other.keystore), "key store not written although configured")
if os.path.exists(other.keystore):
    rep.check(stat.S_IMODE(os.stat(other.keystore).st_mode) == 0o600, "key store not 0600")
    # An SQLite file (docs/deidentification.md): read it as the sender will.
    db = sqlite3.connect("file:%s?mode=ro" % other.keystore, uri=True)
    rows = db.execute("SELECT * FROM links WHERE pseudonym = ?", (c["pseudonym"],)).fetchall()
    db.close()
    text = "\t".join(str(v) for row in rows for v in row)
    rep.check(len(rows) == 1, "key store holds %d records for the pseudonym, not 1" % len(rows))
    rep.check(any(s in text for s in good[0]["phi_strings"]), "key store lacks the identifiers")
# Limits from configuration: a file over a limit is refused, naming it.
for key, value in (("max_frames", 2), ("max_rows", 100), ("max_cols", 100), ("max_pixel_mb", 1),
                   ("max_file_mb", 1)):
    r = site.run("--set", "limits.%s=%d" % (key, value), "convert", first, os.path.join(site.dir, "l.avi"))
    msg = r.stderr.decode(errors="replace")
    rep.check(r.returncode == 1 and key in msg, "limit %s=%d: exit %d: %s" % (key, value, r.returncode, msg))
site.close()
other.close()
rep.finish()
