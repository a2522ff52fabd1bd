"""nn_common.py - what the inference engine's parity tests share.

Builds torchvision's two EchoNet networks (full size, or a reduced-width
variant of the same topology) with random weights and random, non-trivial
BatchNorm statistics, saves them exactly as upstream does
(torch.save({"state_dict": DataParallel(model).state_dict()})), converts them
with tools/convert-weights, runs them through the C engine (test-nn-driver)
and through torchvision on the same normalised inputs, and compares.
"""

import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torchvision

sys.path.insert(0, os.path.join(os.environ.get("EN_TOP_SRCDIR", os.path.join(os.path.dirname(__file__), "..")), "tools"))
from nn_models import deeplab, r2plus1d, shrink  # noqa: E402,F401

TOP_SRC = os.environ.get("EN_TOP_SRCDIR", os.path.join(os.path.dirname(__file__), ".."))
TOP_BUILD = os.environ.get("EN_TOP_BUILDDIR", TOP_SRC)
PYTHON = os.environ.get("PYTHON", "/usr/bin/python3")
CONVERT = os.path.join(TOP_SRC, "tools", "convert-weights")
DRIVER = os.path.join(TOP_BUILD, "tests", "test-nn-driver")
MEAN = np.array([32.49, 32.63, 32.93], dtype=np.float32)
STD = np.array([49.87, 49.88, 50.13], dtype=np.float32)


def sanitized():
    """True in the ASan/UBSan run (test.sh sets EN_SANITIZE=1): the full-size
    tests then use fewer frames; every test still runs."""
    return os.environ.get("EN_SANITIZE", "") not in ("", "0")


def skip_full():
    """EN_NN_SKIP_FULL=1 leaves out the full-size networks (a slow machine,
    a heavily instrumented build); reduced widths still run.  Under ASan and
    UBSan they take about 12 s each here, so CI runs them by default."""
    return os.environ.get("EN_NN_SKIP_FULL", "") not in ("", "0")


def threads():
    return int(os.environ.get("EN_NN_TEST_THREADS", "2"))


def randomize_bn(model, calib, seed):
    """Random weights with BatchNorm statistics that are random but keep the
    activations in a sane range: measure the real statistics on a calibration
    input (train mode, momentum 1), then perturb mean, var, weight and bias."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.momentum = 1.0
    model.train()
    with torch.no_grad():
        model(calib)
        for m in bns:
            n = m.num_features
            sd = m.running_var.clamp_min(1e-6).sqrt()
            m.running_mean += 0.2 * sd * torch.randn(n, generator=g)
            m.running_var *= 0.5 + 1.5 * torch.rand(n, generator=g)
            m.weight.copy_(0.5 + torch.rand(n, generator=g))
            m.bias.copy_(0.2 * torch.randn(n, generator=g))
            m.momentum = 0.1
    model.eval()
    return model


def frames(n, seed, size=112):
    """Echo-like normalised frames: smooth grey blobs, replicated to 3
    channels, normalised with the default mean/std.  Shape (n, 3, H, W)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 1, 12, 12, generator=g)
    img = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear",
                                          align_corners=False)
    img = (img * 255 * 0.8 + 20 * torch.rand(n, 1, size, size, generator=g)).clamp(0, 255)
    img = img.round().repeat(1, 3, 1, 1)
    mean = torch.from_numpy(MEAN).view(1, 3, 1, 1)
    std = torch.from_numpy(STD).view(1, 3, 1, 1)
    return ((img - mean) / std).float()


def save_upstream(model, path):
    """Exactly how echonet/dynamic saves: DataParallel-wrapped, in a dict."""
    torch.save({"epoch": 1, "state_dict": torch.nn.DataParallel(model).state_dict(),
                "best_loss": 0.0}, path)


def convert(src, dst, *extra):
    r = subprocess.run([PYTHON, CONVERT, src, dst, "-q"] + list(extra),
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("convert-weights failed: " + r.stderr)


def run_driver(args, check=True, env=None):
    r = subprocess.run([DRIVER] + [str(a) for a in args], capture_output=True, text=True,
                       env=env)
    if check and r.returncode != 0:
        sys.exit("test-nn-driver %s failed (%d): %s" % (args[0], r.returncode, r.stderr))
    return r


def c_segment(weights, x, tmp, batch=4, profile=None):
    """The C engine's logits; with profile a list, EN_NN_PROFILE=1 and the
    driver's stderr (one line per convolution) appended to it."""
    inp, out = os.path.join(tmp, "seg.in"), os.path.join(tmp, "seg.out")
    x.numpy().astype("<f4").tofile(inp)
    n, _, h, w = x.shape
    env = dict(os.environ, EN_NN_PROFILE="1") if profile is not None else None
    r = run_driver(["seg", weights, inp, out, n, h, w, threads(), batch], env=env)
    if profile is not None:
        profile.append(r.stderr)
    return np.fromfile(out, dtype="<f4").reshape(n, h, w)


def c_ef(weights, clips, tmp):
    inp, out = os.path.join(tmp, "ef.in"), os.path.join(tmp, "ef.out")
    clips.numpy().astype("<f4").tofile(inp)
    n, _, t, h, w = clips.shape
    run_driver(["ef", weights, inp, out, n, t, h, w, threads()])
    return np.fromfile(out, dtype="<f4")


def check_seg(c, ref, label):
    """Per-frame max|C-torch| <= 1e-3 max|torch|, masks agree on >= 99.9 %."""
    ok = True
    for i in range(ref.shape[0]):
        d = np.abs(c[i] - ref[i]).max()
        scale = np.abs(ref[i]).max()
        agree = np.mean((c[i] > 0) == (ref[i] > 0))
        pos = np.mean(ref[i] > 0)
        good = d <= 1e-3 * scale and agree >= 0.999
        print("%s frame %d: max|C-torch| %.3g (%.2e of max|torch| %.3g), masks agree %.4f%% "
              "(torch LV fraction %.2f) %s" % (label, i, d, d / scale, scale, 100 * agree, pos,
                                               "ok" if good else "FAIL"))
        ok = ok and good
    return ok


def seg_case(width_div, nframes, seed, tmp, label, size=112, aspp_merged=None):
    """aspp_merged True or False: also check whether ASPP's 1x1, rate-24
    and rate-36 branches ran as one product (deeplab.c: they do where the
    two rates see only their middle tap)."""
    torch.manual_seed(seed)
    model = randomize_bn(deeplab(width_div), frames(2, seed + 1, size), seed + 2)
    x = frames(nframes, seed + 3, size)
    with torch.no_grad():
        ref = model(x)["out"][:, 0]
        # centre the logits so about half the pixels are LV: the mask
        # comparison is then meaningful
        model.classifier[-1].bias -= ref.median()
        ref = model(x)["out"][:, 0].numpy()
    pt, st = os.path.join(tmp, "seg.pt"), os.path.join(tmp, "seg.safetensors")
    save_upstream(model, pt)
    convert(pt, st, "--origin", "nn parity test, random weights seed %d" % seed)
    prof = [] if aspp_merged is not None else None
    c = c_segment(st, x, tmp, batch=3, profile=prof)
    ok = check_seg(c, ref, label)
    if aspp_merged is not None:
        aspp = model.classifier[0].convs[0][0]
        line = "%d->%d " % (aspp.in_channels, 3 * aspp.out_channels)
        merged = any(line in l and "nn-profile conv" in l for l in prof[0].splitlines())
        print("%s: ASPP's three centre branches %s one product (%s)" %
              (label, "ran as" if merged else "did not run as",
               "ok" if merged == aspp_merged else "FAIL"))
        ok = ok and merged == aspp_merged
    return ok


def ef_case(width_div, nclips, seed, tmp, label, t=32):
    torch.manual_seed(seed)
    calib = frames(t, seed + 1).permute(1, 0, 2, 3).unsqueeze(0)
    model = randomize_bn(r2plus1d(width_div), calib, seed + 2)
    clips = torch.stack([frames(t, seed + 10 + i).permute(1, 0, 2, 3) for i in range(nclips)])
    feats = []
    hook = model.avgpool.register_forward_hook(lambda m, i, o: feats.append(o.flatten(1)))
    with torch.no_grad():
        model(clips)
        hook.remove()
        f = feats[0]
        # An fc that puts the EFs in a realistic 10..80 range without
        # amplifying rounding more than a trained head would: along the mean
        # feature direction (+-25 points around 45) plus an equally large
        # random component, so |w| |f| ~ 35.
        fm = f.mean(0)
        g = torch.Generator().manual_seed(seed + 3)
        r = torch.randn(fm.shape[0], generator=g)
        r -= (r @ fm) / (fm @ fm) * fm
        sign = 1.0 if seed % 2 else -1.0
        w = sign * 25.0 * fm / (fm @ fm) + 25.0 * r / (r.norm() * fm.norm())
        model.fc.weight.copy_(w.unsqueeze(0))
        model.fc.bias.fill_(45.0)
        ref = model(clips).flatten().numpy()
    pt, st = os.path.join(tmp, "ef.pt"), os.path.join(tmp, "ef.safetensors")
    save_upstream(model, pt)
    convert(pt, st, "--origin", "nn parity test, random weights seed %d" % seed)
    c = c_ef(st, clips, tmp)
    ok = True
    for i in range(nclips):
        d = abs(float(c[i]) - float(ref[i]))
        good = d <= 0.01 and 10 <= ref[i] <= 80
        print("%s clip %d: torch EF %.4f, C EF %.4f, |diff| %.2e %s" % (
            label, i, ref[i], c[i], d, "ok" if good else "FAIL"))
        ok = ok and good
    return ok


def synthetic_video(n, rows, cols, ch):
    """The 8-bit video test-nn-driver's synthetic_pixel() makes, (n, ch, H, W)."""
    f = np.arange(n).reshape(n, 1, 1, 1)
    c = np.arange(ch).reshape(1, ch, 1, 1)
    y = np.arange(rows).reshape(1, 1, rows, 1)
    x = np.arange(cols).reshape(1, 1, 1, cols)
    return ((f * 31 + y * 7 + x * 3 + (x * y) % 13 + c * 50) % 256).astype(np.float32)


def normalise_upstream(video):
    """echonet.datasets.Echo: float frames, (x - mean[c]) / std[c]; grey videos
    are three equal channels (upstream reads them as RGB)."""
    if video.shape[1] == 1:
        video = np.repeat(video, 3, axis=1)
    return (video - MEAN.reshape(1, 3, 1, 1)) / STD.reshape(1, 3, 1, 1)


def frames_api_case(tmp, label):
    """The 8-bit entry points: en_nn_segment_frames (normalisation, batching,
    LV sizes) and en_nn_ef_frames (upstream's sampling and zero padding after
    normalisation), against torchvision on upstream's preprocessing."""
    ok = True
    torch.manual_seed(31)
    seg = randomize_bn(deeplab(8), frames(2, 32), 33)
    vid = synthetic_video(7, 64, 80, 1)
    x = torch.from_numpy(normalise_upstream(vid))
    with torch.no_grad():
        seg.classifier[-1].bias -= seg(x)["out"].median()
        ref = seg(x)["out"][:, 0].numpy()
    pt, st = os.path.join(tmp, "fseg.pt"), os.path.join(tmp, "fseg.safetensors")
    save_upstream(seg, pt)
    convert(pt, st)
    out = os.path.join(tmp, "fseg.out")
    run_driver(["frames", st, out, 7, 64, 80, 1, 0])
    c = np.fromfile(out, dtype="<f4").reshape(7, 64, 80)
    sizes = np.fromfile(out + ".sizes", dtype="<i4")
    ok = check_seg(c, ref, label + " segment_frames 64x80 grey") and ok
    good = np.array_equal(sizes, (c > 0).reshape(7, -1).sum(1)) and \
        np.abs(sizes - (ref > 0).reshape(7, -1).sum(1)).max() <= 5
    print("%s sizes %s vs torch %s %s" % (label, list(sizes), list((ref > 0).reshape(7, -1).sum(1)),
                                          "ok" if good else "FAIL"))
    ok = ok and good

    ef = randomize_bn(r2plus1d(8), frames(32, 34).permute(1, 0, 2, 3).unsqueeze(0), 35)
    for n, start in ((70, 4), (40, 10)):    # a full clip, and one padded past the end
        vid = normalise_upstream(synthetic_video(n, 48, 48, 3))       # (f, c, h, w)
        video = np.transpose(vid, (1, 0, 2, 3))                        # (c, f, h, w)
        if n < start + 64:
            pad = np.zeros((3, start + 64 - n, 48, 48), np.float32)    # after normalising
            video = np.concatenate((video, pad), axis=1)
        clip = torch.from_numpy(np.ascontiguousarray(video[:, start + 2 * np.arange(32)]))
        with torch.no_grad():
            r = float(ef(clip.unsqueeze(0)).flatten()[0])
        pt, st = os.path.join(tmp, "fef.pt"), os.path.join(tmp, "fef.safetensors")
        save_upstream(ef, pt)
        convert(pt, st)
        out = os.path.join(tmp, "fef.out")
        run_driver(["frames", st, out, n, 48, 48, 3, start])
        c = float(np.fromfile(out, dtype="<f4")[0])
        good = abs(c - r) <= 1e-3 * max(1.0, abs(r))
        print("%s ef_frames %d frames start %d: torch %.5f C %.5f %s" % (
            label, n, start, r, c, "ok" if good else "FAIL"))
        ok = ok and good
    return ok


def main_with(cases):
    torch.set_num_threads(threads())
    with tempfile.TemporaryDirectory(prefix="nn-parity-") as tmp:
        ok = all([case(tmp) for case in cases])
    sys.exit(0 if ok else 1)
