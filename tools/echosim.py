#!/usr/bin/python3
"""echosim - a simulator of apical four-chamber echocardiogram cine loops
with known truth, for training echonetd's default ("phantom") models and for
measuring any model's accuracy end to end.

The heart is a set of shapes in centimetres, in the probe's frame (x to the
screen's right, z down from the transducer): LV, RV, LA and RA cavities, the
myocardium and septa around them, mitral and tricuspid leaflets that open in
diastole, the pericardium's bright line, the chest wall above and textured
tissue around.  Every frame is imaged as an ultrasound machine would: the
reflectivity map is sampled on the scan lines (range x angle), multiplied by
complex Gaussian scatterers that decorrelate slowly over time, convolved with
a point-spread function (anisotropic: axial and lateral), enveloped, given
depth attenuation with imperfect gain compensation, near-field clutter and
shadows, log-compressed with a scanner-like dynamic range and reject level,
and scan-converted into the image.

A cardiac cycle has a chosen heart rate, EF and frame rate; beats may be
irregular (RR variation, premature beats with less filling, hence a lower
EF).  Truth per frame: the LV cavity polygon (hence masks in any image), the
LV volume by the single-plane area-length rule V = 8 A^2 / (3 pi L), and per
beat the ED and ES frames and the beat's EF.  The study EF is the mean of the
complete beats' EFs, which is what echonetd reports.

Three outputs:
  * the network's view directly (112 x 112, the fan placed as en_sector_frame
    places it), for training: `Study.render_view()`;
  * whole DICOM files as scanners write them (header band, burned-in text,
    ECG trace, compressed syntaxes), through tests/gen/make_dicoms.py's
    writer: `write_dicom()`, and the `dicoms` subcommand;
  * whole studies as a machine sends them (`study` subcommand,
    `write_study()`): several apical four-chamber clips of one heart, and
    what must not count: the same heart from other windows (two-chamber,
    parasternal long and short axis, subcostal, an off-axis A4C attempt,
    `ViewStudy`), a still, a Doppler and an M-mode strip, a screen without
    a sector, a non-echo object; one StudyInstanceUID, View Code Sequence
    written or not, and the truth of what a reader should conclude.

Everything is seeded: the same seed gives the same study, bit for bit.
Run with Debian's interpreter (numpy, scipy, OpenCV, pydicom):
    /usr/bin/python3 tools/echosim.py dicoms --out DIR --count N --seed S
    /usr/bin/python3 tools/echosim.py study --out DIR --count N --seed S
    /usr/bin/python3 tools/echosim.py preview --out montage.png --seed S
"""

import argparse
import json
import math
import os
import shutil
import sys
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.interpolate import PchipInterpolator

# Where en_sector_frame puts the fan in the network's 112 x 112 view.
VIEW_SIZE = 112
VIEW_APEX = (61.0, 7.0)
VIEW_RADIUS = 107.0

# --------------------------------------------------------------------------
# Parameters of one study
# --------------------------------------------------------------------------


@dataclass
class Params:
    seed: int
    ef: float                 # target EF, fraction
    hr: float                 # beats per minute
    fps: float
    seconds: float
    arrhythmia: float         # 0 = regular; RR coefficient of variation
    premature: float          # probability that a beat is premature
    depth: float              # cm imaged (the fan's outer radius)
    angle_left: float         # degrees from straight down (negative)
    angle_right: float
    scale: float              # heart size factor
    tilt: float               # LV long axis, degrees (base to the right)
    apex_x: float             # cm, LV endocardial apex
    apex_z: float
    lv_len: float             # cm, ED, apex to mitral plane
    lv_half: float            # cm, ED, LV half-width
    wall: float               # cm, LV wall at ED
    sph: float                # cavity shape (0 = bullet, 1 = ellipse)
    dyn_range: float          # dB shown
    reject: float             # share of the grey range suppressed
    gamma: float
    gain_db: float
    atten_db_cm: float        # residual attenuation after TGC
    psf_axial: float          # cm (sigma)
    psf_lateral: float        # degrees (sigma)
    decorrelation: float      # per-frame speckle decorrelation
    clutter: float            # near-field haze reflectivity
    blood: float              # blood reflectivity
    myo: float                # myocardium reflectivity
    tissue: float = 0.02      # tissue around the heart
    noise_floor: float = 0.08 # electronic noise, share of the grey range above reject
    shadow: tuple = None      # (angle deg, width deg, depth cm, factor) or None
    dropout: tuple = None     # (angle along LV contour 0..1, extent, factor)
    texture_seed: int = 0


def draw_params(seed, held_out=False):
    """A random but plausible study.  held_out widens the machine settings
    (other fan angles, depths, dynamic ranges) beyond the training range."""
    rng = np.random.default_rng([seed, 7001])
    u = rng.uniform
    # EF over the whole clinical range, more mass where decisions are made.
    ef = float(np.clip(rng.choice([u(0.12, 0.35), u(0.30, 0.60), u(0.50, 0.75)],
                                  p=[0.3, 0.35, 0.35]), 0.10, 0.78))
    irregular = rng.random() < 0.3
    if held_out:
        half = u(28, 47)
        depth = u(12.5, 21.0)
        dr = u(40, 68)
    else:
        half = u(30, 45)
        depth = u(13.0, 20.0)
        dr = u(42, 65)
    skew = u(-4, 4)
    scale = u(0.85, 1.15) * (1.0 + 0.25 * max(0.0, 0.45 - ef))  # failing hearts dilate
    p = Params(
        seed=seed, ef=ef, hr=u(52, 105), fps=float(rng.choice([40.0, 45.0, 50.0, 50.0, 55.0, 60.0])),
        seconds=u(2.6, 4.2), arrhythmia=u(0.06, 0.18) if irregular else u(0.0, 0.03),
        premature=u(0.1, 0.3) if irregular else 0.0,
        depth=depth, angle_left=-half + skew, angle_right=half + skew,
        scale=scale, tilt=u(-4, 18), apex_x=u(-0.6, 1.0), apex_z=u(2.2, 3.8),
        lv_len=u(7.0, 8.8) * scale, lv_half=u(1.9, 2.5) * scale, wall=u(0.8, 1.25),
        sph=u(0.0, 1.0),
        dyn_range=dr, reject=u(0.15, 0.4), gamma=u(0.8, 1.4), gain_db=u(-4, 4),
        atten_db_cm=u(-0.3, 0.7), psf_axial=u(0.04, 0.09), psf_lateral=u(0.5, 1.1),
        decorrelation=u(0.15, 0.45), clutter=10 ** u(-3.8, -2.2), blood=10 ** u(-4.3, -3.3),
        myo=10 ** u(-1.2, -0.6), tissue=10 ** u(-2.3, -1.4), noise_floor=u(0.03, 0.10),
        shadow=(u(-30, 30), u(4, 12), u(2, 6), u(0.1, 0.5)) if rng.random() < 0.3 else None,
        dropout=(u(0.15, 0.45), u(0.1, 0.25), u(0.15, 0.5)) if rng.random() < 0.35 else None,
        texture_seed=int(rng.integers(1 << 30)))
    # Keep the heart inside the fan: deep enough for the atria.
    # The atria end near the fan's far edge, as in a well-taken A4C view.
    need = p.apex_z + p.lv_len + 4.6 * p.scale
    p.depth = need + u(0.4, 2.5 if held_out else 2.0)
    return p

# --------------------------------------------------------------------------
# The cardiac cycle
# --------------------------------------------------------------------------

# Contraction c (0 = end-diastole, 1 = end-systole) over one beat's phase:
# ejection, isovolumic relaxation, rapid filling, diastasis, atrial kick.
def _contraction_curve(systole):
    s = systole
    knots = [0.0, 0.04, s, s + 0.05, s + 0.22, 0.86, 0.93, 1.0]
    vals = [0.0, 0.02, 1.0, 0.98, 0.28, 0.16, 0.03, 0.0]
    return PchipInterpolator(knots, vals)


# Mitral opening (0 closed, 1 open) over the phase.
def _opening(phase, systole):
    s = systole + 0.05
    if phase < s:
        return 0.0
    t = phase - s
    if t < 0.08:
        return t / 0.08
    if phase < 0.55:
        return 1.0
    if phase < 0.75:
        return 1.0 - 0.5 * (phase - 0.55) / 0.2
    if phase < 0.9:
        return 0.5 + 0.4 * (phase - 0.75) / 0.15
    return max(0.0, 0.9 * (1.0 - (phase - 0.9) / 0.1))


@dataclass
class Beat:
    start: float        # s, end-diastole (the R wave)
    length: float       # s
    systole: float      # share of the beat
    ed_scale: float     # ED size relative to the study's
    ef: float           # target EF of this beat


def make_beats(p, rng):
    beats, t = [], -rng.uniform(0, 60.0 / p.hr)   # start mid-beat
    rr0 = 60.0 / p.hr
    while t < p.seconds + 2 * rr0:
        rr = rr0 * max(0.6, 1.0 + rng.normal(0, p.arrhythmia))
        scale, ef = 1.0, p.ef * (1.0 + rng.normal(0, 0.02))
        if p.premature and rng.random() < p.premature:
            rr *= rng.uniform(0.6, 0.75)          # early beat, less filling
            scale = rng.uniform(0.93, 0.97)
            ef *= rng.uniform(0.8, 0.92)
        systole = 0.30 / rr * (0.8 + 0.2 * rr)     # systole shortens less than RR
        beats.append(Beat(t, rr, float(np.clip(systole, 0.28, 0.5)), scale,
                          float(np.clip(ef, 0.05, 0.85))))
        t += rr
    # The beat after a premature one fills more (compensatory pause).
    for i in range(1, len(beats)):
        if beats[i - 1].ed_scale < 1.0:
            beats[i].length *= 1.25
    t = beats[0].start
    for b in beats:
        b.start, t = t, t + b.length
    return beats

# --------------------------------------------------------------------------
# Geometry in centimetres
# --------------------------------------------------------------------------


def _arc(cu, cv, a, b, v_max=None, v_min=None, n=96):
    """Ellipse (centre cu, cv; half-axes a, b) clipped to v <= v_max or
    v >= v_min, as a closed polygon in (u, v)."""
    t = np.linspace(0, 2 * np.pi, 4 * n, endpoint=False)
    u, v = cu + a * np.sin(t), cv - b * np.cos(t)
    pts = np.stack([u, v], 1)
    if v_max is not None:
        pts = _clip_half(pts, v_max, below=True)
    if v_min is not None:
        pts = _clip_half(pts, v_min, below=False)
    return pts


def _clip_half(pts, level, below):
    """Sutherland-Hodgman against the line v = level (keep v <= level if
    below, else v >= level)."""
    out = []
    inside = (lambda q: q[1] <= level) if below else (lambda q: q[1] >= level)
    for i in range(len(pts)):
        cur, prev = pts[i], pts[i - 1]
        if inside(cur):
            if not inside(prev):
                out.append(_cross(prev, cur, level))
            out.append(cur)
        elif inside(prev):
            out.append(_cross(prev, cur, level))
    return np.array(out)


def _cross(a, b, level):
    t = (level - a[1]) / (b[1] - a[1])
    return a + t * (b - a)


def _lv_cavity(half, length, sph):
    """The LV cavity in its own frame: apex at (0, 0), mitral plane at
    v = length.  An ellipse truncated at 0.8 of its long axis; sph blends
    towards a blunter bullet by moving the centre down."""
    frac = 0.78 + 0.1 * (1.0 - sph)          # where the mitral plane cuts
    b = length / (2 * frac)
    a = half / math.sqrt(max(0.3, 1 - (1 - 2 * frac) ** 2)) * 0.92
    return _arc(0.0, b, a, b, v_max=length), a, b


def polygon_area(pts):
    x, y = pts[:, 0], pts[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def area_length_volume(area_cm2, length_cm):
    """Single-plane area-length volume in ml."""
    return 8.0 * area_cm2 ** 2 / (3.0 * math.pi * length_cm)


@dataclass
class Heart:
    """All shapes at one instant, as polygons in probe cm (x, z)."""
    lv: np.ndarray
    lv_len: float
    myo_outer: list
    cavities: list             # (polygon, kind)
    atrial_walls: list
    valves: list               # (p0, p1) segments
    heart_outline: list


class Study:
    """One simulated study: parameters, beats and the per-frame truth."""

    def __init__(self, params):
        self.p = p = params
        self.rng = np.random.default_rng([p.seed, 7002])
        self.beats = make_beats(p, self.rng)
        self.nframes = int(round(p.seconds * p.fps))
        self.times = np.arange(self.nframes) / p.fps
        self._curves = {}
        theta = math.radians(p.tilt)
        self.axis = np.array([math.sin(theta), math.cos(theta)])
        self.normal = np.array([math.cos(theta), -math.sin(theta)])
        self.apex = np.array([p.apex_x, p.apex_z])
        self._truth = None

    # -- cycle ---------------------------------------------------------------
    def _beat_at(self, t):
        for i, b in enumerate(self.beats):
            if b.start <= t < b.start + b.length:
                return i, (t - b.start) / b.length
        return len(self.beats) - 1, 1.0

    def _curve(self, systole):
        key = round(systole, 4)
        if key not in self._curves:
            self._curves[key] = _contraction_curve(systole)
        return self._curves[key]

    def _es_factor(self, ef):
        """Radial ES/ED ratio for an EF: V ~ a^2 b, and the long axis
        shortens as a^0.6, so V_es/V_ed = sa^2.6."""
        return (1.0 - ef) ** (1.0 / 2.6)

    def state(self, t):
        """(half, length, wall, contraction, opening) of the LV at time t."""
        p = self.p
        i, ph = self._beat_at(t)
        b = self.beats[i]
        nxt = self.beats[min(i + 1, len(self.beats) - 1)]
        c = float(self._curve(b.systole)(ph))
        if ph < b.systole:
            ed = b.ed_scale
        else:
            ed = b.ed_scale + (nxt.ed_scale - b.ed_scale) * (ph - b.systole) / (1 - b.systole)
        sa = self._es_factor(b.ef)
        sb = sa ** 0.6
        half_ed, len_ed = p.lv_half * ed, p.lv_len * ed ** 0.5
        half_es, len_es = p.lv_half * b.ed_scale * sa, p.lv_len * b.ed_scale ** 0.5 * sb
        half = half_ed + c * (half_es - half_ed)
        length = len_ed + c * (len_es - len_ed)
        wall = p.wall * (1.0 + 0.9 * c * (1.0 - sa))
        return half, length, wall, c, _opening(ph, b.systole)

    # -- shapes --------------------------------------------------------------
    def _world(self, uv):
        return self.apex + uv[:, :1] * self.normal + uv[:, 1:2] * self.axis

    def heart(self, t):
        p = self.p
        half, length, wall, c, opening = self.state(t)
        k = p.scale
        lv, a, b = _lv_cavity(half, length, p.sph)
        lv_outer = _arc(0.0, b, a + wall, b + wall, v_max=length + 0.25)
        # RV: narrower, shorter, its apex lower, its base (tricuspid) more
        # apical; it contracts less in this view.
        rv_half = 0.72 * p.lv_half * (1.0 - 0.18 * c)
        septum = wall * 1.05
        rv_u = -(a + septum + rv_half * 1.02)
        rv_apex = 0.22 * p.lv_len
        rv_base = length - 0.7 * k
        rv_b = max(1.0, (rv_base - rv_apex) / 1.6)
        rv = _arc(rv_u, rv_apex + rv_b, rv_half * 1.1, rv_b, v_max=rv_base)
        rv_outer = _arc(rv_u, rv_apex + rv_b, rv_half * 1.1 + 0.45, rv_b + 0.45,
                        v_max=rv_base + 0.2)
        # Atria fill while the ventricles empty.
        grow = 1.0 + 0.18 * c
        la_h, la_a = 2.2 * k * grow, 0.95 * p.lv_half * grow ** 0.5
        la_top = length + 0.22
        la = _arc(0.25 * k, la_top + 0.55 * la_h, la_a, la_h, v_min=la_top)
        la_wall = _arc(0.25 * k, la_top + 0.55 * la_h, la_a + 0.3, la_h + 0.3, v_min=la_top - 0.2)
        ra_h, ra_a = 2.0 * k * grow, 0.8 * rv_half * grow ** 0.5 + 0.2
        ra_top = rv_base + 0.22
        ra_u = min(rv_u + 0.2, 0.25 * k - la_a - 0.45 - ra_a)
        ra = _arc(ra_u, ra_top + 0.55 * ra_h, ra_a, ra_h, v_min=ra_top)
        ra_wall = _arc(ra_u, ra_top + 0.55 * ra_h, ra_a + 0.3, ra_h + 0.3, v_min=ra_top - 0.2)

        # Leaflets hinge on the annulus; closed they meet across it, open
        # they swing into the ventricle.
        valves = []
        for (u0, u1, v0, leaf) in ((-0.8 * a, 0.8 * a, length, (0.55, 0.42)),
                                   (rv_u - 0.75 * rv_half, rv_u + 0.75 * rv_half, rv_base,
                                    (0.5, 0.45))):
            span = u1 - u0
            for hinge, sign, frac in ((u0, 1.0, leaf[0]), (u1, -1.0, leaf[1])):
                ang = math.radians(12 + 70 * opening)        # from the annulus line
                ln = frac * span
                tip = (hinge + sign * ln * math.cos(ang), v0 - ln * math.sin(ang) + 0.25 * (1 - opening) * ln * 0.3)
                valves.append((np.array([[hinge, v0]]), np.array([tip])))
        world = self._world
        outline = [world(lv_outer), world(rv_outer)]
        return Heart(
            lv=world(lv), lv_len=length,
            myo_outer=[world(lv_outer), world(rv_outer), world(la_wall), world(ra_wall)],
            cavities=[(world(lv), "lv"), (world(rv), "rv"), (world(la), "la"), (world(ra), "ra")],
            atrial_walls=[world(la_wall), world(ra_wall)],
            valves=[(world(a0)[0], world(a1)[0]) for a0, a1 in valves],
            heart_outline=outline)

    # -- truth ---------------------------------------------------------------
    def truth(self):
        """Per-frame LV area (cm^2), length (cm), volume (ml); per beat ED/ES
        frames and EF (complete beats inside the video only); study EF."""
        if self._truth is not None:
            return self._truth
        area, length, vol = [], [], []
        for t in self.times:
            h = self.heart(t)
            a = polygon_area(h.lv)
            area.append(a)
            length.append(h.lv_len)
            vol.append(area_length_volume(a, h.lv_len))
        # Every beat whose end-systole is in the video: that is what a
        # reader (and echonetd) measures, one clip per systole.
        beats = []
        fps = self.p.fps
        for b in self.beats:
            ed_t, es_t = b.start, b.start + b.systole * b.length
            ed_f, es_f = ed_t * fps, es_t * fps
            if es_f < 0 or es_f > self.nframes - 1:
                continue
            h_ed, h_es = self.heart(ed_t + 1e-9), self.heart(es_t)
            edv = area_length_volume(polygon_area(h_ed.lv), h_ed.lv_len)
            esv = area_length_volume(polygon_area(h_es.lv), h_es.lv_len)
            next_ed = (b.start + b.length) * fps
            beats.append({"ed_frame": float(ed_f), "es_frame": float(es_f),
                          "next_ed_frame": float(next_ed),
                          "ed_in_video": bool(ed_f >= 0),
                          # a whole beat: both end-diastoles around its
                          # systole are in the video
                          "complete": bool(ed_f >= 0 and next_ed <= self.nframes - 1),
                          "edv_ml": edv, "esv_ml": esv, "ef": 100.0 * (1 - esv / edv)})
        es_frames = [b["es_frame"] for b in beats]
        efs = [b["ef"] for b in beats] or [100.0 * (1 - self._es_factor(self.p.ef) ** 2.6)]
        self._truth = {
            "frames": self.nframes, "fps": fps,
            "area_cm2": area, "length_cm": length, "volume_ml": vol,
            "beats": beats, "es_frames": es_frames,
            "ef": float(np.mean(efs)),
        }
        return self._truth

    # -- imaging -------------------------------------------------------------
    def render(self, geom, supersample=1):
        """Frames (uint8, nframes x rows x cols, 0 outside the fan) for an
        image geometry `geom` (ImageGeometry)."""
        return Imager(self, geom, supersample).frames()

    def render_view(self):
        """The network's view: 112 x 112 grey frames, the fan placed as
        en_sector_frame places it, and the LV masks."""
        return self.render(view_geometry(self.p), supersample=2), view_masks(self)


# --------------------------------------------------------------------------
# Imaging
# --------------------------------------------------------------------------


@dataclass
class ImageGeometry:
    rows: int
    cols: int
    apex_x: float      # pixels
    apex_y: float
    px_per_cm: float
    angle_left: float  # degrees
    angle_right: float
    depth: float       # cm
    radius_inner: float = 0.0   # cm

    def to_px(self, pts):
        return np.stack([self.apex_x + pts[:, 0] * self.px_per_cm,
                         self.apex_y + pts[:, 1] * self.px_per_cm], 1)

    def fan_mask(self):
        ys, xs = np.mgrid[0:self.rows, 0:self.cols].astype(np.float64)
        dx, dy = xs - self.apex_x, ys - self.apex_y
        r = np.hypot(dx, dy) / self.px_per_cm
        ang = np.degrees(np.arctan2(dx, dy))
        return ((r <= self.depth) & (r >= self.radius_inner)
                & (ang >= self.angle_left) & (ang <= self.angle_right))


def view_geometry(p):
    return ImageGeometry(VIEW_SIZE, VIEW_SIZE, VIEW_APEX[0], VIEW_APEX[1],
                         VIEW_RADIUS / p.depth, p.angle_left, p.angle_right, p.depth)


def lv_mask(poly_cm, geom):
    """The LV cavity as a 0/1 mask whose area is the polygon's.  cv2.fillPoly
    also paints every pixel an edge crosses, which would grow the mask by
    half a pixel all round (8-10 % of an LV's area at 112 x 112), so the
    polygon is filled 8x finer and each pixel takes the majority of its 8x8
    block: edge pixels go in or out by how much of them the LV covers."""
    k = 8
    pts = geom.to_px(poly_cm)
    fine = np.zeros((geom.rows * k, geom.cols * k), np.uint8)
    # Pixel centre (x, y) covers the fine block [k x, k x + k).
    fpts = (pts + 0.5) * k - 0.5
    cv2.fillPoly(fine, [np.round(fpts * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)
    blocks = fine.reshape(geom.rows, k, geom.cols, k).sum(axis=(1, 3))
    return (blocks * 2 > k * k).astype(np.uint8)


def _fill(img, polys, value, geom):
    for poly in polys:
        pts = np.round(geom.to_px(poly) * 16).astype(np.int32)
        cv2.fillPoly(img, [pts], value, cv2.LINE_AA, shift=4)


class Imager:
    """Scan-line imaging of one study into one image geometry."""

    def __init__(self, study, geom, supersample):
        self.s, self.p = study, study.p
        self.out = geom
        ss = supersample
        # Reflectivity is drawn on a working raster of the fan's region,
        # finer than the output and than any speckle cell.
        wppc = max(10.0, min(25.0, 1.3 * geom.px_per_cm * ss))
        aL, aR = math.radians(geom.angle_left), math.radians(geom.angle_right)
        xmin = min(0.0, geom.depth * math.sin(aL)) - 0.2
        xmax = max(0.0, geom.depth * math.sin(aR)) + 0.2
        self.work = ImageGeometry(int(math.ceil((geom.depth + 0.4) * wppc)),
                                  int(math.ceil((xmax - xmin) * wppc)),
                                  -xmin * wppc, 0.2 * wppc, wppc,
                                  geom.angle_left, geom.angle_right, geom.depth,
                                  geom.radius_inner)
        # Scan lines: range samples every ~psf/2, angles every ~psf/2.
        p = self.p
        self.nr = int(np.clip(geom.depth / (p.psf_axial * 0.9), 160, 480))
        span = geom.angle_right - geom.angle_left + 4
        self.na = int(np.clip(span / (p.psf_lateral * 0.7), 64, 220))
        self.r = np.linspace(0, geom.depth + 0.2, self.nr)
        self.a = np.linspace(geom.angle_left - 2, geom.angle_right + 2, self.na)
        R, A = np.meshgrid(self.r, np.radians(self.a), indexing="ij")
        X, Z = R * np.sin(A), R * np.cos(A)
        w = self.work
        self.map_wx = (w.apex_x + X * w.px_per_cm).astype(np.float32)
        self.map_wy = (w.apex_y + Z * w.px_per_cm).astype(np.float32)
        # Output pixels -> scan-line coordinates (supersampled).
        rows, cols = geom.rows * ss, geom.cols * ss
        ys, xs = np.mgrid[0:rows, 0:cols].astype(np.float64)
        xs = (xs + 0.5) / ss - 0.5
        ys = (ys + 0.5) / ss - 0.5
        dx, dy = (xs - geom.apex_x) / geom.px_per_cm, (ys - geom.apex_y) / geom.px_per_cm
        rr = np.hypot(dx, dy)
        aa = np.degrees(np.arctan2(dx, dy))
        self.map_r = (rr / (self.r[1] - self.r[0])).astype(np.float32)
        self.map_a = ((aa - self.a[0]) / (self.a[1] - self.a[0])).astype(np.float32)
        self.ss = ss
        self.fan = geom.fan_mask()
        self.rng = np.random.default_rng([p.seed, 7003, geom.rows, geom.cols])
        self._static()

    def _static(self):
        """Reflectivity that does not beat: chest wall, tissue texture,
        the depth-gain profile, shadows."""
        p, w = self.p, self.work
        trng = np.random.default_rng([p.texture_seed, 1])
        tex = cv2.GaussianBlur(trng.standard_normal((w.rows, w.cols)).astype(np.float32),
                               (0, 0), 0.6 * w.px_per_cm)
        tex /= max(1e-6, float(tex.std()))
        fine = cv2.GaussianBlur(trng.standard_normal((w.rows, w.cols)).astype(np.float32),
                                (0, 0), 0.15 * w.px_per_cm)
        fine /= max(1e-6, float(fine.std()))
        self.tex_tissue = np.exp(0.45 * tex).astype(np.float32)
        self.tex_myo = np.exp(0.25 * fine + 0.15 * tex).astype(np.float32)
        ys = (np.arange(w.rows) - w.apex_y) / w.px_per_cm
        xs = (np.arange(w.cols) - w.apex_x) / w.px_per_cm
        Y, X = np.meshgrid(ys, xs, indexing="ij")
        R = np.hypot(X, Y)
        wall_end = p.apex_z - 0.9
        bands = 0.5 + 0.5 * np.sin(2 * np.pi * R / 0.55 + trng.uniform(0, 6.3))
        chest = np.where(R < wall_end, (0.02 + 0.08 * bands) * self.tex_tissue, 0)
        self.background = (chest + np.where(R >= wall_end, p.tissue * self.tex_tissue, 0)).astype(np.float32)
        # Depth gain: residual attenuation and the TGC's error, lateral
        # fall-off near the sector's edges, the overall gain.
        r = self.r[:, None]
        a = self.a[None, :]
        half = (self.a[-1] - self.a[0]) / 2
        mid = (self.a[-1] + self.a[0]) / 2
        edge = 1.0 - 0.35 * (np.abs(a - mid) / half) ** 4
        tgc = 10 ** ((-p.atten_db_cm * r + p.gain_db
                      + 1.5 * np.sin(r / p.depth * np.pi * trng.uniform(1, 3))) / 10)
        self.gain = (tgc * edge).astype(np.float32)
        if p.shadow:
            ang, width, depth, factor = p.shadow
            inside = (np.abs(a - ang) < width / 2) & (r > depth)
            self.gain = np.where(inside, self.gain * factor, self.gain).astype(np.float32)
        self.clutter = (p.clutter * np.exp(-r / 1.8) * (1 + 0 * a)).astype(np.float32)
        self.noise_depth = (0.5 + 0.8 * (r / p.depth) + 0 * a).astype(np.float32)
        # Scatterers: complex Gaussian, decorrelating from frame to frame.
        self.z = self._noise()

    def _noise(self):
        return (self.rng.standard_normal((self.nr, self.na))
                + 1j * self.rng.standard_normal((self.nr, self.na))).astype(np.complex64)

    def reflectivity(self, t):
        p, w = self.p, self.work
        h = self.s.heart(t)
        img = self.background.copy()
        myo = np.zeros_like(img)
        _fill(myo, h.myo_outer, 1.0, w)
        np.clip(myo, 0, 1, out=myo)
        img = img * (1 - myo) + myo * p.myo * self.tex_myo
        # Pericardium: a bright line just outside the ventricles.
        heart = np.zeros((w.rows, w.cols), np.uint8)
        for poly in h.heart_outline:
            cv2.fillPoly(heart, [np.round(w.to_px(poly) * 16).astype(np.int32)], 1,
                         cv2.LINE_8, shift=4)
        k = max(3, int(round(0.25 * w.px_per_cm)) | 1)
        ring = cv2.dilate(heart, np.ones((k, k), np.uint8)) - heart
        img = np.where(ring > 0, 0.6 * self.tex_myo, img)
        cav = np.zeros_like(img)
        _fill(cav, [c for c, _ in h.cavities], 1.0, w)
        np.clip(cav, 0, 1, out=cav)
        img = img * (1 - cav) + cav * p.blood
        if p.dropout:
            # Echo dropout over part of the LV's lateral wall.
            pos, ext, factor = p.dropout
            lv = h.lv
            n = len(lv)
            i0 = int(pos * n)
            seg = lv[i0:i0 + max(2, int(ext * n))]
            drop = np.zeros_like(img)
            pts = np.round(w.to_px(seg) * 16).astype(np.int32)
            cv2.polylines(drop, [pts], False, 1.0, int(1.2 * w.px_per_cm), cv2.LINE_AA, shift=4)
            drop = cv2.GaussianBlur(drop, (0, 0), 0.3 * w.px_per_cm)
            img *= 1 - (1 - factor) * np.clip(drop, 0, 1)
        for p0, p1 in h.valves:
            a = np.round(w.to_px(p0[None]) * 16).astype(np.int32)[0]
            b = np.round(w.to_px(p1[None]) * 16).astype(np.int32)[0]
            cv2.line(img, tuple(int(v) for v in a), tuple(int(v) for v in b), 0.5,
                     max(1, int(0.14 * w.px_per_cm)), cv2.LINE_AA, shift=4)
        return img

    def frame(self, t):
        p = self.p
        refl = cv2.remap(self.reflectivity(t), self.map_wx, self.map_wy, cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        refl = refl + self.clutter
        rho = math.sqrt(max(0.0, 1.0 - p.decorrelation ** 2))
        self.z = (rho * self.z + p.decorrelation * self._noise()).astype(np.complex64)
        field_ = self.z * np.sqrt(np.maximum(refl, 0)).astype(np.float32)
        sr = p.psf_axial / (self.r[1] - self.r[0])
        sa = p.psf_lateral / (self.a[1] - self.a[0])
        re = cv2.GaussianBlur(np.ascontiguousarray(field_.real), (0, 0), sigmaX=sa, sigmaY=sr)
        im = cv2.GaussianBlur(np.ascontiguousarray(field_.imag), (0, 0), sigmaX=sa, sigmaY=sr)
        power = (re * re + im * im) * self.gain / (2 * math.pi * sr * sa)
        # Electronic noise, amplified with depth by the TGC: a faint,
        # ever-changing grain over the whole fan, even in the blood pools
        # and shadows, as on every real scanner.
        top = 10 * math.log10(1.6 * p.myo + 1e-12)
        nz = self._noise()
        nz = cv2.GaussianBlur(np.ascontiguousarray(nz.real), (0, 0), 0.8) ** 2 + \
            cv2.GaussianBlur(np.ascontiguousarray(nz.imag), (0, 0), 0.8) ** 2
        floor_db = top - p.dyn_range * (1.0 - p.reject - p.noise_floor)
        power = power + nz * self.noise_depth * (10 ** (floor_db / 10) / max(1e-9, float(nz.mean())))
        db = 10 * np.log10(power + 1e-12)
        # Log compression: 0 dB = bright myocardium; reject, then gamma.
        g = np.clip((db - (top - p.dyn_range)) / p.dyn_range, 0, 1)
        g = np.clip((g - p.reject) / (1 - p.reject), 0, 1) ** p.gamma
        out = cv2.remap(g.astype(np.float32), self.map_a, self.map_r, cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        if self.ss > 1:
            out = cv2.resize(out, (self.out.cols, self.out.rows), interpolation=cv2.INTER_AREA)
        out = np.where(self.fan, out, 0.0)
        return np.clip(np.round(out * 255), 0, 255).astype(np.uint8)

    def frames(self):
        return np.stack([self.frame(t) for t in self.s.times])


# --------------------------------------------------------------------------
# DICOM files, as scanners write them
# --------------------------------------------------------------------------

# Machine layouts: image size, apex position, probe (curvilinear apex above
# the image or not), and whether the file describes its ultrasound region
# (without it the reader must find the fan from the pixels).  The held-out set uses the ones marked held_out.
MACHINES = [
    dict(name="m636", cols=636, rows=434, apex_x_frac=0.5, held_out=False),
    dict(name="m800", cols=800, rows=600, apex_x_frac=0.45, held_out=False),
    dict(name="m640", cols=640, rows=480, apex_x_frac=0.5, held_out=False, regions="none"),
    dict(name="m1016", cols=1016, rows=708, apex_x_frac=0.5, apex_above=40, held_out=True),
    dict(name="m1024", cols=1024, rows=768, apex_x_frac=0.5, held_out=True),
    dict(name="m720", cols=720, rows=540, apex_x_frac=0.55, held_out=True, regions="none"),
]
# (photometric, encoding) pairs real machines send.
STORAGE = [("MONOCHROME2", "explicit"), ("RGB", "jpeg_baseline"), ("MONOCHROME2", "jpegls"),
           ("RGB", "rle"), ("YBR_FULL_422", "explicit"), ("MONOCHROME2", "jpeg_baseline"),
           ("RGB", "explicit"), ("PALETTE COLOR", "rle")]


def _gen_module():
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.join(here, "..", "tests", "gen"))
    import make_dicoms
    return make_dicoms


def dicom_layout(machine, seed, nframes, angle_left, angle_right, depth):
    """Where a machine puts things: (scene spec, header height, fan), the
    fan in pixels as make_dicoms fits it between the header and the ECG."""
    md = _gen_module()
    spec = md.SceneSpec(f"sim{seed}", machine["cols"], machine["rows"], nframes,
                        angle_left, angle_right, apex_x_frac=machine["apex_x_frac"],
                        apex_above=machine.get("apex_above", 0), depth_cm=depth, ecg_scroll=0)
    header_h = max(22, spec.rows // 20)
    fan = md.fit_fan(spec, header_h, max(40, spec.rows // 9))
    return spec, header_h, fan


def write_dicom(study, machine, storage, path, n, workdir, identity=None, view_code=None,
                sop=None):
    """Writes the study as one DICOM file; returns (geometry, phi).  identity
    (a dict of attributes) overrides the generator's fake identifying values,
    so several files can be instances of one study; view_code (scheme,
    value, meaning) writes View Code Sequence; sop picks the SOP class."""
    md = _gen_module()
    p = study.p
    spec, header_h, fan = dicom_layout(machine, p.seed, study.nframes, p.angle_left,
                                       p.angle_right, p.depth)
    geom = ImageGeometry(spec.rows, spec.cols, float(fan.apex_x), float(fan.apex_y),
                         fan.radius / p.depth, p.angle_left, p.angle_right, p.depth,
                         fan.radius_inner / (fan.radius / p.depth))
    mask = fan.mask(spec.rows, spec.cols)
    scene = md.Scene(spec, None, mask, fan, md.bbox_of(mask), header_h=header_h)
    static = np.full((spec.rows, spec.cols), 0, np.uint8)
    md.draw_overlay(scene, static, n)
    frames = np.repeat(static[None], study.nframes, axis=0)
    _draw_ecg(md, scene, frames, study)
    echo = study.render(geom)
    inside = mask & geom.fan_mask()
    idx = np.round(echo.astype(np.float32) * (md.IDX_FAN_MAX / 255.0)).astype(np.uint8)
    frames[:, inside] = idx[:, inside]
    scene.index = frames
    photometric, encoding = storage
    v = md.Variant(os.path.basename(path)[:-4], spec.name, photometric, encoding,
                   timing="frametime", regions=machine.get("regions", "fan"),
                   sop=sop or md.SOP_US_MULTIFRAME)
    v.px = md.encode_pixels(frames, photometric, 0)
    ds, phi, _, _ = md.build_dataset(v, n, p.seed, scene, v.px)
    if v.sop != md.SOP_US_IMAGE:
        # The real frame rate, not the generator's fixed ones.
        ds.FrameTime = f"{1000.0 / p.fps:.4f}"
    ds.HeartRate = int(round(p.hr))
    _finish(ds, phi, identity, view_code)
    md.write_variant(v, ds, path, workdir)
    return geom, phi


def _finish(ds, phi, identity, view_code):
    """The shared identity of a study's instances, and the view code."""
    for key, value in (identity or {}).items():
        setattr(ds, key, value)
        phi[key] = value
    if view_code:
        from pydicom.dataset import Dataset
        from pydicom.sequence import Sequence
        item = Dataset()
        item.CodingSchemeDesignator, item.CodeValue, item.CodeMeaning = view_code
        ds.ViewCodeSequence = Sequence([item])


def _draw_ecg(md, scene, frames, study):
    """An ECG strip whose R waves are the study's end-diastoles, drawn
    statically (the sweep's latest state) below the fan."""
    x0, x1, y_base, amp = md.ecg_geometry(scene)
    secs = study.p.seconds
    xs = np.arange(x0, x1 + 1)
    t = (xs - x0) / max(1, x1 - x0) * secs
    wave = np.zeros_like(t)
    for b in study.beats:
        ph = (t - b.start) / b.length + 0.3          # R at phase 0.30 of ecg_wave
        inb = (ph >= 0) & (ph < 1)
        wave[inb] += md.ecg_wave(ph[inb])
    ys = np.round(y_base - amp * np.clip(wave, -0.5, 1.2)).astype(np.int32)
    pts = np.stack([xs, ys], 1).astype(np.int32)
    scratch = np.zeros(frames.shape[1:], np.uint8)
    cv2.polylines(scratch, [pts], False, md.IDX_ECG, 1, cv2.LINE_8)
    if (scratch > 0)[scene.mask].any():
        raise RuntimeError("ECG crosses the fan")
    frames[:, scratch > 0] = md.IDX_ECG


# --------------------------------------------------------------------------
# Whole studies: one heart seen from several windows, and what else an echo
# study holds
# --------------------------------------------------------------------------

# The view codes machines write (DICOM CID 12226, SNOMED CT).
VIEW_CODES = {
    "a4c": ("SCT", "399214001", "Apical four chamber"),
    "a2c": ("SCT", "399232001", "Apical two chamber"),
    "plax": ("SCT", "399139001", "Parasternal long axis"),
    "psax": ("SCT", "399271003", "Parasternal short axis at the papillary muscle level"),
    "subcostal": ("SCT", "399310008", "Subcostal long axis"),
    # an attempt at A4C that missed: the sonographer still labels it A4C
    "offaxis": ("SCT", "399214001", "Apical four chamber"),
}

# Instances that must not count, and what a reader should say about them.
OTHER_KINDS = ("a2c", "plax", "psax", "subcostal", "offaxis", "still", "doppler", "mmode",
               "nosector", "nonecho")


class ViewStudy(Study):
    """The same heart from another window: its cycle (hence its volumes and
    EF) unchanged, its shapes placed as that view shows them.
      a2c        the apical view rotated to two chambers: LV and LA only;
      plax       parasternal long axis: the LV lies across the beam, mid-depth,
                 the RV above it (nearer the probe), the LA beyond its base;
      psax       parasternal short axis: a round LV with a crescent RV;
      subcostal  four chambers seen from below the ribs: deeper, the heart's
                 axis far from the beam;
      offaxis    an apical four-chamber attempt that missed: foreshortened
                 and tilted away from the beam."""

    def __init__(self, params, view, rng):
        import copy
        p = copy.deepcopy(params)
        self.view = view
        u = rng.uniform
        if view == "plax":
            side = rng.choice([-1.0, 1.0])
            p.tilt = side * u(82, 98)
            p.apex_x = -side * p.lv_len * u(0.42, 0.5)   # the base runs to the other side
            p.apex_z = u(6.5, 8.5)
        elif view == "subcostal":
            side = rng.choice([-1.0, 1.0])
            p.tilt = side * u(55, 75)
            p.apex_x = side * u(-3.5, -2.0)
            p.apex_z = u(5.5, 7.5)
        elif view == "offaxis":
            p.tilt = rng.choice([-1.0, 1.0]) * u(35, 50)
            p.lv_len *= u(0.72, 0.85)
            p.apex_x = u(-0.5, 0.5)
        elif view == "psax":
            p.apex_z = u(6.0, 8.0)      # the LV's centre depth
            p.apex_x = u(-0.8, 0.8)
        need = {"plax": p.apex_z + 5.5, "subcostal": p.apex_z + p.lv_len + 3.0,
                "psax": p.apex_z + 5.0}.get(view, p.depth)
        p.depth = max(p.depth, need)
        super().__init__(p)
        # The same beats and phases as the study they are cut from.
        self.beats = make_beats(p, np.random.default_rng([p.seed, 7002]))

    def heart(self, t):
        if self.view == "psax":
            return self._short_axis(t)
        h = super().heart(t)
        if self.view == "a2c":
            keep = [0, 2]                   # LV and LA, no RV, no RA
            return Heart(lv=h.lv, lv_len=h.lv_len,
                         myo_outer=[h.myo_outer[i] for i in keep],
                         cavities=[h.cavities[i] for i in keep],
                         atrial_walls=[h.atrial_walls[0]], valves=h.valves[:2],
                         heart_outline=h.heart_outline[:1])
        if self.view == "plax":
            keep = [0, 1, 2]                # LV, RV (above), LA; the RA is out of plane
            return Heart(lv=h.lv, lv_len=h.lv_len,
                         myo_outer=[h.myo_outer[i] for i in keep],
                         cavities=[h.cavities[i] for i in keep],
                         atrial_walls=[h.atrial_walls[0]], valves=h.valves[:2],
                         heart_outline=h.heart_outline)
        return h

    def _short_axis(self, t):
        p = self.p
        half, _length, wall, c, _ = self.state(t)
        centre = np.array([p.apex_x, p.apex_z])
        ring = np.linspace(0, 2 * np.pi, 160, endpoint=False)

        def circle(r, cx=0.0, cz=0.0, sx=1.0, sz=1.0):
            return np.stack([centre[0] + cx + r * sx * np.cos(ring),
                             centre[1] + cz + r * sz * np.sin(ring)], 1)
        lv = circle(half)
        lv_outer = circle(half + wall)
        # The RV wraps the septum on the probe's side.
        rv_r = 0.75 * p.lv_half * (1.0 - 0.15 * c)
        rv = circle(rv_r, cx=-0.55 * (half + wall), cz=-0.75 * (half + wall), sx=1.5, sz=0.6)
        rv_outer = circle(rv_r + 0.4, cx=-0.55 * (half + wall), cz=-0.75 * (half + wall),
                          sx=1.5, sz=0.6)
        return Heart(lv=lv, lv_len=2 * half, myo_outer=[lv_outer, rv_outer],
                     cavities=[(lv, "lv"), (rv, "rv")], atrial_walls=[], valves=[],
                     heart_outline=[lv_outer, rv_outer])


def _ds_only(md, name, index, n, seed, sop, modality, regions, identity, fps, workdir, path,
             photometric="MONOCHROME2"):
    """A DICOM file of drawn palette indices (frames x rows x cols) that is
    no echo loop: identity shared with the study, its own regions."""
    v = md.Variant(name, "S", photometric, "explicit", timing="none", regions="none", sop=sop)
    v.px = md.encode_pixels(index, photometric, 0)
    ds, phi, _, _ = md.build_dataset(v, n, seed, None, v.px)
    ds.Modality = modality
    if sop != md.SOP_US_IMAGE and index.shape[0] > 1:
        ds.FrameTime = f"{1000.0 / fps:.4f}"
        ds.FrameIncrementPointer = md.Tag(0x0018, 0x1063)
    if regions:
        ds.SequenceOfUltrasoundRegions = md.Sequence(regions)
    _finish(ds, phi, identity, None)
    md.write_variant(v, ds, path, workdir)
    return phi


def _strip(md, rng, kind, rows, cols, nframes, hr, fps):
    """A Doppler spectrum or an M-mode trace scrolling across a strip: the
    time axis runs left to right, a new column appears on the right each
    frame.  Returns (indices, strip box)."""
    top, bottom, left, right = rows // 6, rows - rows // 10, cols // 10, cols - cols // 12
    h, w = bottom - top, right - left
    total = w + nframes * 3
    t = np.arange(total) / (w / 3.0)                       # 3 s across the strip
    phase = (t * hr / 60.0) % 1.0
    canvas = np.zeros((h, total), np.float32)
    ys = np.arange(h)[:, None]
    if kind == "doppler":
        base = int(h * 0.3)
        env = (0.62 * np.exp(-((phase - 0.18) / 0.07) ** 2) + 0.25 * np.exp(-((phase - 0.62) / 0.06) ** 2)
               + 0.18 * np.exp(-((phase - 0.85) / 0.05) ** 2))
        depth = base + env[None, :] * (h - base)
        fill = (ys >= base) & (ys <= depth)
        canvas[fill] = 0.6
        canvas *= rng.rayleigh(1.0, canvas.shape).astype(np.float32)
        canvas[base - 1:base + 1, :] = 0.9                 # the baseline
    else:                                                  # M-mode: walls moving over time
        for depth0, amp, thick, level in ((0.15, 0.02, 0.05, 0.7), (0.35, 0.07, 0.06, 0.9),
                                          (0.65, 0.06, 0.07, 0.85), (0.8, 0.02, 0.04, 0.6)):
            c = (depth0 + amp * np.cos(2 * np.pi * phase)) * h
            canvas[np.abs(ys - c[None, :]) < thick * h] = level
        canvas = cv2.GaussianBlur(canvas, (0, 0), 1.2) * rng.rayleigh(1.0, canvas.shape).astype(np.float32)
    canvas = np.clip(canvas * md.IDX_FAN_MAX, 0, md.IDX_FAN_MAX).astype(np.uint8)
    frames = np.zeros((nframes, rows, cols), np.uint8)
    for f in range(nframes):
        frames[f, top:bottom, left:right] = canvas[:, f * 3:f * 3 + w]
        frames[f, top:bottom, left:left + 2] = md.IDX_TEXT   # the strip's frame
        frames[f, top:bottom, right - 2:right] = md.IDX_TEXT
    return frames, (left, top, right - 1, bottom - 1)


def _text_screen(md, rows, cols, nframes, lines):
    """A screen of text only (a measurement or report page)."""
    img = np.zeros((rows, cols), np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(img, line, (20, 40 + 28 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.7, md.IDX_TEXT, 1,
                    cv2.LINE_8)
    return np.repeat(img[None], nframes, axis=0)


def write_other(kind, base, machine, storage, path, n, workdir, identity, seed, with_codes):
    """One instance of the study that must not count.  Returns a truth
    record: kind, and what a reader should conclude."""
    md = _gen_module()
    rng = np.random.default_rng([seed, 7101, n])
    name = os.path.basename(path)[:-4]
    p = base.p
    rec = {"kind": kind, "counts": False}
    if kind in ("a2c", "plax", "psax", "subcostal", "offaxis"):
        st = ViewStudy(p, kind, rng)
        code = VIEW_CODES[kind] if with_codes else None
        write_dicom(st, machine, storage, path, n, workdir, identity=identity, view_code=code)
        rec.update(expect="unusable", view_dicom=code[1] if code else None)
    elif kind == "still":
        st = Study(p)
        st.nframes, st.times = 1, st.times[:1]
        write_dicom(st, machine, storage, path, n, workdir, identity=identity,
                    view_code=VIEW_CODES["a4c"] if with_codes else None, sop=md.SOP_US_IMAGE)
        rec.update(expect="not_analysed", reason="single_frame")
    elif kind in ("doppler", "mmode"):
        rows, cols = machine["rows"], machine["cols"]
        frames, (x0, y0, x1, y1) = _strip(md, rng, kind, rows, cols, 40, p.hr, 30.0)
        regions = []
        if kind == "doppler":   # a machine that describes its spectral region
            item = md.region_item(x0, y0, x1, y1, 0, int(0.3 * (y1 - y0)), 0.01, spatial=3,
                                  data_type=3, units=(4, 7))
            regions = [item]
        _ds_only(md, name, frames, n, seed, md.SOP_US_MULTIFRAME, "US", regions, identity, 30.0,
                 workdir, path)
        rec.update(expect="not_analysed", reason="doppler" if kind == "doppler" else "no_sector")
    elif kind == "nosector":
        frames = _text_screen(md, machine["rows"], machine["cols"], 30,
                              ["LV MEASUREMENTS", "IVSd 1.0 cm", "LVIDd 4.9 cm", "LVPWd 0.9 cm"])
        _ds_only(md, name, frames, n, seed, md.SOP_US_MULTIFRAME, "US", [], identity, 30.0,
                 workdir, path)
        rec.update(expect="not_analysed", reason="no_sector")
    elif kind == "nonecho":
        frames = _text_screen(md, 480, 640, 1, ["REPORT", "Echocardiogram summary",
                                                 "See measurements"])
        _ds_only(md, name, frames, n, seed, md.SOP_SECONDARY_CAPTURE, "OT", [], identity, 30.0,
                 workdir, path)
        rec.update(expect="not_analysed", reason="not_ultrasound")
    else:
        raise ValueError(kind)
    return rec


def write_study(out, seed, n_a4c=3, others=OTHER_KINDS, held_out=False, max_seconds=0,
                with_codes=None, work=None):
    """A whole study: n_a4c apical four-chamber clips of one heart (each its
    own stretch of the rhythm, its own probe position and speckle) and one
    instance of each kind in `others`, all sharing one StudyInstanceUID and
    patient.  Files are named <seed>-NN.dcm in a shuffled order.  Returns
    the truth record: the study EF is the mean over the complete beats'
    EFs of the A4C clips, as echonetd should report it."""
    md = _gen_module()
    rng = np.random.default_rng([seed, 7100])
    p = draw_params(seed, held_out=held_out)
    if max_seconds:
        p.seconds = min(p.seconds, max_seconds)
    if with_codes is None:
        with_codes = bool(rng.random() < 0.5)      # about half the machines write view codes
    machines = [m for m in MACHINES if m["held_out"] == held_out] or MACHINES
    machine = machines[int(rng.integers(len(machines)))]
    storage = STORAGE[int(rng.integers(len(STORAGE)))]
    phi = md.phi_for(seed % 100000, seed)
    identity = {k: phi[k] for k in ("PatientName", "PatientID", "PatientBirthDate",
                                    "AccessionNumber", "StudyInstanceUID", "StudyDate",
                                    "StudyTime", "InstitutionName")}
    kinds = ["a4c"] * n_a4c + list(others)
    order = rng.permutation(len(kinds))
    work = work or os.path.join(out, ".work")
    os.makedirs(work, exist_ok=True)
    instances, beats = [], []
    for slot, k in enumerate(order):
        kind = kinds[k]
        n = 1000 * (seed % 1000) + slot + 1
        fname = f"study{seed}-{slot + 1:02d}.dcm"
        path = os.path.join(out, fname)
        if kind == "a4c":
            q = draw_params(seed, held_out=held_out)
            if max_seconds:
                q.seconds = min(q.seconds, max_seconds)
            # Another recording of the same heart: a new stretch of the
            # rhythm, a slightly moved probe, fresh speckle.
            q.seed = seed * 100 + slot
            q.tilt = p.tilt + rng.uniform(-3, 3)
            q.apex_x = p.apex_x + rng.uniform(-0.3, 0.3)
            q.texture_seed = int(rng.integers(1 << 30))
            st = Study(q)
            write_dicom(st, machine, storage, path, n, work, identity=identity,
                        view_code=VIEW_CODES["a4c"] if with_codes else None)
            tr = st.truth()
            complete = [b for b in tr["beats"] if b["complete"]]
            beats += [b["ef"] for b in complete]
            rec = {"kind": "a4c", "counts": True, "expect": "usable", "ef": tr["ef"],
                   "complete_beat_efs": [b["ef"] for b in complete], "frames": st.nframes}
        else:
            rec = write_other(kind, Study(p), machine, storage, path, n, work, identity, seed,
                              with_codes)
        rec["file"] = fname
        rec["phi"] = [identity["PatientName"], identity["PatientID"], identity["StudyInstanceUID"]]
        instances.append(rec)
        print(f"echosim: {fname} {kind}", flush=True)
    return {"seed": seed, "machine": machine["name"], "storage": list(storage),
            "view_codes": with_codes, "ef": float(np.mean(beats)) if beats else None,
            "target_ef": 100 * p.ef, "instances": instances}


def cmd_study(args):
    os.makedirs(args.out, exist_ok=True)
    work = os.path.join(args.out, ".work")
    others = tuple(k for k in args.others.split(",") if k) if args.others is not None else OTHER_KINDS
    records = []
    for i in range(args.count):
        d = os.path.join(args.out, f"study{args.seed + i}") if args.count > 1 else args.out
        os.makedirs(d, exist_ok=True)
        codes = None if args.view_codes == "random" else args.view_codes == "yes"
        records.append(write_study(d, args.seed + i, n_a4c=args.a4c, others=others,
                                   held_out=args.held_out, max_seconds=args.max_seconds,
                                   with_codes=codes, work=work))
        # after each study, so an interrupted run keeps what it made
        with open(os.path.join(args.out, "studies.json.tmp"), "w") as fh:
            json.dump(records, fh, indent=1)
            fh.write("\n")
        os.replace(os.path.join(args.out, "studies.json.tmp"), os.path.join(args.out, "studies.json"))
    shutil.rmtree(work, ignore_errors=True)
    return 0


def truth_record(study, fname=None, machine=None, storage=None):
    tr = study.truth()
    p = study.p
    rec = {"seed": p.seed, "file": fname, "machine": machine, "storage": storage,
           "fps": p.fps, "frames": study.nframes, "hr_bpm": p.hr, "depth_cm": p.depth,
           "angle_left_deg": p.angle_left, "angle_right_deg": p.angle_right,
           "ef": tr["ef"], "beats": tr["beats"], "es_frames": tr["es_frames"],
           "volume_ml": tr["volume_ml"], "irregular": p.arrhythmia > 0.05 or p.premature > 0}
    return rec


def view_masks(study):
    g = view_geometry(study.p)
    return np.stack([lv_mask(study.heart(t).lv, g) for t in study.times])


def cmd_dicoms(args):
    os.makedirs(args.out, exist_ok=True)
    work = os.path.join(args.out, ".work")
    os.makedirs(work, exist_ok=True)
    machines = [m for m in MACHINES if m["held_out"] == args.held_out] or MACHINES
    records = []
    for i in range(args.count):
        seed = args.seed + i
        p = draw_params(seed, held_out=args.held_out)
        if args.max_seconds:
            p.seconds = min(p.seconds, args.max_seconds)
        st = Study(p)
        machine = machines[i % len(machines)]
        storage = STORAGE[i % len(STORAGE)]
        fname = f"phantom-{seed:05d}.dcm"
        write_dicom(st, machine, storage, os.path.join(args.out, fname), 100 + i, work,
                    view_code=VIEW_CODES["a4c"] if args.view_codes == "yes" else None)
        rec = truth_record(st, fname=fname, machine=machine["name"], storage=list(storage))
        rec["lv_masks_file"] = f"phantom-{seed:05d}.masks.npz"
        np.savez_compressed(os.path.join(args.out, rec["lv_masks_file"]),
                            masks=np.packbits(view_masks(st), axis=-1))
        records.append(rec)
        print(f"echosim: {fname} {machine['name']} {storage[1]} {st.nframes} frames "
              f"EF {rec['ef']:.1f} %", flush=True)
    os.rmdir(work)
    with open(os.path.join(args.out, "truth.json"), "w") as fh:
        json.dump(records, fh, indent=1)
        fh.write("\n")
    return 0


def cmd_preview(args):
    p = draw_params(args.seed, held_out=args.held_out)
    st = Study(p) if args.view == "a4c" else \
        ViewStudy(p, args.view, np.random.default_rng([args.seed, 7101]))
    frames, masks = st.render_view()
    tr = st.truth()
    picks = np.linspace(0, len(frames) - 1, 8).astype(int)
    tiles = []
    for i in picks:
        f = cv2.cvtColor(frames[i], cv2.COLOR_GRAY2BGR)
        cnt, _ = cv2.findContours(masks[i], cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        over = f.copy()
        cv2.drawContours(over, cnt, -1, (0, 0, 255), 1)
        tiles.append(np.hstack([f, over]))
    img = np.vstack([np.hstack(tiles[:4]), np.hstack(tiles[4:])])
    img = cv2.resize(img, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(args.out, img)
    print(json.dumps({"ef": tr["ef"], "frames": st.nframes, "fps": p.fps,
                      "beats": [(round(b["ed_frame"]), round(b["es_frame"]), round(b["ef"], 1))
                                for b in tr["beats"]]}))
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dicoms", help="write simulated DICOM studies and truth.json")
    d.add_argument("--out", required=True)
    d.add_argument("--count", type=int, default=8)
    d.add_argument("--seed", type=int, default=1)
    d.add_argument("--held-out", action="store_true",
                   help="machine settings outside the training range")
    d.add_argument("--max-seconds", type=float, default=0,
                   help="cap each loop's length (quick samples)")
    d.add_argument("--view-codes", choices=("yes", "no"), default="no",
                   help="write View Code Sequence (apical four chamber), as machines that "
                        "name their views do")
    d.set_defaults(fn=cmd_dicoms)
    w = sub.add_parser("study", help="write whole studies: several A4C clips of one heart "
                       "and instances that must not count; studies.json holds the truth")
    w.add_argument("--out", required=True)
    w.add_argument("--count", type=int, default=1)
    w.add_argument("--seed", type=int, default=1)
    w.add_argument("--a4c", type=int, default=3, help="apical four-chamber clips per study")
    w.add_argument("--others", default=None,
                   help="comma-separated kinds that must not count (default: all of %s)"
                   % ",".join(OTHER_KINDS))
    w.add_argument("--view-codes", choices=("yes", "no", "random"), default="random",
                   help="whether the machine writes View Code Sequence")
    w.add_argument("--held-out", action="store_true")
    w.add_argument("--max-seconds", type=float, default=0)
    w.set_defaults(fn=cmd_study)
    v = sub.add_parser("preview", help="a PNG montage of one study's network view")
    v.add_argument("--out", required=True)
    v.add_argument("--seed", type=int, default=1)
    v.add_argument("--held-out", action="store_true")
    v.add_argument("--view", default="a4c", choices=("a4c", "a2c", "plax", "psax", "subcostal",
                                                    "offaxis"))
    v.set_defaults(fn=cmd_preview)
    args = ap.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
