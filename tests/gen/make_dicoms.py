#!/usr/bin/python3
"""Synthetic echocardiogram DICOM files for echonetd's tests.

Every good file is a small cine loop that looks like an apical echo: a dark
background, an ultrasound fan (an annular sector) filled with moving speckle,
a bright myocardium around a dark left ventricle whose size beats
sinusoidally, and, outside the fan, the clutter a real scanner burns in: a
header band, patient name and ID text in the top corners, a depth ruler, a
grey bar and a thin ECG trace along the bottom.  Only the fan (and, in some
files, the scrolling ECG line) changes from frame to frame.

One loop ("scene") is drawn once as 8-bit palette indices and then stored in
many ways: each photometric interpretation, transfer syntax, SOP class, frame
timing attribute and ultrasound-region variant the reader must handle.
Native encodings are written with pydicom; big endian, deflate, JPEG, JPEG-LS
and RLE are produced from a native file with Debian's DCMTK command line
tools, and JPEG 2000 frames are encoded with Pillow and encapsulated here.
DIR/bad/ holds hostile and broken inputs the reader must refuse cleanly.

Everything a test needs to know is written to DIR/manifest.json (one object
per file; see tests/gen/README.md), together with a ground-truth fan mask
DIR/<name>.fanmask.png per good file and, for files pydicom 2.x cannot
decode, DIR/<name>.ref.npy holding the pixel values pixel_array would return.
Each written file is read back and checked before it is recorded, so the
manifest describes the files as they are, not as they were meant to be.

Output is deterministic for a given --seed.  Run with Debian's interpreter:
    /usr/bin/python3 tests/gen/make_dicoms.py --out DIR [--seed N] [--quick]
"""

import argparse
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from io import BytesIO

import cv2
import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixel_data_handlers.util import convert_color_space
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, generate_uid

# --------------------------------------------------------------------------
# Identifiers
# --------------------------------------------------------------------------

SOP_US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"
SOP_US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"
SOP_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"

TS_IMPLICIT_LE = "1.2.840.10008.1.2"
TS_EXPLICIT_LE = "1.2.840.10008.1.2.1"
TS_DEFLATED_LE = "1.2.840.10008.1.2.1.99"
TS_EXPLICIT_BE = "1.2.840.10008.1.2.2"
TS_JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
TS_JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
TS_JPEG_LOSSLESS = "1.2.840.10008.1.2.4.57"
TS_JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
TS_JPEGLS_LOSSLESS = "1.2.840.10008.1.2.4.80"
TS_JPEGLS_NEAR = "1.2.840.10008.1.2.4.81"
TS_J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
TS_J2K = "1.2.840.10008.1.2.4.91"
TS_RLE = "1.2.840.10008.1.2.5"

# How each encoding is made: the syntax written by pydicom first, then the
# DCMTK command (if any) that turns it into the final one.  '+un' keeps the
# UIDs, so the PHI recorded for a file is the PHI it holds.
ENCODINGS = {
    "implicit": (TS_IMPLICIT_LE, None),
    "explicit": (TS_EXPLICIT_LE, None),
    "big": (TS_EXPLICIT_LE, ["dcmconv", "+tb"]),
    "deflate": (TS_EXPLICIT_LE, ["dcmconv", "+td"]),
    "jpeg_baseline": (TS_EXPLICIT_LE, ["dcmcjpeg", "+eb", "+un"]),
    "jpeg_baseline_444": (TS_EXPLICIT_LE, ["dcmcjpeg", "+eb", "+s4", "+un"]),
    "jpeg_extended": (TS_EXPLICIT_LE, ["dcmcjpeg", "+ee", "+un"]),
    "jpeg_lossless": (TS_EXPLICIT_LE, ["dcmcjpeg", "+el", "+un"]),
    "jpeg_lossless_sv1": (TS_EXPLICIT_LE, ["dcmcjpeg", "+e1", "+un"]),
    "jpegls": (TS_EXPLICIT_LE, ["dcmcjpls", "+el", "+un"]),
    "jpegls_near": (TS_EXPLICIT_LE, ["dcmcjpls", "+en", "+md", "2", "+un"]),
    "rle": (TS_EXPLICIT_LE, ["dcmcrle", "+un"]),
    "j2k": (TS_J2K_LOSSLESS, None),
    "j2k_lossy": (TS_J2K, None),
}
LOSSY_ENCODINGS = {"jpeg_baseline", "jpeg_baseline_444", "jpeg_extended",
                   "jpegls_near", "j2k_lossy"}
JPEGLS_NEAR = 2  # the +md value above: the largest error per sample

# Decoders used to confirm the reference of files pydicom cannot decode; '+cn'
# keeps YCbCr as stored so the comparison is with the stored values.
DCMTK_DECODERS = {
    TS_JPEG_LOSSLESS: ["dcmdjpeg", "+cn"],
    TS_JPEG_LOSSLESS_SV1: ["dcmdjpeg", "+cn"],
    TS_JPEGLS_LOSSLESS: ["dcmdjpls"],
    TS_JPEGLS_NEAR: ["dcmdjpls"],
}

DEFAULT_FPS = 30.0  # what the reader assumes with no timing attribute

# --------------------------------------------------------------------------
# Palette: every scene is drawn as 8-bit indices into this table
# --------------------------------------------------------------------------

GREY_LEVELS = 240      # indices 0..239: the echo grey ramp
IDX_TEXT = 240         # burned-in text, ruler ticks: white
IDX_ECG = 241          # ECG trace: green
IDX_HEADER = 242       # header band: grey-blue
IDX_BAR0 = 243         # 243..254: the colour bar's hues
IDX_FAN_MAX = GREY_LEVELS - 1


def make_palette(tint):
    """256 x 3 uint8.  tint=True gives the sepia ramp some scanners use; it
    is used for PALETTE COLOR files so that a reader ignoring the LUT gets
    visibly wrong colours rather than nearly right greys."""
    pal = np.zeros((256, 3), np.float64)
    ramp = np.arange(GREY_LEVELS) * 255.0 / (GREY_LEVELS - 1)
    gains = (1.0, 0.86, 0.70) if tint else (1.0, 1.0, 1.0)
    for c in range(3):
        pal[:GREY_LEVELS, c] = ramp * gains[c]
    pal[IDX_TEXT] = (255, 255, 255)
    pal[IDX_ECG] = (40, 220, 60)
    pal[IDX_HEADER] = (70, 80, 120)
    for i in range(IDX_BAR0, 255):
        hue = (i - IDX_BAR0) / (255 - IDX_BAR0) * 170.0
        hsv = np.uint8([[[int(hue), 230, 230]]])
        pal[i] = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]
    pal[255] = (255, 255, 255)
    return np.round(pal).astype(np.uint8)


PALETTE = make_palette(tint=False)
PALETTE_TINT = make_palette(tint=True)


def luminance(rgb):
    """ITU-R BT.601 luma of uint8 RGB, rounded: the grey of a colour."""
    rgb = rgb.astype(np.float64)
    y = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    return np.clip(np.round(y), 0, 255).astype(np.uint8)


def rgb_to_ybr_full(rgb):
    """YBR_FULL as defined in PS3.3 C.7.6.3.1.2 (full range BT.601)."""
    rgb = rgb.astype(np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 128.0
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 128.0
    ybr = np.stack([y, cb, cr], axis=-1)
    return np.clip(np.round(ybr), 0, 255).astype(np.uint8)


GREY_LUT = luminance(PALETTE)
YBR_LUT = rgb_to_ybr_full(PALETTE)

# --------------------------------------------------------------------------
# Fan geometry
# --------------------------------------------------------------------------


@dataclass
class Fan:
    """An annular sector.  Angles are degrees from straight down, negative
    to the left; a pixel (x, y) is inside when its centre, seen from the
    apex, lies within [angle_left, angle_right] and [radius_inner, radius]."""
    apex_x: float
    apex_y: float
    angle_left: float
    angle_right: float
    radius: float
    radius_inner: float = 0.0

    def polar(self, rows, cols):
        ys, xs = np.mgrid[0:rows, 0:cols].astype(np.float32)
        dx, dy = xs - self.apex_x, ys - self.apex_y
        return np.hypot(dx, dy), np.degrees(np.arctan2(dx, dy))

    def mask(self, rows, cols):
        r, ang = self.polar(rows, cols)
        return ((r <= self.radius) & (r >= self.radius_inner)
                & (ang >= self.angle_left) & (ang <= self.angle_right))


def bbox_of(mask):
    """Inclusive [x0, y0, x1, y1] of the non-zero pixels, or None."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]


def pair_aligned(box, cols):
    """Widens a box to whole horizontal pixel pairs (x0 even, x1 odd).
    YBR_FULL_422 shares chroma within a pair, so a coloured mark's colour
    reaches the other pixel of a pair it half covers."""
    x0, y0, x1, y1 = box
    return [x0 - x0 % 2, y0, min(cols - 1, x1 + 1 - x1 % 2), y1]

# --------------------------------------------------------------------------
# Scenes: one synthetic cine loop, drawn as palette indices
# --------------------------------------------------------------------------


@dataclass
class SceneSpec:
    name: str
    cols: int
    rows: int
    frames: int
    angle_left: float
    angle_right: float
    apex_x_frac: float = 0.5      # apex x as a fraction of the width
    apex_above: int = 0           # apex this many px above the header's foot
    period: float = 24.0          # LV beat, frames
    background: int = 0           # static grey index outside the fan
    ecg_scroll: int = 0           # px per frame; 0 = static trace
    depth_cm: float = 16.0


@dataclass
class Scene:
    spec: SceneSpec
    index: np.ndarray             # frames x rows x cols, palette indices
    mask: np.ndarray              # rows x cols bool, the fan model
    fan: Fan
    bbox: list
    text_boxes: list = field(default_factory=list)
    burned_text: list = field(default_factory=list)
    ecg_box: list = None
    header_h: int = 0


def fit_fan(spec, header_h, ecg_h):
    """Largest fan of the spec's angles that clears the header, the ECG band
    and the side margins (kept for the ruler and text)."""
    apex_x = round(spec.cols * spec.apex_x_frac)  # integral, as ReferencePixelX0 is
    apex_y = header_h + 6 - spec.apex_above
    side = 24
    limits = [spec.rows - ecg_h - 8 - apex_y,
              (apex_x - side) / math.sin(math.radians(-spec.angle_left)),
              (spec.cols - 1 - side - apex_x) / math.sin(math.radians(spec.angle_right))]
    radius = math.floor(min(limits))
    inner = 0.0
    if spec.apex_above:
        # An apex above the header: the near field starts on an arc just
        # below the header, as on curvilinear probes.
        worst = math.cos(math.radians(max(-spec.angle_left, spec.angle_right)))
        inner = math.ceil((header_h + 4 - apex_y) / worst)
    return Fan(apex_x, apex_y, spec.angle_left, spec.angle_right, radius, inner)


def draw_if_clear(canvas, forbidden, draw):
    """Runs draw(scratch) on a blank canvas; copies the result onto canvas
    and returns its pair-aligned bounding box unless it touches
    `forbidden`."""
    scratch = np.zeros_like(canvas)
    draw(scratch)
    ink = scratch > 0
    box = bbox_of(ink)
    if box is None or (ink & forbidden).any():
        return None
    canvas[ink] = scratch[ink]
    return pair_aligned(box, canvas.shape[1])


def put_text(text, x, y, scale):
    def draw(img):
        cv2.putText(img, text, (int(x), int(y)), cv2.FONT_HERSHEY_SIMPLEX,
                    scale, IDX_TEXT, 1, cv2.LINE_8)
    return draw


def text_size(text, scale):
    """(width, height above the baseline) of text in pixels."""
    (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    return w, h


def ecg_wave(phase):
    """A rough PQRST complex; phase in [0, 1) of one beat."""
    def bump(centre, width, height):
        return height * np.exp(-0.5 * ((phase - centre) / width) ** 2)
    return (bump(0.12, 0.025, 0.15) - bump(0.27, 0.008, 0.15)
            + bump(0.30, 0.010, 1.0) - bump(0.33, 0.010, 0.25)
            + bump(0.55, 0.045, 0.30))


def ecg_geometry(scene):
    """(x0, x1, baseline y, amplitude) of the ECG strip below the fan."""
    rows, cols = scene.spec.rows, scene.spec.cols
    band_top = int(scene.fan.apex_y + scene.fan.radius) + 4
    y_base = rows - 8
    return int(cols * 0.2), int(cols * 0.96), y_base, min(28, y_base - band_top - 4)


def ecg_points(spec, x0, x1, y_base, amp, frame):
    xs = np.arange(x0, x1 + 1)
    beat_px = 0.42 * (x1 - x0)
    phase = ((xs - x0 + frame * spec.ecg_scroll) / beat_px) % 1.0
    ys = np.round(y_base - amp * ecg_wave(phase)).astype(np.int32)
    return np.stack([xs, ys], axis=1).astype(np.int32)


def draw_overlay(scene, canvas, n):
    """Static clutter outside the fan: header band, corner text, depth ruler,
    grey bar.  Records what was drawn in scene.text_boxes/burned_text."""
    spec, fan = scene.spec, scene.fan
    # A two-pixel margin keeps every mark clear of the fan's edge.
    forbidden = cv2.dilate(scene.mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    cols, hh = spec.cols, scene.header_h

    # Header band across the top, with the institution and a scanner setting.
    canvas[:hh, :] = IDX_HEADER
    header = f"ACME ECHO 3000  PHI-HOSPITAL-{n}  MI 1.1 TIS 0.4"
    scale = 0.5
    while text_size(header, scale)[0] > cols - 12 and scale > 0.3:
        scale -= 0.05
    h = text_size(header, scale)[1]
    cv2.putText(canvas, header, (6, (hh + h) // 2), cv2.FONT_HERSHEY_SIMPLEX,
                scale, IDX_TEXT, 1, cv2.LINE_8)
    scene.text_boxes.append([0, 0, cols - 1, hh - 1])
    scene.burned_text.append(header)

    # Patient identity in the top corners, as scanners burn it in.
    left = [f"ZZBURN^PATIENT{n}", f"ID BURN{n:08d}", "2021-03-04 10:15"]
    right = ["FR 30Hz", f"{spec.depth_cm:.0f}cm", "2D 62% C50"]
    y = hh + 18
    for line_l, line_r in zip(left, right):
        for text, align in ((line_l, "left"), (line_r, "right")):
            placed = None
            for scale in (0.5, 0.42, 0.35):
                w = text_size(text, scale)[0]
                x = 6 if align == "left" else cols - 6 - w
                placed = draw_if_clear(canvas, forbidden, put_text(text, x, y, scale))
                if placed:
                    break
            if placed:
                scene.text_boxes.append(placed)
                scene.burned_text.append(text)
        y += 20
    if not any(t.startswith("ZZBURN") for t in scene.burned_text):
        raise RuntimeError(f"{spec.name}: no room for the burned-in name")

    # Depth ruler: a tick per centimetre beside the fan's right edge, below
    # the corner text so the two never mix.
    px_per_cm = fan.radius / spec.depth_cm
    rx = scene.bbox[2] + 9

    def ruler(img):
        for k in range(int(spec.depth_cm) + 1):
            ty = int(round(fan.apex_y + k * px_per_cm))
            if y <= ty < spec.rows:
                img[ty:ty + 2, rx:rx + (5 if k % 5 == 0 else 3)] = IDX_TEXT
    box = draw_if_clear(canvas, forbidden, ruler)
    if box:
        scene.text_boxes.append(box)

    # A grey bar (and a few hues) at the left edge, below the corner text.
    def bar(img):
        ramp = np.linspace(IDX_FAN_MAX, 0, 64).astype(np.uint8)
        img[y:y + 64, 6:14] = np.maximum(ramp, 1)[:, None]
        img[y + 66:y + 74, 6:14] = np.arange(IDX_BAR0, IDX_BAR0 + 8, dtype=np.uint8)[:, None]
    box = draw_if_clear(canvas, forbidden, bar)
    if box:
        scene.text_boxes.append(box)

    # Heart rate beside the ECG strip.
    _, _, y_base, amp = ecg_geometry(scene)
    box = draw_if_clear(canvas, forbidden, put_text("HR 72", 6, y_base - amp // 2, 0.45))
    if box:
        scene.text_boxes.append(box)
        scene.burned_text.append("HR 72")


def draw_ecg(scene, frames):
    """A thin ECG trace along the bottom, on every frame; it scrolls if the
    spec asks for it."""
    spec = scene.spec
    rows, cols = spec.rows, spec.cols
    x0, x1, y_base, amp = ecg_geometry(scene)
    ink = np.zeros((rows, cols), bool)
    for f in range(len(frames)):
        pts = ecg_points(spec, x0, x1, y_base, amp, f if spec.ecg_scroll else 0)
        scratch = np.zeros((rows, cols), np.uint8)
        cv2.polylines(scratch, [pts], False, IDX_ECG, 1, cv2.LINE_8)
        drawn = scratch > 0
        frames[f][drawn] = IDX_ECG
        ink |= drawn
    scene.ecg_box = pair_aligned(bbox_of(ink), cols)
    if (ink & scene.mask).any():
        raise RuntimeError(f"{spec.name}: ECG crosses the fan")
    scene.text_boxes.append(scene.ecg_box)


def speckle(rng, shape):
    """Fully developed speckle: Rayleigh amplitude, blurred to the size of a
    resolution cell, normalised to mean 1."""
    s = rng.rayleigh(1.0, shape).astype(np.float32)
    s = cv2.GaussianBlur(s, (0, 0), 0.9)
    return s / s.mean()


def draw_fan(scene, frames, rng):
    """Speckle, myocardium and a beating LV inside the fan, frame by frame.
    Work is confined to the fan's bounding box."""
    spec, fan = scene.spec, scene.fan
    x0, y0, x1, y1 = scene.bbox
    h, w = y1 - y0 + 1, x1 - x0 + 1
    ys, xs = np.mgrid[y0:y1 + 1, x0:x1 + 1].astype(np.float32)
    r = np.hypot(xs - fan.apex_x, ys - fan.apex_y)
    inside = scene.mask[y0:y1 + 1, x0:x1 + 1]

    # Static anatomy: smooth tissue texture fading with depth.
    blobs = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 14)
    blobs /= max(1e-6, float(np.abs(blobs).max()))
    tissue = (0.42 + 0.22 * blobs) * (1.0 - 0.45 * r / fan.radius)

    # The LV sits on the fan's axis about halfway down.
    mid = math.radians((fan.angle_left + fan.angle_right) / 2)
    cx = fan.apex_x + 0.52 * fan.radius * math.sin(mid)
    cy = fan.apex_y + 0.52 * fan.radius * math.cos(mid)
    persistent = speckle(rng, (h + 16, w + 16))

    for f in range(spec.frames):
        beat = math.sin(2 * math.pi * f / spec.period)
        size = 1.0 + 0.16 * beat
        ax, ay = 0.12 * fan.radius * size, 0.23 * fan.radius * size
        rho = np.sqrt(((xs - cx) / ax) ** 2 + ((ys - cy) / ay) ** 2)
        wall = 1.0 + 0.22 / size          # the wall thickens as the LV shrinks
        intensity = np.where(rho < 1.0, 0.07, np.where(rho < wall, 0.75, tissue))
        # Tissue moves with the beat, so the persistent speckle shifts too;
        # fresh speckle keeps every fan pixel changing from frame to frame.
        oy = 8 + int(round(5 * beat))
        moving = persistent[oy:oy + h, 8:8 + w]
        sp = 0.55 * moving + 0.45 * speckle(rng, (h, w))
        value = np.clip(intensity * sp * 215.0 + 12.0, 6, IDX_FAN_MAX).astype(np.uint8)
        region = frames[f][y0:y1 + 1, x0:x1 + 1]
        region[inside] = value[inside]


def render_scene(spec, seed, n):
    rng = np.random.default_rng([seed, sum(map(ord, spec.name))])
    header_h = max(22, spec.rows // 20)
    ecg_h = max(40, spec.rows // 9)
    fan = fit_fan(spec, header_h, ecg_h)
    mask = fan.mask(spec.rows, spec.cols)
    scene = Scene(spec, None, mask, fan, bbox_of(mask), header_h=header_h)

    static = np.full((spec.rows, spec.cols), spec.background, np.uint8)
    draw_overlay(scene, static, n)
    frames = np.repeat(static[None], spec.frames, axis=0)
    draw_ecg(scene, frames)
    draw_fan(scene, frames, rng)
    scene.index = frames
    check_scene(scene)
    return scene


def check_scene(scene):
    """The promises the tests rely on: marks never touch the fan, and only
    the fan and the ECG box change over time."""
    for box in scene.text_boxes:
        x0, y0, x1, y1 = box
        if scene.mask[y0:y1 + 1, x0:x1 + 1].any():
            raise RuntimeError(f"{scene.spec.name}: mark {box} overlaps the fan")
    moving = (scene.index != scene.index[:1]).any(axis=0)
    if scene.spec.ecg_scroll:
        x0, y0, x1, y1 = scene.ecg_box
        moving[y0:y1 + 1, x0:x1 + 1] = False
    if (moving & ~scene.mask).any():
        raise RuntimeError(f"{scene.spec.name}: pixels change outside the fan")
    if scene.spec.frames > 1:
        still = ~(scene.index != scene.index[:1]).any(axis=0) & scene.mask
        if still.mean() > 0.02 * scene.mask.mean():
            raise RuntimeError(f"{scene.spec.name}: too much of the fan is static")

# --------------------------------------------------------------------------
# Photometric encodings of a scene
# --------------------------------------------------------------------------


@dataclass
class Pixels:
    photometric: str
    samples: int
    planar: object          # 0/1 for colour, None for one sample
    data: bytes             # native PixelData value
    stored: np.ndarray      # what pydicom's pixel_array returns
    palette: np.ndarray = None
    lut_shift: bool = False  # 16-bit LUT entries v << 8 instead of v * 257


def encode_pixels(index, photometric, planar, lut_shift=False):
    """Turns palette indices (frames x rows x cols) into one photometric
    interpretation; `stored` is always frames x rows x cols [x 3]."""
    if photometric == "MONOCHROME2":
        stored = GREY_LUT[index]
        return Pixels(photometric, 1, None, stored.tobytes(), stored)
    if photometric == "MONOCHROME1":
        stored = 255 - GREY_LUT[index]
        return Pixels(photometric, 1, None, stored.tobytes(), stored)
    if photometric == "PALETTE COLOR":
        return Pixels(photometric, 1, None, index.tobytes(), index.copy(), PALETTE_TINT,
                      lut_shift)
    if photometric in ("RGB", "YBR_FULL"):
        stored = (PALETTE if photometric == "RGB" else YBR_LUT)[index]
        if planar:
            data = np.ascontiguousarray(stored.transpose(0, 3, 1, 2)).tobytes()
        else:
            data = stored.tobytes()
        return Pixels(photometric, 3, planar, data, stored)
    if photometric == "YBR_FULL_422":
        return encode_ybr422(index)
    raise ValueError(photometric)


def encode_ybr422(index):
    """Uncompressed YBR_FULL_422 (PS3.5 8.2.1): each horizontal pixel pair is
    stored as Y0 Y1 Cb Cr, the chroma being the pair's mean.  pydicom has no
    encoder for this; its decoder repeats each chroma sample for both pixels,
    which is what `stored` holds."""
    ybr = YBR_LUT[index].astype(np.uint16)
    f, r, c, _ = ybr.shape
    if c % 2:
        raise ValueError("YBR_FULL_422 needs an even number of columns")
    pairs = ybr.reshape(f, r, c // 2, 2, 3)
    chroma = ((pairs[..., 0, 1:] + pairs[..., 1, 1:] + 1) // 2).astype(np.uint8)
    packed = np.empty((f, r, c // 2, 4), np.uint8)
    packed[..., 0] = pairs[..., 0, 0]
    packed[..., 1] = pairs[..., 1, 0]
    packed[..., 2:] = chroma
    stored = np.empty((f, r, c, 3), np.uint8)
    stored[..., 0] = ybr[..., 0]
    stored[..., 1:] = np.repeat(chroma, 2, axis=2)
    return Pixels("YBR_FULL_422", 3, 0, packed.tobytes(), stored)


def display_rgb_or_grey(stored, photometric, palette=None):
    """Stored values -> what a viewer shows (grey for MONOCHROME*, else
    RGB): the yardstick for lossy files."""
    if photometric == "MONOCHROME1":
        return 255 - stored
    if photometric == "PALETTE COLOR":
        return palette[stored]
    if photometric.startswith("YBR_"):
        return ybr_to_rgb(stored)
    return stored


def ybr_to_rgb(ybr):
    ybr = ybr.astype(np.float64)
    y, cb, cr = ybr[..., 0], ybr[..., 1] - 128.0, ybr[..., 2] - 128.0
    rgb = np.stack([y + 1.402 * cr,
                    y - 0.344136 * cb - 0.714136 * cr,
                    y + 1.772 * cb], axis=-1)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)

# --------------------------------------------------------------------------
# The DICOM dataset
# --------------------------------------------------------------------------


def phi_for(n, seed):
    """Distinctive, greppable identifying values for file number n."""
    def uid(kind):
        return generate_uid(entropy_srcs=[str(seed), str(n), kind])
    return {
        "PatientName": f"ZZPHI^PATIENTNAME{n}",
        "PatientID": f"PHIID{n}",
        "PatientBirthDate": f"19{40 + n % 50:02d}0{1 + n % 9}1{n % 10}",
        "AccessionNumber": f"PHIACC{n}",
        "InstitutionName": f"PHI-INSTITUTION-{n}",
        "ReferringPhysicianName": f"ZZPHI^REFERRER{n}",
        "OperatorsName": f"ZZPHI^OPERATOR{n}",
        "PatientAddress": f"PHI-ADDRESS-{n} MAIN STREET",
        "StationName": f"PHISTATION{n}",
        "DeviceSerialNumber": f"PHISERIAL{n}",
        "StudyDate": f"2021{1 + n % 12:02d}{1 + n % 28:02d}",
        "StudyTime": f"10{n % 60:02d}{(7 * n) % 60:02d}",
        "StudyInstanceUID": uid("study"),
        "SeriesInstanceUID": uid("series"),
        "SOPInstanceUID": uid("sop"),
        # Held inside sequences and a private block, not at the top level.
        "private_name": f"ZZPHI^PRIVATENAME{n}",
        "private_id": f"PHIPRIVID{n}",
        "other_id": f"PHIOTHERID{n}",
        "issuer": f"PHI-ISSUER-{n}",
        "requested_procedure": f"PHIREQ{n}",
        "requesting_physician": f"ZZPHI^REQUESTER{n}",
    }


TOP_LEVEL_PHI = ["PatientName", "PatientID", "PatientBirthDate", "AccessionNumber",
                 "InstitutionName", "ReferringPhysicianName", "OperatorsName",
                 "PatientAddress", "StationName", "DeviceSerialNumber",
                 "StudyDate", "StudyTime", "StudyInstanceUID",
                 "SeriesInstanceUID", "SOPInstanceUID"]


def add_phi(ds, phi):
    for key in TOP_LEVEL_PHI:
        setattr(ds, key, phi[key])
    ds.SeriesDate, ds.SeriesTime = phi["StudyDate"], phi["StudyTime"]
    ds.ContentDate, ds.ContentTime = phi["StudyDate"], phi["StudyTime"]

    other = Dataset()
    other.PatientID = phi["other_id"]
    other.IssuerOfPatientID = phi["issuer"]
    other.TypeOfPatientID = "TEXT"
    ds.OtherPatientIDsSequence = Sequence([other])

    request = Dataset()
    request.RequestedProcedureID = phi["requested_procedure"]
    request.ScheduledProcedureStepID = phi["requested_procedure"] + "S"
    request.RequestingPhysician = phi["requesting_physician"]
    ds.RequestAttributesSequence = Sequence([request])

    block = ds.private_block(0x0019, "ACME US", create=True)
    block.add_new(0x10, "LO", phi["private_name"])
    block.add_new(0x11, "LO", phi["private_id"])
    block.add_new(0x12, "DS", "1.5")  # a harmless private value alongside


def phi_strings(phi):
    strings = [phi[k] for k in TOP_LEVEL_PHI]
    strings += [phi[k] for k in ("private_name", "private_id", "other_id", "issuer",
                                 "requested_procedure", "requesting_physician")]
    strings.append(phi["requested_procedure"] + "S")
    return strings


# Timing variants: the attributes written, and the rate the reader should
# derive (CineRate > FrameTime > FrameTimeVector > RecommendedDisplayFrameRate
# > 30 fps, the first usable one winning).
def add_timing(ds, timing, frames, rng):
    if timing == "cine":
        ds.CineRate = 30
        ds.FrameTime = "33.333"  # scanners usually send both; CineRate wins
        ds.FrameIncrementPointer = Tag(0x0018, 0x1063)
        return 30.0, "CineRate"
    if timing == "cine25":
        ds.CineRate = 25
        return 25.0, "CineRate"
    if timing == "frametime":
        ds.FrameTime = "20.0"
        ds.FrameIncrementPointer = Tag(0x0018, 0x1063)
        return 50.0, "FrameTime"
    if timing == "frametime30":
        ds.FrameTime = "33.3333"
        ds.FrameIncrementPointer = Tag(0x0018, 0x1063)
        return 1000.0 / 33.3333, "FrameTime"
    if timing == "vector":
        # The first entry is the time before frame 1 (0 by convention);
        # the others jitter around 40 ms as real clocks do.
        steps = np.round(40.0 + rng.uniform(-1.5, 1.5, frames - 1), 2)
        values = [0.0] + [float(v) for v in steps]
        ds.FrameTimeVector = [f"{v:.2f}" for v in values]
        ds.FrameIncrementPointer = Tag(0x0018, 0x1065)
        return 1000.0 / float(np.mean(steps)), "FrameTimeVector"
    if timing == "recommended":
        ds.RecommendedDisplayFrameRate = 45
        return 45.0, "RecommendedDisplayFrameRate"
    if timing == "none":
        return DEFAULT_FPS, "default"
    raise ValueError(timing)


def region_item(x0, y0, x1, y1, ref_x, ref_y, delta, spatial=1, data_type=1, units=(3, 3)):
    item = Dataset()
    item.RegionSpatialFormat = spatial
    item.RegionDataType = data_type
    item.RegionFlags = 0
    item.RegionLocationMinX0, item.RegionLocationMinY0 = x0, y0
    item.RegionLocationMaxX1, item.RegionLocationMaxY1 = x1, y1
    item.ReferencePixelX0, item.ReferencePixelY0 = int(ref_x), int(ref_y)
    item.PhysicalUnitsXDirection, item.PhysicalUnitsYDirection = units  # 3 = cm
    item.PhysicalDeltaX = item.PhysicalDeltaY = float(delta)  # FD, cm per pixel
    return item


def add_regions(ds, kind, scene):
    """SequenceOfUltrasoundRegions.  Returns (has, plausible, items as dicts).
    Reference pixels are the apex relative to the region's origin, so they
    are negative when the apex lies above the region."""
    if kind == "none":
        return False, None, []
    fan, spec = scene.fan, scene.spec
    delta = spec.depth_cm / fan.radius
    x0, y0, x1, y1 = scene.bbox
    tissue = (x0, y0, x1, y1, round(fan.apex_x - x0), round(fan.apex_y - y0), delta)
    if kind == "fan":
        items = [region_item(*tissue)]
        plausible = True
    elif kind == "ecg_and_fan":
        # ECG first: the reader must pick the tissue region, not item 0.
        ex0, ey0, ex1, ey1 = scene.ecg_box
        # Waveform (4) holding an ECG trace (0x0A); x in seconds (4).
        items = [region_item(ex0, ey0, ex1, ey1, 0, (ey1 - ey0) // 2, 0.01,
                             spatial=4, data_type=0x0A, units=(4, 0)),
                 region_item(*tissue)]
        plausible = True
    elif kind == "whole":
        items = [region_item(0, 0, spec.cols - 1, spec.rows - 1,
                             spec.cols // 2, 0, delta)]
        plausible = False
    elif kind == "tiny":
        items = [region_item(4, 4, 13, 13, 5, 0, delta)]
        plausible = False
    else:
        raise ValueError(kind)
    ds.SequenceOfUltrasoundRegions = Sequence(items)
    described = [{k: (float(it[k].value) if isinstance(it[k].value, float) else int(it[k].value))
                  for k in ("RegionSpatialFormat", "RegionDataType", "RegionFlags",
                            "RegionLocationMinX0", "RegionLocationMinY0",
                            "RegionLocationMaxX1", "RegionLocationMaxY1",
                            "ReferencePixelX0", "ReferencePixelY0",
                            "PhysicalUnitsXDirection", "PhysicalUnitsYDirection",
                            "PhysicalDeltaX", "PhysicalDeltaY")} for it in items]
    return True, plausible, described


def add_pixels(ds, px, frames, multiframe):
    ds.SamplesPerPixel = px.samples
    ds.PhotometricInterpretation = px.photometric
    if px.samples == 3:
        ds.PlanarConfiguration = px.planar
    ds.Rows, ds.Columns = px.stored.shape[1], px.stored.shape[2]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelRepresentation = 0
    if multiframe:
        ds.NumberOfFrames = frames
    if px.palette is not None:
        # Both conventions map back to the 8-bit colour with entry >> 8; the
        # shifted one has unequal bytes, so a missed byte swap shows.
        lut16 = px.palette.astype(np.uint16) * (256 if px.lut_shift else 257)
        for i in range(3):  # Red, Green, Blue: descriptors then data
            ds.add_new(Tag(0x0028, 0x1101 + i), "US", [256, 0, 16])
            ds.add_new(Tag(0x0028, 0x1201 + i), "OW", lut16[:, i].astype("<u2").tobytes())
    data = px.data + (b"\0" if len(px.data) % 2 else b"")  # even length
    ds.add_new(Tag(0x7FE0, 0x0010), "OB", data)


def build_dataset(v, n, seed, scene, px):
    ds = Dataset()
    phi = phi_for(n, seed)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "CARDIAC", "0001"]
    ds.SOPClassUID = v.sop
    ds.Modality = "US"
    ds.Manufacturer = "ACME"
    ds.ManufacturerModelName = "ECHO 3000"
    ds.StudyDescription = "Echocardiogram"
    ds.SeriesNumber, ds.InstanceNumber = 1, n
    ds.BurnedInAnnotation = "YES"
    if v.sop == SOP_SECONDARY_CAPTURE:
        ds.ConversionType = "WSD"
    add_phi(ds, phi)
    multiframe = v.sop != SOP_US_IMAGE
    frames = px.stored.shape[0]
    rng = np.random.default_rng([seed, n])
    fps, fps_source = add_timing(ds, v.timing if multiframe else "none", frames, rng)
    regions = add_regions(ds, v.regions, scene)
    ds.HeartRate = 72
    add_pixels(ds, px, frames, multiframe)
    return ds, phi, (fps, fps_source), regions

# --------------------------------------------------------------------------
# Writing files
# --------------------------------------------------------------------------


def save(ds, path, ts):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ts
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "ECHONET_GEN_1"
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    ds.is_little_endian = ts != TS_EXPLICIT_BE
    ds.is_implicit_VR = ts == TS_IMPLICIT_LE
    ds.save_as(path, write_like_original=False)


def run(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")


def encode_j2k(ds, px, lossy):
    """JPEG 2000 codestreams (no JP2 box, as DICOM requires) from Pillow,
    one fragment per frame.  Lossy files use the irreversible wavelet and
    colour transform, hence YBR_ICT; lossless colour files skip the colour
    transform and stay RGB."""
    fragments = []
    for frame in px.stored:
        buf = BytesIO()
        opts = dict(no_jp2=True, irreversible=lossy)
        if lossy:
            opts.update(quality_mode="rates", quality_layers=[12], mct=1 if px.samples == 3 else 0)
        Image.fromarray(frame).save(buf, format="JPEG2000", **opts)
        fragments.append(buf.getvalue())
    ds.add_new(Tag(0x7FE0, 0x0010), "OB", encapsulate(fragments, has_bot=True))
    ds["PixelData"].is_undefined_length = True
    if lossy:
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionMethod = "ISO_15444_1"
        if px.samples == 3:
            ds.PhotometricInterpretation = "YBR_ICT"
    if px.samples == 3:
        ds.PlanarConfiguration = 0


def write_variant(v, ds, path, workdir):
    ts, tool = ENCODINGS[v.encoding]
    if v.encoding.startswith("j2k"):
        encode_j2k(ds, v.px, v.encoding == "j2k_lossy")
        save(ds, path, ts)
    elif tool is None:
        save(ds, path, ts)
    else:
        native = os.path.join(workdir, v.name + ".native.dcm")
        save(ds, native, ts)
        run(tool + [native, path])
        os.unlink(native)

# --------------------------------------------------------------------------
# Variants
# --------------------------------------------------------------------------

SCENES = {s.name: s for s in [
    SceneSpec("A", 636, 434, 24, -40, 40, period=24),
    SceneSpec("B", 800, 600, 16, -38, 38, apex_x_frac=0.45, period=20, ecg_scroll=6),
    SceneSpec("C", 1016, 708, 12, -36, 44, apex_above=40, period=26, background=4,
              depth_cm=18),
    SceneSpec("D", 640, 480, 24, -45, 45, period=28, background=5, ecg_scroll=4),
    SceneSpec("E", 1024, 768, 12, -35, 35, period=22, depth_cm=20),
    SceneSpec("F", 641, 479, 17, -42, 42, apex_x_frac=0.55, period=25),
    SceneSpec("G", 636, 434, 40, -40, 40, apex_x_frac=0.55, period=30),
    SceneSpec("S", 400, 300, 16, -40, 40, period=20),
]}


@dataclass
class Variant:
    name: str
    scene: str
    photometric: str
    encoding: str
    timing: str = "cine"
    regions: str = "fan"
    planar: int = 0
    lut_shift: bool = False
    sop: str = SOP_US_MULTIFRAME
    quick: bool = False
    px: Pixels = None


def V(name, scene, photometric, encoding, **kw):
    return Variant(name, scene, photometric, encoding, **kw)


VARIANTS = [
    # Native encodings and every photometric interpretation.
    V("us_mf_mono2_implicit", "A", "MONOCHROME2", "implicit", quick=True),
    V("us_mf_mono2_explicit", "A", "MONOCHROME2", "explicit", timing="frametime", regions="none"),
    V("us_mf_mono1_explicit", "D", "MONOCHROME1", "explicit", timing="recommended", quick=True),
    V("us_mf_rgb_explicit", "A", "RGB", "explicit", quick=True),
    V("us_mf_rgb_planar_explicit", "A", "RGB", "explicit", planar=1, timing="vector"),
    V("us_mf_ybr_full_explicit", "D", "YBR_FULL", "explicit", timing="none"),
    V("us_mf_ybr_full_422_explicit", "D", "YBR_FULL_422", "explicit", timing="cine25", quick=True),
    V("us_mf_palette_explicit", "A", "PALETTE COLOR", "explicit", timing="frametime30", quick=True),
    V("us_mf_mono2_apex_above_explicit", "C", "MONOCHROME2", "explicit"),
    V("us_mf_mono2_ftv_implicit", "G", "MONOCHROME2", "implicit", timing="vector", regions="none"),
    # Other native transfer syntaxes.
    V("us_mf_mono2_odd_bigendian", "F", "MONOCHROME2", "big"),
    V("us_mf_rgb_bigendian", "S", "RGB", "big", timing="frametime"),
    V("us_mf_palette_bigendian", "S", "PALETTE COLOR", "big", lut_shift=True),
    V("us_mf_mono2_deflate", "B", "MONOCHROME2", "deflate"),
    V("us_mf_rgb_deflate", "D", "RGB", "deflate", timing="frametime", regions="none"),
    # JPEG family.
    V("us_mf_rgb_jpeg_baseline", "E", "RGB", "jpeg_baseline", quick=True),
    V("us_mf_rgb_jpeg_baseline_444", "B", "RGB", "jpeg_baseline_444", timing="vector"),
    V("us_mf_mono2_jpeg_baseline", "B", "MONOCHROME2", "jpeg_baseline", timing="frametime"),
    V("us_mf_mono2_jpeg_extended", "A", "MONOCHROME2", "jpeg_extended"),
    V("us_mf_mono2_jpeg_lossless_sv1", "C", "MONOCHROME2", "jpeg_lossless_sv1"),
    V("us_mf_rgb_jpeg_lossless", "S", "RGB", "jpeg_lossless", timing="frametime"),
    V("us_mf_ybr_full_jpeg_lossless_sv1", "S", "YBR_FULL", "jpeg_lossless_sv1"),
    V("us_mf_mono2_jpegls", "S", "MONOCHROME2", "jpegls", quick=True),
    V("us_mf_rgb_jpegls", "S", "RGB", "jpegls"),
    V("us_mf_rgb_jpegls_near", "S", "RGB", "jpegls_near"),
    V("us_mf_mono2_jpegls_near", "S", "MONOCHROME2", "jpegls_near", timing="frametime"),
    # RLE.
    V("us_mf_mono2_odd_rle", "F", "MONOCHROME2", "rle", quick=True),
    V("us_mf_rgb_rle", "A", "RGB", "rle", timing="frametime"),
    V("us_mf_palette_rle", "S", "PALETTE COLOR", "rle", lut_shift=True),
    V("us_mf_ybr_full_rle", "S", "YBR_FULL", "rle"),
    # JPEG 2000.
    V("us_mf_mono2_j2k", "S", "MONOCHROME2", "j2k"),
    V("us_mf_rgb_j2k", "S", "RGB", "j2k"),
    V("us_mf_rgb_j2k_lossy", "S", "RGB", "j2k_lossy"),
    # Other SOP classes.
    V("us_single_rgb_explicit", "D", "RGB", "explicit", sop=SOP_US_IMAGE, quick=True),
    V("us_single_mono2_jpeg_baseline", "E", "MONOCHROME2", "jpeg_baseline", sop=SOP_US_IMAGE),
    V("sc_mf_mono2_explicit", "A", "MONOCHROME2", "explicit", timing="frametime",
      regions="none", sop=SOP_SECONDARY_CAPTURE, quick=True),
    V("sc_mf_rgb_jpeg_baseline", "S", "RGB", "jpeg_baseline", timing="cine",
      regions="none", sop=SOP_SECONDARY_CAPTURE),
    # Region sequences the reader must not trust blindly, and one it must
    # search.
    V("us_mf_mono2_regions_whole", "A", "MONOCHROME2", "explicit", regions="whole", quick=True),
    V("us_mf_mono2_regions_tiny", "A", "MONOCHROME2", "explicit", regions="tiny"),
    V("us_mf_mono2_regions_ecg_first", "D", "MONOCHROME2", "explicit", regions="ecg_and_fan"),
]

# --------------------------------------------------------------------------
# Reading back and checking
# --------------------------------------------------------------------------


def as_frames(arr, frames, samples):
    """pixel_array drops the frame axis for one frame; put it back."""
    want = 3 if samples == 1 else 4
    return arr[None] if arr.ndim == want - 1 else arr


def check_with_dcmtk(path, ts, workdir):
    """Decodes with DCMTK to explicit little endian and returns the stored
    values, for files pydicom cannot decode itself."""
    out = os.path.join(workdir, os.path.basename(path) + ".dec.dcm")
    run(DCMTK_DECODERS[ts] + [path, out])
    ds = pydicom.dcmread(out)
    arr = as_frames(ds.pixel_array, int(ds.get("NumberOfFrames", 1)), ds.SamplesPerPixel)
    os.unlink(out)
    return arr, ds.PhotometricInterpretation


def check_palette(v, ds):
    """The stored LUTs must give back the palette drawn with.  Read here
    rather than with apply_color_lut, which in pydicom 2.3 ignores the byte
    order of (non-segmented) LUT data in big endian files."""
    order = "<u2" if ds.is_little_endian else ">u2"
    for c, colour in enumerate(("Red", "Green", "Blue")):
        desc = list(ds[f"{colour}PaletteColorLookupTableDescriptor"].value)
        lut = np.frombuffer(ds[f"{colour}PaletteColorLookupTableData"].value, order)
        if desc != [256, 0, 16] or not np.array_equal(lut >> 8, v.px.palette[:, c]):
            raise RuntimeError(f"{v.name}: {colour} palette does not round-trip")


def verify(v, path, out_dir, workdir, entry):
    """Reads the written file back with pydicom, compares its pixels with
    what was encoded, and fills the manifest's decoding fields."""
    ds = pydicom.dcmread(path)
    ts = str(ds.file_meta.TransferSyntaxUID)
    photometric = ds.PhotometricInterpretation
    entry.update(transfer_syntax=ts, photometric=photometric,
                 planar=int(ds.PlanarConfiguration) if "PlanarConfiguration" in ds else None,
                 rows=int(ds.Rows), cols=int(ds.Columns),
                 frames=int(ds.get("NumberOfFrames", 1)),
                 samples_per_pixel=int(ds.SamplesPerPixel),
                 decoded_channels=1 if photometric.startswith("MONOCHROME") else 3)
    expected = v.px.stored[:entry["frames"]]
    truth = display_rgb_or_grey(expected, v.px.photometric, v.px.palette)
    try:
        arr = as_frames(ds.pixel_array, entry["frames"], ds.SamplesPerPixel)
        entry["pydicom_decodable"] = True
    except Exception as exc:  # no handler: NotImplementedError/RuntimeError
        arr = None
        entry["pydicom_decodable"] = False
        entry["pydicom_error"] = type(exc).__name__

    if arr is not None:
        if arr.shape != expected.shape:
            raise RuntimeError(f"{v.name}: pixel_array shape {arr.shape} != {expected.shape}")
        if photometric.startswith("YBR") and not np.array_equal(arr, expected):
            # Pillow hands back YCbCr for JPEG (pydicom asks it to) but RGB
            # for JPEG 2000; record which, so tests convert only when needed.
            as_rgb = convert_color_space(arr, photometric, "RGB") \
                if photometric in ("YBR_FULL", "YBR_FULL_422") else None
            err_ybr = np.abs(as_rgb.astype(int) - truth).mean() if as_rgb is not None else 1e9
            err_rgb = np.abs(arr.astype(int) - truth).mean()
            entry["pixel_array_space"] = "RGB" if err_rgb < err_ybr else photometric
        else:
            entry["pixel_array_space"] = photometric
        if entry["lossless"]:
            if not np.array_equal(arr, expected):
                raise RuntimeError(f"{v.name}: lossless pixels differ from the source")
            if photometric == "PALETTE COLOR":
                check_palette(v, ds)
        else:
            shown = arr
            if photometric == "MONOCHROME1":
                shown = 255 - arr
            elif entry["pixel_array_space"] != "RGB" and photometric.startswith("YBR"):
                shown = convert_color_space(arr, photometric, "RGB")
            entry["lossy_mean_abs_error"] = round(float(np.abs(shown.astype(int) - truth).mean()), 3)
            if entry["lossy_mean_abs_error"] > 12:
                raise RuntimeError(f"{v.name}: lossy error {entry['lossy_mean_abs_error']}")
        return

    # pydicom cannot decode it: keep the source values as the reference and
    # prove them right by decoding with DCMTK.
    decoded, dec_photometric = check_with_dcmtk(path, ts, workdir)
    tolerance = JPEGLS_NEAR if v.encoding == "jpegls_near" else 0
    if dec_photometric != photometric or decoded.shape != expected.shape:
        raise RuntimeError(f"{v.name}: DCMTK decodes {dec_photometric} {decoded.shape}")
    worst = int(np.abs(decoded.astype(int) - expected).max())
    if worst > tolerance:
        raise RuntimeError(f"{v.name}: DCMTK decode differs by {worst} > {tolerance}")
    ref = v.name + ".ref.npy"
    np.save(os.path.join(out_dir, ref), expected)
    entry.update(reference_npy=ref, reference_tolerance=tolerance,
                 reference_checked_with=DCMTK_DECODERS[ts][0], pixel_array_space=photometric)

# --------------------------------------------------------------------------
# Good files
# --------------------------------------------------------------------------


def make_good(v, n, seed, scene, out_dir, workdir):
    index = scene.index[:1] if v.sop == SOP_US_IMAGE else scene.index
    v.px = encode_pixels(index, v.photometric, v.planar, v.lut_shift)
    ds, phi, (fps, fps_source), (has_regions, plausible, regions) = \
        build_dataset(v, n, seed, scene, v.px)
    fname = v.name + ".dcm"
    path = os.path.join(out_dir, fname)
    write_variant(v, ds, path, workdir)

    mask_name = v.name + ".fanmask.png"
    cv2.imwrite(os.path.join(out_dir, mask_name), scene.mask.astype(np.uint8) * 255)
    fan = scene.fan
    entry = {
        "file": fname, "kind": "good", "expect": "ok",
        "sop_class": v.sop, "encoding": v.encoding, "scene": v.scene,
        "fps": round(fps, 6), "fps_source": fps_source,
        "has_regions": has_regions, "regions_plausible": plausible, "regions": regions,
        "lossless": v.encoding not in LOSSY_ENCODINGS,
        "fan": {"apex_x": fan.apex_x, "apex_y": fan.apex_y,
                "half_angle_deg": (fan.angle_right - fan.angle_left) / 2,
                "angle_left_deg": fan.angle_left, "angle_right_deg": fan.angle_right,
                "radius": fan.radius, "radius_inner": fan.radius_inner,
                "bbox": scene.bbox, "area_px": int(scene.mask.sum())},
        "fanmask": mask_name,
        "text_boxes": scene.text_boxes,
        "ecg_box": scene.ecg_box,
        "ecg_scrolls": bool(scene.spec.ecg_scroll),
        "lv_period_frames": scene.spec.period,
        "phi_strings": phi_strings(phi),
        "identity": {k: phi[k] for k in TOP_LEVEL_PHI},
        "burned_text": scene.burned_text,
        "burned_text_note": "drawn into the pixels with cv2.putText; not present as bytes",
        # Static grey outside the fan and the marks (before any inversion).
        "background_grey": int(GREY_LUT[scene.spec.background]),
        # Deflate compresses the whole dataset: PHI is not greppable as is.
        "dataset_deflated": v.encoding == "deflate",
    }
    if v.photometric == "PALETTE COLOR":
        entry["palette_lut"] = {"entries": 256, "first_mapped": 0, "bits": 16,
                                "entry_of_8bit": "v*256" if v.lut_shift else "v*257",
                                # entry >> 8 gives rgb8 exactly; rounding
                                # entry*255/65535 does too for v*257 but
                                # is up to 1 lower for v*256.
                                "rgb8": v.px.palette.tolist()}
    verify(v, path, out_dir, workdir, entry)
    return entry

# --------------------------------------------------------------------------
# Bad files
# --------------------------------------------------------------------------


def small_dataset(n, seed):
    """A small valid US multi-frame grey dataset (320 x 240, 12 frames), the
    base of the hand-broken files."""
    spec = SceneSpec("bad", 320, 240, 12, -40, 40, period=20)
    scene = render_scene(spec, seed, n)
    px = encode_pixels(scene.index, "MONOCHROME2", 0)
    v = Variant("bad", "bad", "MONOCHROME2", "explicit")
    ds, phi, _, _ = build_dataset(v, n, seed, scene, px)
    return ds, phi


def pixel_length_offset(blob):
    """Offset of PixelData's 4-byte length in an explicit VR little endian
    file with an OB pixel element."""
    pos = blob.rfind(b"\xe0\x7f\x10\x00OB\x00\x00")
    if pos < 0:
        raise RuntimeError("no explicit OB PixelData element found")
    return pos + 8


def make_bad(out_dir, seed, good_entries, n0, workdir):
    bad_dir = os.path.join(out_dir, "bad")
    os.makedirs(bad_dir, exist_ok=True)
    entries = []

    def record(name, reason, phi=None, **extra):
        # The good files' keys, empty, so tests can index any entry alike.
        entry = dict.fromkeys(("sop_class", "transfer_syntax", "photometric", "planar",
                               "rows", "cols", "frames", "fps", "fps_source",
                               "has_regions", "regions_plausible", "lossless", "fan",
                               "pydicom_decodable"))
        entry.update({"file": "bad/" + name, "kind": "bad", "expect": "error",
                      "reason": reason, "text_boxes": [], "burned_text": [],
                      "phi_strings": phi_strings(phi) if phi else []})
        entry.update(extra)
        entries.append(entry)

    def write_bytes(name, blob):
        with open(os.path.join(bad_dir, name), "wb") as fh:
            fh.write(blob)

    write_bytes("not_dicom.txt", b"This is not a DICOM file.\nJust some text, "
                b"long enough to pass a size check" + b"." * 200 + b"\n")
    record("not_dicom.txt", "plain text, no preamble or DICM magic")
    write_bytes("empty.dcm", b"")
    record("empty.dcm", "zero-length file")

    # Truncated copies of good files, native and encapsulated.
    by_name = {e["file"]: e for e in good_entries}
    wanted = ["us_mf_mono2_explicit.dcm", "us_mf_mono2_implicit.dcm",
              "us_mf_rgb_jpeg_baseline.dcm", "us_mf_mono2_odd_rle.dcm"]
    sources = [by_name[f] for f in wanted if f in by_name]
    if len(sources) == 4:  # one native source is enough
        sources.pop(1)
    for src in sources:
        with open(os.path.join(out_dir, src["file"]), "rb") as fh:
            blob = fh.read()
        for pct in (10, 50, 99):
            name = f"trunc{pct:02d}_{src['file']}"
            write_bytes(name, blob[:len(blob) * pct // 100])
            record(name, f"first {pct}% of {src['file']}", source=src["file"],
                   phi_strings=src["phi_strings"])

    n = n0
    # PixelData's length field claims more than the file holds.
    ds, phi = small_dataset(n, seed)
    buf = BytesIO()
    save(ds, buf, TS_EXPLICIT_LE)
    blob = bytearray(buf.getvalue())
    off = pixel_length_offset(blob)
    real = struct.unpack_from("<I", blob, off)[0]
    struct.pack_into("<I", blob, off, real + 1_000_000)
    write_bytes("pixeldata_length_lies.dcm", bytes(blob))
    record("pixeldata_length_lies.dcm", "PixelData length exceeds the file by 1 MB", phi)
    struct.pack_into("<I", blob, off, 0xFFFFFFF0)
    write_bytes("pixeldata_length_4gib.dcm", bytes(blob))
    record("pixeldata_length_4gib.dcm", "PixelData length field 0xFFFFFFF0", phi)

    # NumberOfFrames ten times what the pixel data holds.
    n += 1
    ds, phi = small_dataset(n, seed)
    ds.NumberOfFrames = 120
    save(ds, os.path.join(bad_dir, "frames_lie.dcm"), TS_EXPLICIT_LE)
    record("frames_lie.dcm", "NumberOfFrames 120 but pixel data for 12", phi)

    # A dataset with no pixel data at all.
    n += 1
    ds, phi = small_dataset(n, seed)
    del ds.PixelData
    save(ds, os.path.join(bad_dir, "no_pixel_data.dcm"), TS_EXPLICIT_LE)
    record("no_pixel_data.dcm", "image attributes but no PixelData", phi)

    n += 1
    ds, phi = small_dataset(n, seed)
    ds.Rows = 0
    save(ds, os.path.join(bad_dir, "rows_zero.dcm"), TS_EXPLICIT_LE)
    record("rows_zero.dcm", "Rows = 0", phi)

    # Dimensions that would need 18 TB if trusted; the pixel data is tiny.
    n += 1
    ds, phi = small_dataset(n, seed)
    ds.Rows, ds.Columns, ds.NumberOfFrames = 60000, 60000, 5000
    ds.PixelData = bytes(1024)
    save(ds, os.path.join(bad_dir, "huge_dimensions.dcm"), TS_EXPLICIT_LE)
    record("huge_dimensions.dcm", "Rows 60000 x Columns 60000 x 5000 frames, 1 KiB of pixels", phi)

    # A transfer syntax nobody implements, over encapsulated (JPEG) frames:
    # with native pixels DCMTK would guess the encoding and succeed, so the
    # data must be something no reader can decode without knowing the syntax.
    n += 1
    ds, phi = small_dataset(n, seed)
    native = os.path.join(workdir, "unknown_ts.native.dcm")
    jpeg = os.path.join(workdir, "unknown_ts.jpeg.dcm")
    save(ds, native, TS_EXPLICIT_LE)
    run(ENCODINGS["jpeg_baseline"][1] + [native, jpeg])
    with open(jpeg, "rb") as fh:
        blob = fh.read()
    # Patch the UID in place: one of the same length keeps the meta group's
    # length right, so only the syntax is wrong.
    known, unknown = TS_JPEG_BASELINE.encode(), b"1.2.840.10008.9.9.9.50"
    if len(known) != len(unknown) or known not in blob:
        raise RuntimeError("cannot patch the transfer syntax")
    write_bytes("unknown_transfer_syntax.dcm", blob.replace(known, unknown, 1))
    record("unknown_transfer_syntax.dcm",
           "file meta names an unknown transfer syntax; pixel data encapsulated", phi)
    return entries

# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------


def check_manifest(entries, out_dir):
    """Cross-checks the records: masks non-empty and matching the fan box,
    marks clear of the fan, every file present."""
    for e in entries:
        if not os.path.exists(os.path.join(out_dir, e["file"])):
            raise RuntimeError(f"missing {e['file']}")
        if e["kind"] != "good":
            continue
        mask = cv2.imread(os.path.join(out_dir, e["fanmask"]), cv2.IMREAD_UNCHANGED)
        if mask.shape != (e["rows"], e["cols"]) or mask.sum() == 0:
            raise RuntimeError(f"{e['file']}: bad fan mask")
        if bbox_of(mask) != e["fan"]["bbox"]:
            raise RuntimeError(f"{e['file']}: fan bbox disagrees with the mask")
        for x0, y0, x1, y1 in e["text_boxes"]:
            if mask[y0:y1 + 1, x0:x1 + 1].any():
                raise RuntimeError(f"{e['file']}: text box overlaps the fan")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="a small subset")
    ap.add_argument("--jobs", type=int, default=2, help="files made in parallel")
    args = ap.parse_args(argv)

    start = time.monotonic()
    out_dir = os.path.abspath(args.out)
    os.makedirs(out_dir, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix=".work-", dir=out_dir)
    variants = [v for v in VARIANTS if v.quick or not args.quick]
    try:
        # Scenes are shared between variants, so draw them first; the PHI
        # drawn into a scene uses the number of its first variant.
        scenes = {}
        for n, v in enumerate(variants, 1):
            if v.scene not in scenes:
                scenes[v.scene] = n
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            drawn = dict(zip(scenes, pool.map(
                lambda item: render_scene(SCENES[item[0]], args.seed, item[1]),
                scenes.items())))
            good = list(pool.map(
                lambda nv: make_good(nv[1], nv[0], args.seed, drawn[nv[1].scene], out_dir, workdir),
                enumerate(variants, 1)))
        bad = make_bad(out_dir, args.seed, good, len(variants) + 1, workdir)
        entries = good + bad
        check_manifest(entries, out_dir)
        with open(os.path.join(out_dir, "manifest.json"), "w") as fh:
            json.dump(entries, fh, indent=1)
            fh.write("\n")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"make_dicoms: {len(good)} good + {len(bad)} bad files in {out_dir} "
          f"({time.monotonic() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
