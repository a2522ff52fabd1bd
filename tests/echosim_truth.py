"""tools/echosim.py, the simulator the default models were trained on and
the accuracy benchmark measures against: its truth must be the truth.

  * seeded: the same seed gives identical frames and truth;
  * the LV masks follow the volume curve: per frame, the mask's pixel area
    (in cm^2, from the view's scale) matches the polygon area the volumes
    are computed from, within rasterisation error;
  * ED and ES are where the volume curve has its local maximum and minimum,
    every beat's EF is 1 - ESV/EDV of its own frames, and the study EF is
    their mean;
  * irregular rhythms really are irregular (RR intervals vary);
  * the written DICOM holds the study: pydicom reads it, the frame count and
    FrameTime match, the fan sits where the truth says, and the pixels
    inside it move while burned-in text outside it does not;
  * echonetctl convert finds the fan the simulator drew (IoU >= 0.95), so
    truth masks map into the network's view;
  * a whole study (`write_study`) is what it claims: every instance of one
    StudyInstanceUID and patient with its own SOPInstanceUID, View Code
    Sequence written when asked, the still a single-frame US Image, the
    Doppler strip a spectral region, the non-echo object a secondary
    capture of another modality; the other views keep the heart's cycle
    (a two-chamber LV has the four-chamber LV's areas frame by frame), and
    the study EF is the mean of the A4C clips' complete beats.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

TOP = os.environ.get("EN_TOP_SRCDIR", os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(TOP, "tools"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import echosim  # noqa: E402
import enlib  # noqa: E402

rep = enlib.Report("echosim_truth")

# Determinism.
a = echosim.Study(echosim.draw_params(321))
b = echosim.Study(echosim.draw_params(321))
a.p.seconds = b.p.seconds = 1.5
a.nframes = b.nframes = int(round(1.5 * a.p.fps))
a.times = b.times = np.arange(a.nframes) / a.p.fps
fa, ma = a.render_view()
fb, mb = b.render_view()
rep.check(np.array_equal(fa, fb) and np.array_equal(ma, mb), "same seed, different frames")
rep.check(fa.shape == (a.nframes, 112, 112) and fa.dtype == np.uint8, "view shape %s" % (fa.shape,))

for seed in (11, 12, 13, 14, 15, 16):
    st = echosim.Study(echosim.draw_params(seed))
    tr = st.truth()
    g = echosim.view_geometry(st.p)
    masks = echosim.view_masks(st)
    cm2 = masks.reshape(len(masks), -1).sum(1) / g.px_per_cm ** 2
    area = np.array(tr["area_cm2"])
    rel = np.abs(cm2 - area) / area
    rep.check(rel.max() < 0.06, "seed %d: mask area off the polygon's by %.1f %%" % (seed, 100 * rel.max()))
    vol = np.array(tr["volume_ml"])
    n = len(vol)
    for bt in tr["beats"]:
        es = int(round(bt["es_frame"]))
        lo, hi = max(0, es - 3), min(n, es + 4)
        rep.check(vol[es] <= vol[lo:hi].min() + 0.02 * vol[es],
                  "seed %d: ES frame %d is not a volume minimum" % (seed, es))
        rep.check(abs(bt["ef"] - 100 * (1 - bt["esv_ml"] / bt["edv_ml"])) < 1e-9, "beat EF formula")
        if bt["ed_in_video"]:
            ed = int(round(bt["ed_frame"]))
            lo, hi = max(0, ed - 3), min(n, ed + 4)
            rep.check(vol[ed] >= vol[lo:hi].max() - 0.02 * vol[ed],
                      "seed %d: ED frame %d is not a volume maximum" % (seed, ed))
            # The beat's EF from the frames nearest ED and ES agrees with the
            # exact one within what a frame's rounding moves it.
            ef_frames = 100 * (1 - vol[es] / vol[ed])
            rep.check(abs(ef_frames - bt["ef"]) < 3.0,
                      "seed %d: EF from frames %.1f vs exact %.1f" % (seed, ef_frames, bt["ef"]))
    rep.check(abs(tr["ef"] - np.mean([bt["ef"] for bt in tr["beats"]])) < 1e-9, "study EF = mean")
    rep.check(10 <= tr["ef"] <= 85, "seed %d: EF %.1f out of range" % (seed, tr["ef"]))

# Irregular rhythms vary their RR intervals; regular ones barely.
cv = {}
for seed in range(40, 80):
    p = echosim.draw_params(seed)
    st = echosim.Study(p)
    rr = np.array([bt.length for bt in st.beats])
    cv[seed] = (p.arrhythmia > 0.05 or p.premature > 0, float(rr.std() / rr.mean()))
irr = [c for i, c in cv.values() if i]
reg = [c for i, c in cv.values() if not i]
rep.check(irr and reg and np.median(irr) > 2 * np.median(reg),
          "RR variation irregular %s vs regular %s" % (np.median(irr), np.median(reg)))

# DICOM files and the pipeline's view of them.
ctl = os.environ.get("EN_ECHONETCTL", os.path.join(TOP, "build", "echonetctl"))
with tempfile.TemporaryDirectory() as tmp:
    r = subprocess.run([sys.executable, os.path.join(TOP, "tools", "echosim.py"), "dicoms", "--out",
                        tmp, "--count", "3", "--seed", "777", "--held-out", "--max-seconds", "1.5"],
                       capture_output=True, text=True)
    rep.check(r.returncode == 0, "echosim dicoms failed: " + r.stderr[-500:])
    truth = json.load(open(os.path.join(tmp, "truth.json")))
    import pydicom
    for t in truth:
        ds = pydicom.dcmread(os.path.join(tmp, t["file"]))
        rep.check(int(ds.NumberOfFrames) == t["frames"], "%s: frames" % t["file"])
        rep.check(abs(1000.0 / float(ds.FrameTime) - t["fps"]) < 0.01, "%s: FrameTime" % t["file"])
        rep.check(ds.Modality == "US", "%s: modality" % t["file"])
        out = subprocess.run([ctl, "--set", "deid.secret_file=%s/secret" % tmp, "convert",
                              os.path.join(tmp, t["file"]), os.path.join(tmp, "v.avi"), "--json"],
                             capture_output=True, text=True)
        rep.check(out.returncode == 0, "%s: convert failed: %s" % (t["file"], out.stderr))
        if out.returncode:
            continue
        j = json.loads(out.stdout)
        rep.check(j["video"]["frames"] == t["frames"], "%s: AVI frames" % t["file"])
        # The located fan against the drawn one, in the source image.
        s = j["sector"]
        rows, cols = ds.Rows, ds.Columns
        ys, xs = np.mgrid[0:rows, 0:cols]
        def fan(ax, ay, al, ar, rad, rin=0.0, top=0.0):
            rr = np.hypot(xs - ax, ys - ay)
            ang = np.degrees(np.arctan2(xs - ax, ys - ay))
            return (rr <= rad) & (rr >= rin) & (ang >= al) & (ang <= ar) & (ys >= top)
        found = fan(s["apex_x"], s["apex_y"], s["angle_left_deg"], s["angle_right_deg"], s["radius"],
                    s["radius_inner"], s["top_y"])
        m = echosim.MACHINES[[x["name"] for x in echosim.MACHINES].index(t["machine"])]
        rep.check(found.sum() > 0, "%s: empty located fan" % t["file"])
        # The drawn fan: from the truth's geometry as the writer placed it.
        _, _, f = echosim.dicom_layout(m, t["seed"], t["frames"], t["angle_left_deg"],
                                       t["angle_right_deg"], t["depth_cm"])
        drawn = f.mask(rows, cols)
        iou = (found & drawn).sum() / max(1, (found | drawn).sum())
        rep.check(iou >= 0.95, "%s (%s): located fan IoU %.3f" % (t["file"], t["machine"], iou))

# Whole studies.
p = echosim.draw_params(4242)
p.seconds = 1.5
base = echosim.Study(p)
for view in ("a2c", "plax", "subcostal"):
    v = echosim.ViewStudy(p, view, np.random.default_rng(1))
    a = [echosim.polygon_area(base.heart(t).lv) for t in base.times[:10]]
    b = [echosim.polygon_area(v.heart(t).lv) for t in v.times[:10]]
    rep.check(np.allclose(a, b), "%s: the LV is not the same heart's" % view)
psax = echosim.ViewStudy(p, "psax", np.random.default_rng(1))
h = psax.heart(0.0)
ys = h.lv[:, 1]
rep.check(len(h.cavities) == 2 and abs((ys.max() - ys.min()) / (np.ptp(h.lv[:, 0])) - 1) < 0.01,
          "psax: the LV is not round")
with tempfile.TemporaryDirectory() as tmp:
    import pydicom
    rec = echosim.write_study(tmp, 4243, n_a4c=2, others=("a2c", "still", "doppler", "nonecho"),
                              max_seconds=1.5, with_codes=True, work=os.path.join(tmp, "w"))
    dss = {i["kind"] + str(k): pydicom.dcmread(os.path.join(tmp, i["file"]))
           for k, i in enumerate(rec["instances"])}
    rep.check(len(set(d.StudyInstanceUID for d in dss.values())) == 1 and
              len(set(d.PatientName for d in dss.values())) == 1, "one study, one patient")
    rep.check(len(set(d.SOPInstanceUID for d in dss.values())) == len(dss), "one SOP UID each")
    for key, d in dss.items():
        kind = key.rstrip("0123456789")
        if kind in ("a4c", "a2c"):
            rep.check(d.ViewCodeSequence[0].CodeValue == echosim.VIEW_CODES[kind][1],
                      "%s: view code" % key)
        if kind == "still":
            rep.check(d.SOPClassUID == "1.2.840.10008.5.1.4.1.1.6.1" and
                      "NumberOfFrames" not in d, "still: single-frame US Image")
        if kind == "doppler":
            rep.check(d.SequenceOfUltrasoundRegions[0].RegionSpatialFormat == 3, "doppler region")
        if kind == "nonecho":
            rep.check(d.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and d.Modality == "OT",
                      "nonecho: SC, modality OT")
    a4c = [i for i in rec["instances"] if i["kind"] == "a4c"]
    beats = [e for i in a4c for e in i["complete_beat_efs"]]
    rep.check(len(a4c) == 2 and abs(rec["ef"] - np.mean(beats)) < 1e-9,
              "study EF is the mean of the A4C clips' complete beats")
    rep.check(sum(i["counts"] for i in rec["instances"]) == 2, "only the A4C clips count")
sys.exit(rep.finish())
