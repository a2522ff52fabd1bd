#!/usr/bin/env python3
"""dicom_pixels.py - en_dicom_read's pixels against an independent decoder.

For every good file in $EN_TESTDATA/manifest.json, run tests/dicom-dump and
compare its 8-bit frames with what pydicom decodes (or with the file's
reference_npy when pydicom cannot decode it), after the same rules the reader
documents in en_dicom.h / dicom.cc:

  * stored values are scaled linearly from their full stored-bit range to
    0..255 (identity for 8-bit data); no VOI window, no modality LUT;
  * MONOCHROME1 is inverted to MONOCHROME2 polarity;
  * YBR_FULL / YBR_FULL_422 are converted to RGB, PALETTE COLOR goes through
    its LUT (16-bit LUT entries scaled to 8 bits).

reference_npy is taken to hold stored values as pydicom's pixel_array would
return them (same shape and colour space), unless the manifest entry says
"reference_space": "output" (already 8-bit, final colours).

Lossless files must match within 2 grey levels (DCMTK's YBR->RGB integer
arithmetic differs from pydicom's by up to 2); lossy files within a mean
absolute difference of 8.  Geometry, frame count, fps and fps_source must
match the manifest.  One line per file; exit 1 on any failure, 77 when there
is no data to test.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

try:
    import pydicom
    from pydicom.pixel_data_handlers.util import convert_color_space
except ImportError:  # pragma: no cover - environment problem, not a test failure
    print("skip: pydicom/numpy not available to", sys.executable)
    sys.exit(77)

LOSSLESS_MAX = 2
LOSSY_MEAN = 8.0

# Manifest spellings of the frame-rate source, mapped to en_fps_source_name().
FPS_NAMES = {
    "cinerate": "CineRate", "cine_rate": "CineRate",
    "frametime": "FrameTime", "frame_time": "FrameTime",
    "frametimevector": "FrameTimeVector", "frame_time_vector": "FrameTimeVector",
    "recommendeddisplayframerate": "RecommendedDisplayFrameRate", "recommended": "RecommendedDisplayFrameRate",
    "default": "default", "none": "default",
}


def load_manifest(testdata):
    path = os.path.join(testdata, "manifest.json")
    if not os.path.exists(path):
        return None
    with open(path) as fp:
        man = json.load(fp)
    if isinstance(man, dict):
        man = man.get("files") or man.get("entries") or []
    return man


def run_dump(dump, path, raw):
    r = subprocess.run([dump, "--identity", "--out", raw, path], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        return None, r.stderr.strip()
    info = json.loads(r.stdout)
    shape = (info["frames"], info["rows"], info["cols"], info["channels"])
    frames = np.fromfile(raw, dtype=np.uint8)
    if frames.size != int(np.prod(shape)):
        return None, "dicom-dump wrote %d bytes, expected %d" % (frames.size, int(np.prod(shape)))
    return (info, frames.reshape(shape)), None


def scale_stored(arr, bits_stored, signed):
    """Stored values -> 0..255 by the stored-bit range (reader's rule)."""
    arr = arr.astype(np.float64)
    lo = -(2.0 ** (bits_stored - 1)) if signed else 0.0
    hi = lo + 2.0 ** bits_stored - 1
    return np.clip(np.floor((arr - lo) * 255.0 / (hi - lo) + 0.5), 0, 255)


def palette_rgb(arr, ds):
    """PALETTE COLOR through its LUTs, 16-bit entries scaled to 8 bits.  Not
    pydicom's apply_color_lut: pydicom 2.3 reads big endian LUT data as
    little endian."""
    chans = []
    for colour in ("Red", "Green", "Blue"):
        n, first, bits = [int(v) for v in ds[colour + "PaletteColorLookupTableDescriptor"].value]
        n = n or 65536
        raw = ds[colour + "PaletteColorLookupTableData"].value
        lut = np.frombuffer(raw, "<u2" if ds.is_little_endian else ">u2")[:n].astype(np.float64)
        idx = np.clip(arr.astype(np.int64) - first, 0, len(lut) - 1)
        vals = lut[idx]
        chans.append(np.floor(vals * 255.0 / 65535.0 + 0.5) if bits == 16 else np.clip(vals, 0, 255))
    return np.stack(chans, axis=-1)


def expected_output(arr, ds, nframes, space=None):
    """What the reader should produce from pydicom-style stored values;
    `space` is the colour space those values are in (the manifest's
    pixel_array_space: pydicom leaves JPEG YBR alone but JPEG 2000 as RGB)."""
    pi = str(ds.PhotometricInterpretation).strip()
    space = space or pi
    if nframes == 1 and arr.ndim in (2, 3) and (arr.ndim == 2 or pi in ("RGB", "YBR_FULL", "YBR_FULL_422")):
        arr = arr[np.newaxis]
    if pi == "PALETTE COLOR":
        return palette_rgb(arr, ds)
    if space in ("YBR_FULL", "YBR_FULL_422"):
        arr = convert_color_space(arr, "YBR_FULL", "RGB")
    bits = int(ds.BitsStored)
    out = scale_stored(arr, bits, int(getattr(ds, "PixelRepresentation", 0)) == 1) if bits > 8 or \
        arr.dtype != np.uint8 else arr.astype(np.float64)
    if pi == "MONOCHROME1":
        out = 255.0 - out
    if out.ndim == 3:
        out = out[..., np.newaxis]
    return out


def reference(entry, testdata, path):
    """Expected 8-bit frames, or (None, reason) when there is nothing to compare."""
    ds = pydicom.dcmread(path)
    nframes = int(getattr(ds, "NumberOfFrames", 1) or 1)
    ref = entry.get("reference_npy")
    if ref:
        arr = np.load(os.path.join(testdata, ref))
        if entry.get("reference_space") == "output":
            arr = arr.astype(np.float64)
            if arr.ndim == 2:
                arr = arr[np.newaxis]
            return (arr[..., np.newaxis] if arr.ndim == 3 else arr), None
        return expected_output(arr, ds, nframes, entry.get("pixel_array_space")), None
    if entry.get("pydicom_decodable", True):
        return expected_output(ds.pixel_array, ds, nframes, entry.get("pixel_array_space")), None
    return None, "no reference and pydicom cannot decode it"


def check_meta(entry, info):
    errs = []
    for key in ("rows", "cols", "frames"):
        if key in entry and entry[key] is not None and int(entry[key]) != info[key]:
            errs.append("%s %s != manifest %s" % (key, info[key], entry[key]))
    if entry.get("fps") is not None and abs(float(entry["fps"]) - info["fps"]) > 0.01 * max(1.0, float(entry["fps"])):
        errs.append("fps %.3f != manifest %s" % (info["fps"], entry["fps"]))
    src = entry.get("fps_source")
    if src is not None:
        want = FPS_NAMES.get(str(src).lower().replace(" ", ""), str(src))
        if want != info["fps_source"]:
            errs.append("fps_source %s != manifest %s" % (info["fps_source"], src))
    if entry.get("has_regions") and not info["regions"]:
        errs.append("manifest says it has ultrasound regions, reader found none")
    errs += check_regions(entry.get("regions"), info["regions"])
    errs += check_identity(entry.get("identity"), info.get("identity", {}))
    leaked = [p for p in entry.get("phi_strings", []) if any(p in w for w in info["warnings"])]
    if leaked:
        errs.append("identity in warnings: %d value(s)" % len(leaked))
    return errs


REGION_KEYS = (("RegionLocationMinX0", "x0"), ("RegionLocationMinY0", "y0"), ("RegionLocationMaxX1", "x1"),
               ("RegionLocationMaxY1", "y1"), ("RegionSpatialFormat", "spatial_format"),
               ("RegionDataType", "data_type"), ("RegionFlags", "flags"), ("ReferencePixelX0", "ref_x"),
               ("ReferencePixelY0", "ref_y"), ("PhysicalUnitsXDirection", "units_x"),
               ("PhysicalUnitsYDirection", "units_y"), ("PhysicalDeltaX", "delta_x"),
               ("PhysicalDeltaY", "delta_y"))


def check_regions(want, got):
    """The reader copies regions as stored (up to 16), judging nothing."""
    if not want:
        return []
    if len(got) != min(len(want), 16):
        return ["%d regions read, manifest has %d" % (len(got), len(want))]
    errs = []
    for i, (w, g) in enumerate(zip(want, got)):
        for mkey, key in REGION_KEYS:
            if mkey in w and abs(float(w[mkey]) - float(g[key])) > 1e-9 * max(1.0, abs(float(w[mkey]))):
                errs.append("region %d %s=%s, manifest %s" % (i, key, g[key], w[mkey]))
    return errs


IDENTITY_KEYS = (("StudyInstanceUID", "study_instance_uid"), ("SeriesInstanceUID", "series_instance_uid"),
                 ("SOPInstanceUID", "sop_instance_uid"), ("PatientName", "patient_name"),
                 ("PatientID", "patient_id"), ("PatientBirthDate", "patient_birth_date"),
                 ("AccessionNumber", "accession_number"), ("StudyDate", "study_date"),
                 ("StudyTime", "study_time"), ("InstitutionName", "institution_name"))


def check_identity(want, got):
    if not want:
        return []
    errs = []
    for mkey, key in IDENTITY_KEYS:
        if mkey in want and want[mkey] is not None:
            w, g = str(want[mkey]), got.get(key, "")
            # Fields may be truncated to their C buffer, never altered.
            if not g or not w.startswith(g):
                errs.append("identity %s differs from the manifest" % key)  # values stay unprinted
    return errs


def compare(entry, got, want):
    if got.shape != want.shape:
        return ["shape %s != expected %s" % (got.shape, want.shape)], ""
    diff = np.abs(got.astype(np.float64) - want)
    maxd, meand = float(diff.max()), float(diff.mean())
    stats = "max diff %.0f, mean %.3f" % (maxd, meand)
    lossless = entry.get("lossless", True)
    if lossless and maxd > LOSSLESS_MAX:
        return ["lossless but max abs diff %.0f > %d" % (maxd, LOSSLESS_MAX)], stats
    if not lossless and meand >= LOSSY_MEAN:
        return ["lossy mean abs diff %.2f >= %.1f" % (meand, LOSSY_MEAN)], stats
    return [], stats


def supported(dump, uid):
    r = subprocess.run([dump, "--supports", uid], capture_output=True, text=True, timeout=60)
    return r.stdout.strip() == "yes"


def check_file(entry, testdata, dump, raw):
    path = os.path.join(testdata, entry["file"])
    res, err = run_dump(dump, path, raw)
    ts = entry.get("transfer_syntax")
    if res is None and ts and not supported(dump, ts):
        # A build without OpenJPEG refuses JPEG 2000; it must say so plainly.
        ok = err.startswith("EN_EUNSUPPORTED:") and ts in err
        return ("unsup" if ok else "FAIL"), err
    info, got = res
    errs = check_meta(entry, info)
    want, why = reference(entry, testdata, path)
    if want is None:
        return ("FAIL" if errs else "ok"), "; ".join(errs + ["pixels not compared: " + why])
    perrs, stats = compare(entry, got, want)
    errs += perrs
    return ("FAIL" if errs else "ok"), "; ".join(errs + [stats]) + " [%s %s]" % (
        info["transfer_syntax_name"], info["photometric"])


def main():
    testdata = os.environ.get("EN_TESTDATA")
    builddir = os.environ.get("EN_TOP_BUILDDIR")
    if not testdata or not builddir:
        print("EN_TESTDATA / EN_TOP_BUILDDIR not set: run through make check")
        return 99
    man = load_manifest(testdata)
    if man is None:
        print("skip: no %s/manifest.json (the test data generator has not run)" % testdata)
        return 77
    good = [e for e in man if e.get("kind", "good") == "good" and e.get("expect", "ok") == "ok"]
    if not good:
        print("skip: manifest lists no good files")
        return 77
    dump = os.path.join(builddir, "tests", "dicom-dump")
    failed = skipped = 0
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "frames.raw")
        for entry in good:
            try:
                verdict, detail = check_file(entry, testdata, dump, raw)
            except Exception as exc:  # a broken reference is a failure, not a crash
                verdict, detail = "FAIL", "%s: %s" % (type(exc).__name__, exc)
            failed += verdict == "FAIL"
            skipped += verdict == "unsup"
            print("%-4s %s: %s" % (verdict, entry["file"], detail))
    print("%d passed, %d failed, %d skipped" % (len(good) - failed - skipped, failed, skipped))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
