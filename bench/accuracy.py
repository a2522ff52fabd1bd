#!/usr/bin/python3
"""accuracy.py - how accurate echonetd is, end to end, on simulated studies
with known truth.

Each study is a DICOM file written by tools/echosim.py (held-out seeds and
machine geometries the default models never saw in training), processed by
`echonetctl process` exactly as the daemon processes files (read, deidentify,
locate and crop the sector, segment, find the beats, EF beat by beat, store).
The results are read back from the database (`echonetctl export`: the clip
the file became) and the clip's AVI is segmented again (`echonetctl segment
--masks`) to compare the LV masks with the truth.

Measured:
  EF      per study: MAE, RMSE, bias, Pearson r (truth: the mean of the
          area-length EFs of the beats whose end-systole is in the video)
  beats   detected systoles against true end-systoles, matched one to one
          within +-0.1 s: precision and recall.  Recall counts the systoles
          of complete beats (both end-diastoles around the systole are in
          the video: a minimum cut off by the first or last frame is not a
          whole event, and upstream's prominence rule cannot see it), and is
          also given over all systoles in the videos.
  Dice    of the LV masks at every true ED and ES frame in the video
  AUC     of "EF < 50 %" (truth) against the predicted EF

Any weights can be measured: --seg and --ef (or a config with [models]);
without them the configured defaults (the shipped phantom models) are used.

    /usr/bin/python3 bench/accuracy.py --echonetctl build/echonetctl \\
        --studies 40 --seed 50000 [--data DIR] [--json-out FILE] [--check]

--check exits 1 unless EF MAE <= 5, Dice >= 0.90 and beat recall >= 0.95
(issue 5's targets for the default models); --targets changes them.

Whole studies (issue 11): --whole-studies N simulates N studies with
`echosim.py study` (A4C clips of one heart and instances that must not
count), processes each through `echonetctl process` and measures which
clips counted: how often an instance that must not count was let in, how
often a good A4C clip was left out, how many studies got an EF, and the
study EF against the truth (the mean of the A4C clips' complete beats),
overall and by whether the machine wrote view codes.

    /usr/bin/python3 bench/accuracy.py --whole-studies 20 --seed 90000 \
        [--data DIR] [--json-out FILE]
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.join(HERE, "..")


def run(cmd, **kw):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)


def generate(data, studies, seed, max_seconds):
    r = run([sys.executable, os.path.join(TOP, "tools", "echosim.py"), "dicoms", "--out", data,
             "--count", studies, "--seed", seed, "--held-out"]
            + (["--max-seconds", max_seconds] if max_seconds else []))
    if r.returncode != 0:
        sys.exit("accuracy: echosim failed: " + r.stderr)


def match(pred, truth, tol):
    """One-to-one matching of frame positions within tol, nearest first.
    Returns the list of (pred, truth) pairs."""
    pairs = sorted((abs(p - t), i, j) for i, p in enumerate(pred) for j, t in enumerate(truth)
                   if abs(p - t) <= tol)
    used_p, used_t, out = set(), set(), []
    for _, i, j in pairs:
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
            out.append((i, j))
    return out


def auc(scores, labels):
    """Mann-Whitney estimate of the ROC AUC (ties count one half)."""
    pos = [s for s, l in zip(scores, labels) if l]
    neg = [s for s, l in zip(scores, labels) if not l]
    if not pos or not neg:
        return None
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def dice(a, b):
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int((a & b).sum()) / s


def evaluate(args):
    data = args.data or tempfile.mkdtemp(prefix="echonet-acc-")
    truth_path = os.path.join(data, "truth.json")
    if not os.path.exists(truth_path):
        t0 = time.time()
        generate(data, args.studies, args.seed, args.max_seconds)
        print(f"accuracy: simulated {args.studies} held-out studies in {time.time() - t0:.0f} s",
              file=sys.stderr)
    with open(truth_path) as fh:
        truth = json.load(fh)
    state = tempfile.mkdtemp(prefix="echonet-acc-state-")
    sets = ["--set", f"paths.output_dir={state}/out", "--set", f"paths.database={state}/r.db",
            "--set", f"deid.secret_file={state}/secret", "--set", "report.pdf=no",
            "--set", "report.png=no", "--set", f"nn.threads={args.threads}"]
    if args.seg:
        sets += ["--set", f"models.segmentation={os.path.abspath(args.seg)}"]
    if args.ef:
        sets += ["--set", f"models.ef={os.path.abspath(args.ef)}"]
    base = [args.echonetctl] + (["-c", args.config] if args.config else []) + sets
    os.makedirs(os.path.join(state, "out"))
    rows = []
    try:
        for k, t in enumerate(truth, 1):
            path = os.path.join(data, t["file"])
            r = run(base + ["process", "--json", path])
            if r.returncode != 0:
                rows.append({"file": t["file"], "error": r.stderr.strip()})
                print(f"accuracy: {t['file']}: FAILED: {r.stderr.strip()}", file=sys.stderr)
                continue
            res = [x for x in map(json.loads, r.stdout.strip().splitlines())
                   if x.get("kind") == "clip"][-1]
            ex = run(base + ["export", "--format", "json", res["pseudonym"]])
            study = json.loads(ex.stdout)
            # the study's clip this file became (each file is one instance)
            study = [c for c in study["studies"][0]["clips"] if c["clip_id"] == res["clip_id"]][0]
            masks = segment(base, res["video"], state)
            rows.append(score(t, res, study, masks, data))
            row = rows[-1]
            print(f"accuracy: {k}/{len(truth)} {t['file']}: EF {row['ef_pred']:.1f} "
                  f"(truth {row['ef_true']:.1f}), beats {row['tp']}/{row['n_true']} "
                  f"(+{row['fp']} extra), Dice {row['dice_mean']:.3f}", file=sys.stderr)
    finally:
        shutil.rmtree(state, ignore_errors=True)
        if not args.data and not args.keep:
            shutil.rmtree(data, ignore_errors=True)
    return summarise(rows)


def segment(base, avi, state):
    """The LV masks of the study's video, with the weights it was processed
    with (the same configuration)."""
    out = os.path.join(state, "masks.u8")
    r = run(base + ["segment", avi, "--masks", out, "--out", os.devnull])
    if r.returncode != 0:
        sys.exit("accuracy: segment failed: " + r.stderr)
    m = np.fromfile(out, np.uint8)
    return m.reshape(-1, 112, 112).astype(bool)


def score(t, res, study, masks, data):
    fps = t["fps"]
    n = t["frames"]
    tol = 0.1 * fps
    pred_sys = [b["systole_frame"] for b in study["beats"]]
    true_es = [b["es_frame"] for b in t["beats"]]
    obs = [b["complete"] for b in t["beats"]]
    pairs = match(pred_sys, true_es, tol)
    tp_all = len(pairs)
    tp_obs = sum(1 for _, j in pairs if obs[j])
    beat_err = [abs(study["beats"][i]["ef"] - t["beats"][j]["ef"]) for i, j in pairs]
    truth_masks = np.unpackbits(np.load(os.path.join(data, t["lv_masks_file"]))["masks"],
                                axis=-1)[..., :112].astype(bool)
    dices = []
    for b in t["beats"]:
        for key in ("ed_frame", "es_frame"):
            f = int(round(b[key]))
            if 0 <= f < min(len(masks), len(truth_masks)) and (key == "es_frame" or b["ed_in_video"]):
                dices.append(dice(masks[f], truth_masks[f]))
    models = study.get("models") or {}
    return {"file": t["file"], "machine": t["machine"], "storage": t["storage"],
            "models": {k: (v or {}).get("origin") for k, v in models.items()},
            "irregular": t["irregular"], "fps": fps,
            "ef_true": t["ef"], "ef_pred": res["ef_mean"], "n_pred": len(pred_sys),
            "n_true": sum(obs), "tp": tp_obs, "n_true_all": len(true_es), "tp_all": tp_all,
            "fp": len(pred_sys) - len(pairs),
            "beat_abs_err": beat_err, "dices": dices,
            "systoles_found": pred_sys, "systoles_true": [round(e, 1) for e in true_es],
            "dice_mean": float(np.mean(dices)) if dices else float("nan")}


def summarise(rows):
    ok = [r for r in rows if "error" not in r]
    if not ok:
        return {"studies": len(rows), "failed": len(rows)}
    err = np.array([r["ef_pred"] - r["ef_true"] for r in ok])
    et = np.array([r["ef_true"] for r in ok])
    ep = np.array([r["ef_pred"] for r in ok])
    tp = sum(r["tp"] for r in ok)
    n_true = sum(r["n_true"] for r in ok)
    tp_all = sum(r["tp_all"] for r in ok)
    n_true_all = sum(r["n_true_all"] for r in ok)
    n_pred = sum(r["n_pred"] for r in ok)
    matched = sum(r["n_pred"] - r["fp"] for r in ok)
    dices = [d for r in ok for d in r["dices"]]
    beat_err = [e for r in ok for e in r["beat_abs_err"]]
    s = {
        "studies": len(rows), "failed": len(rows) - len(ok),
        "ef_mae": float(np.mean(np.abs(err))),
        "ef_rmse": float(math.sqrt(np.mean(err ** 2))),
        "ef_bias": float(np.mean(err)),
        "ef_r": float(np.corrcoef(et, ep)[0, 1]) if len(ok) > 2 else None,
        "beat_ef_mae": float(np.mean(beat_err)) if beat_err else None,
        "beat_precision": matched / n_pred if n_pred else None,
        "beat_recall": tp / n_true if n_true else None,
        "beat_recall_all": tp_all / n_true_all if n_true_all else None,
        "systoles_observable": n_true, "systoles_in_video": n_true_all,
        "dice_mean": float(np.mean(dices)) if dices else None,
        "dice_p10": float(np.percentile(dices, 10)) if dices else None,
        "dice_min": float(np.min(dices)) if dices else None,
        "auc_ef50": auc(list(50.0 - ep), [e < 50.0 for e in et]),
        "positives_ef50": int(sum(e < 50.0 for e in et)),
        "irregular_ef_mae": (float(np.mean([abs(r["ef_pred"] - r["ef_true"]) for r in ok
                                            if r["irregular"]]))
                             if any(r["irregular"] for r in ok) else None),
        "models": sorted({f"{k}: {v}" for r in ok for k, v in r["models"].items()}),
        "rows": rows,
    }
    return s


def generate_studies(data, count, seed, max_seconds):
    r = run([sys.executable, os.path.join(TOP, "tools", "echosim.py"), "study", "--out", data,
             "--count", count, "--seed", seed, "--held-out"]
            + (["--max-seconds", max_seconds] if max_seconds else []))
    if r.returncode != 0:
        sys.exit("accuracy: echosim failed: " + r.stderr)


def evaluate_studies(args):
    """Which clips counted, over whole simulated studies."""
    import sqlite3
    data = args.data or tempfile.mkdtemp(prefix="echonet-studies-")
    truth_path = os.path.join(data, "studies.json")
    if not os.path.exists(truth_path):
        t0 = time.time()
        generate_studies(data, args.whole_studies, args.seed, args.max_seconds)
        print(f"accuracy: simulated {args.whole_studies} studies in {time.time() - t0:.0f} s",
              file=sys.stderr)
    with open(truth_path) as fh:
        truth = json.load(fh)
    rows, studies = [], []
    try:
        for rec in truth:
            folder = os.path.join(data, f"study{rec['seed']}") if len(truth) > 1 else data
            state = tempfile.mkdtemp(prefix="echonet-acc-state-")
            os.makedirs(os.path.join(state, "out"))
            sets = ["--set", f"paths.output_dir={state}/out", "--set", f"paths.database={state}/r.db",
                    "--set", f"deid.secret_file={state}/secret", "--set", "report.pdf=no",
                    "--set", "report.png=no", "--set", f"nn.threads={args.threads}"]
            base = [args.echonetctl] + (["-c", args.config] if args.config else []) + sets
            files = [i["file"] for i in rec["instances"]]
            r = run(base + ["process", "--json"] + [os.path.join(folder, f) for f in files])
            lines = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
            clips = [x for x in lines if x.get("kind") == "clip"]
            study = [x for x in lines if x.get("kind") == "study"]
            db = sqlite3.connect(os.path.join(state, "r.db"))
            for inst, c in zip(rec["instances"], clips):
                v, codes = db.execute("SELECT verdict, verdict_codes FROM clips WHERE id = ?",
                                      (c["clip_id"],)).fetchone()
                rows.append({"seed": rec["seed"], "kind": inst["kind"], "counts": inst["counts"],
                             "codes": rec["view_codes"], "verdict": v, "reasons": codes})
            db.close()
            ef = study[0]["ef_mean"] if study else None
            studies.append({"seed": rec["seed"], "codes": rec["view_codes"], "truth": rec["ef"],
                            "ef": ef, "clips_usable": study[0]["clips_usable"] if study else 0,
                            "failed": len(clips) != len(files)})
            shutil.rmtree(state, ignore_errors=True)
            print(f"accuracy: study {rec['seed']}: EF {fmt(ef, 1)} (truth {rec['ef']:.1f}), "
                  f"{studies[-1]['clips_usable']} usable of {len(files)}", file=sys.stderr)
    finally:
        if not args.data and not args.keep:
            shutil.rmtree(data, ignore_errors=True)
    return summarise_studies(rows, studies)


def rate(rows, pred):
    sel = [r for r in rows if pred(r)]
    return sum(r["verdict"] == "usable" for r in sel), len(sel)


def summarise_studies(rows, studies):
    s = {"studies": len(studies), "failed": sum(x["failed"] for x in studies), "by_kind": {}}
    for kind in sorted(set(r["kind"] for r in rows)):
        k = [r for r in rows if r["kind"] == kind]
        s["by_kind"][kind] = {v: sum(r["verdict"] == v for r in k)
                              for v in ("usable", "unusable", "not_analysed")}
    for label, codes in (("all", None), ("with_codes", True), ("without_codes", False)):
        sel = [r for r in rows if codes is None or r["codes"] == codes]
        let_in = rate(sel, lambda r: not r["counts"])
        kept = rate(sel, lambda r: r["counts"])
        st = [x for x in studies if codes is None or x["codes"] == codes]
        with_ef = [x for x in st if x["ef"] is not None]
        err = [abs(x["ef"] - x["truth"]) for x in with_ef]
        s[label] = {"must_not_count": let_in[1], "let_in": let_in[0],
                    "a4c": kept[1], "a4c_left_out": kept[1] - kept[0],
                    "studies": len(st), "studies_with_ef": len(with_ef),
                    "study_ef_mae": float(np.mean(err)) if err else None,
                    "study_ef_max_err": float(np.max(err)) if err else None}
    s["rows"] = rows
    s["per_study"] = studies
    return s


def print_studies(s):
    print(f"studies {s['studies']} (failed {s['failed']})")
    for kind, c in s["by_kind"].items():
        print(f"  {kind:10s} usable {c['usable']:3d}  unusable {c['unusable']:3d}  "
              f"not analysed {c['not_analysed']:3d}")
    for label in ("all", "with_codes", "without_codes"):
        x = s[label]
        print(f"{label}: let in {x['let_in']} of {x['must_not_count']} that must not count; "
              f"left out {x['a4c_left_out']} of {x['a4c']} A4C clips; EF for "
              f"{x['studies_with_ef']} of {x['studies']} studies, MAE {fmt(x['study_ef_mae'], 2)}"
              f" (max {fmt(x['study_ef_max_err'], 1)})")


def fmt(v, p=3):
    return "n/a" if v is None else (f"{v:.{p}f}" if isinstance(v, float) else str(v))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--echonetctl", default=os.path.join(TOP, "build", "echonetctl"))
    ap.add_argument("--config", help="echonetd.conf to use (its [models])")
    ap.add_argument("--seg", help="segmentation weights (safetensors)")
    ap.add_argument("--ef", help="EF weights (safetensors)")
    ap.add_argument("--data", help="folder with truth.json (made by echosim if absent)")
    ap.add_argument("--keep", action="store_true", help="keep the generated studies")
    ap.add_argument("--studies", type=int, default=40)
    ap.add_argument("--seed", type=int, default=50000)
    ap.add_argument("--max-seconds", type=float, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json-out")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--targets", default="5,0.90,0.95",
                    help="EF MAE, Dice, beat recall for --check")
    ap.add_argument("--whole-studies", type=int, default=0,
                    help="measure clip verdicts on this many whole simulated studies")
    args = ap.parse_args(argv)
    if args.data:
        os.makedirs(args.data, exist_ok=True)
    if args.whole_studies:
        s = evaluate_studies(args)
        if args.json_out:
            with open(args.json_out, "w") as fh:
                json.dump(s, fh, indent=1)
        print_studies(s)
        return 1 if s["failed"] else 0
    s = evaluate(args)
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(s, fh, indent=1)
    print(f"studies {s['studies']} (failed {s['failed']})")
    for m in s.get("models", []):
        print(f"model {m}")
    if "ef_mae" not in s:
        return 1
    print(f"EF: MAE {fmt(s['ef_mae'], 2)}  RMSE {fmt(s['ef_rmse'], 2)}  bias {fmt(s['ef_bias'], 2)}"
          f"  r {fmt(s['ef_r'])}  per-beat MAE {fmt(s['beat_ef_mae'], 2)}"
          f"  irregular-rhythm MAE {fmt(s['irregular_ef_mae'], 2)}")
    print(f"beats: precision {fmt(s['beat_precision'])}  recall {fmt(s['beat_recall'])} of "
          f"{s['systoles_observable']} systoles of complete beats ({fmt(s['beat_recall_all'])} of all "
          f"{s['systoles_in_video']} in the videos, edge ones included)")
    print(f"Dice ED/ES: mean {fmt(s['dice_mean'])}  10th percentile {fmt(s['dice_p10'])}"
          f"  min {fmt(s['dice_min'])}")
    print(f"EF < 50 %: AUC {fmt(s['auc_ef50'])} ({s['positives_ef50']} of {s['studies']} below 50)")
    if args.check:
        mae, dmin, rec = (float(x) for x in args.targets.split(","))
        bad = []
        if s["failed"]:
            bad.append(f"{s['failed']} studies failed")
        if s["ef_mae"] > mae:
            bad.append(f"EF MAE {s['ef_mae']:.2f} > {mae}")
        if s["dice_mean"] is None or s["dice_mean"] < dmin:
            bad.append(f"Dice {fmt(s['dice_mean'])} < {dmin}")
        if s["beat_recall"] is None or s["beat_recall"] < rec:
            bad.append(f"beat recall {fmt(s['beat_recall'])} < {rec}")
        if bad:
            print("accuracy: targets missed: " + "; ".join(bad))
            return 1
        print("accuracy: targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
