"""make_seeds.py - seed corpora for the libFuzzer harnesses in tests/fuzz/.

libFuzzer mutates what it is given, and runs fastest on small inputs, so
the seeds are the project's own test inputs made small: every encoding and
photometric interpretation of tests/gen/make_dicoms.py at 48 x 32 pixels
and 3 frames (through the generator's own dataset builder and the same
DCMTK encoders), with and without ultrasound regions; a few AVIs of the
reader's own kind (MJPEG, written with OpenCV as upstream does); weights
files with the shipped models' tensor names, metadata and header layout
over tiny tensors (tools/nn_safetensors.py); the shipped models' JSON
headers; and etc/echonetd.conf, as shipped and with every setting
written out.  Nothing here is committed: scripts/fuzz.sh
runs this at test time.

    /usr/bin/python3 tests/fuzz/make_seeds.py --out DIR

writes DIR/<target>/ for each harness (dicom-scan and dicom-read share the
DICOM seeds).
"""
import argparse
import json
import os
import re
import shutil
import struct
import sys
import tempfile
from dataclasses import replace
from types import SimpleNamespace

import numpy as np

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(TOP, "tests", "gen"))
sys.path.insert(0, os.path.join(TOP, "tools"))

import make_dicoms as md  # noqa: E402
import nn_safetensors  # noqa: E402

ROWS, COLS, FRAMES = 32, 48, 3


def tiny_scene():
    """What add_regions reads from a scene, for the small picture: a fan
    with its apex at the top middle and an ECG strip along the bottom."""
    fan = SimpleNamespace(apex_x=COLS / 2, apex_y=1.0, radius=ROWS - 8.0)
    spec = SimpleNamespace(rows=ROWS, cols=COLS, depth_cm=15.0)
    return SimpleNamespace(fan=fan, spec=spec, bbox=(4, 1, COLS - 5, ROWS - 7),
                           ecg_box=(0, ROWS - 5, COLS - 1, ROWS - 1))


def dicom_seeds(out, workdir):
    rng = np.random.default_rng(1)
    index = rng.integers(0, md.GREY_LEVELS, size=(FRAMES, ROWS, COLS), dtype=np.uint8)
    scene = tiny_scene()
    names = []
    for n, v in enumerate(md.VARIANTS, 1):
        single = v.sop == md.SOP_US_IMAGE
        # Regions as the variant has them, but "fan" and "ecg_and_fan" both
        # need only the tiny scene above.
        v = replace(v, px=md.encode_pixels(index[:1] if single else index,
                                           v.photometric, v.planar, v.lut_shift))
        ds, _, _, _ = md.build_dataset(v, n, 1, scene, v.px)
        path = os.path.join(out, v.name + ".dcm")
        md.write_variant(v, ds, path, workdir)
        names.append(path)
    return names


def avi_seeds(out):
    import cv2
    rng = np.random.default_rng(2)
    for name, (w, h, n, colour) in {"grey64": (64, 48, 4, False),
                                    "rgb48": (48, 32, 3, True),
                                    "odd17": (17, 9, 2, True)}.items():
        path = os.path.join(out, name + ".avi")
        vw = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 50.0, (w, h), True)
        if not vw.isOpened():
            raise RuntimeError("OpenCV cannot write MJPEG AVI")
        for _ in range(n):
            frame = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
            if not colour:
                frame[:] = frame[:, :, :1]
            vw.write(frame)
        vw.release()


def model_header(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return f.read(n)


def weights_seeds(out_weights, out_json):
    for model in ("phantom-seg", "phantom-ef"):
        raw = model_header(os.path.join(TOP, "models", model + ".safetensors"))
        with open(os.path.join(out_json, model + ".json"), "wb") as f:
            f.write(raw)
        header = json.loads(raw)
        meta = header.pop("__metadata__", {})
        # The first tensors by name, each cut to at most 2 elements per
        # axis: the real names, ranks and metadata at a few hundred bytes.
        tensors = {}
        for name in sorted(header)[:12]:
            shape = [min(2, d) for d in header[name]["shape"]]
            tensors[name] = np.arange(int(np.prod(shape)), dtype="<f4").reshape(shape)
        nn_safetensors.save(os.path.join(out_weights, model + ".safetensors"), tensors, meta)
    nn_safetensors.save(os.path.join(out_weights, "empty.safetensors"), {}, {})
    for name, text in {"escapes.json": '{"a\\u00e9\\ud83d\\ude00":[1e-3,-0.5,true,false,null]}',
                       "nested.json": '[[[[{"k":{"k":[{}]}}]]]]'}.items():
        with open(os.path.join(out_json, name), "w") as f:
            f.write(text)


def config_seeds(out):
    """etc/echonetd.conf as shipped (every setting commented out at its
    default) and with every setting written out, so the parser's every
    row is reached from the start."""
    src = os.path.join(TOP, "etc", "echonetd.conf")
    shutil.copy(src, out)
    with open(src) as f:
        text = f.read()
    with open(os.path.join(out, "all-set.conf"), "w") as f:
        f.write(re.sub(r"(?m)^#([a-z_]+ = )", r"\1", text))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    out = os.path.abspath(args.out)
    dirs = {t: os.path.join(out, t) for t in
            ("dicom-scan", "dicom-read", "weights", "json", "config", "avi")}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix=".work-", dir=out)
    try:
        for path in dicom_seeds(dirs["dicom-read"], workdir):
            shutil.copy(path, dirs["dicom-scan"])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    avi_seeds(dirs["avi"])
    weights_seeds(dirs["weights"], dirs["json"])
    config_seeds(dirs["config"])
    total = sum(len(os.listdir(d)) for d in dirs.values())
    print(f"make_seeds: {total} seeds in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
