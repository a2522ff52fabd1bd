"""`echonetctl segment` and `echonetctl ef` take the precision as the
pipeline does: [nn] precision from the configuration, or --precision.

On a video converted from a test DICOM, with small models of the real
topology: --precision fp32 and a configured fp32 give the same bytes;
where this CPU has BF16 products, --precision bf16 gives other logits (the
option took effect) whose masks agree with fp32's (Dice >= 0.98) and an EF
within a point; a precision name that is not one is refused with a usage
error that names the option."""
import os
import subprocess

import numpy as np

import enlib
import testmodels

rep = enlib.Report("cli_nn_precision")
site = enlib.Site()
models = testmodels.build(site.dir, 16, "cli_nn_precision random weights", lv_share=0.2)
manifest = enlib.load_manifest()
good = sorted([m for m in manifest if m["expect"] == "ok" and 12 <= m["frames"] <= 40],
              key=lambda m: m["frames"])[-1]
avi = os.path.join(site.dir, "clip.avi")
r = site.run("convert", os.path.join(enlib.TESTDATA, good["file"]), avi)
rep.check(r.returncode == 0 and os.path.exists(avi), "convert: %s" % r.stderr.decode()[-300:])


def conf(precision):
    path = os.path.join(site.dir, "nn-%s.conf" % precision)
    with open(site.conf) as f, open(path, "w") as g:
        g.write(f.read())
        g.write("[models]\nsegmentation = %s\nef = %s\n[nn]\nthreads = 2\nprecision = %s\n"
                % (models["seg"], models["ef"], precision))
    return path


def ctl(cfg, *args):
    return subprocess.run([enlib.ECHONETCTL, "-c", cfg] + list(args), capture_output=True,
                          timeout=600)


def segment(cfg, *extra):
    logits = os.path.join(site.dir, "logits-%d.f32" % len(os.listdir(site.dir)))
    r = ctl(cfg, "segment", avi, "--logits", logits, "--out", os.devnull, *extra)
    if r.returncode != 0:
        return None, r.stderr.decode()
    return np.fromfile(logits, dtype="<f4"), ""


def ef(cfg, *extra):
    r = ctl(cfg, "ef", avi, *extra)
    if r.returncode != 0:
        return None, r.stderr.decode()
    return float(r.stdout.decode().strip().split(",")[-1]), ""


auto_cfg, fp32_cfg = conf("auto"), conf("fp32")
a, err = segment(auto_cfg, "--precision", "fp32")
b, err2 = segment(fp32_cfg)
rep.check(a is not None and b is not None, "segment fp32: %s %s" % (err, err2))
if a is not None and b is not None:
    rep.check(a.tobytes() == b.tobytes(), "--precision fp32 and [nn] precision = fp32 differ")
ea, err = ef(auto_cfg, "--precision", "fp32")
eb, err2 = ef(fp32_cfg)
rep.check(ea is not None and ea == eb, "ef fp32: %s %s (%s %s)" % (ea, eb, err, err2))

flags = open("/proc/cpuinfo").read()
if "avx512_bf16" in flags or "amx_bf16" in flags:
    c, err = segment(fp32_cfg, "--precision", "bf16")
    rep.check(c is not None, "segment bf16: %s" % err)
    if c is not None and b is not None:
        rep.check(c.tobytes() != b.tobytes(), "--precision bf16 gave fp32's logits: not applied")
        mb, mc = b > 0, c > 0
        dice = 2.0 * np.logical_and(mb, mc).sum() / max(1, mb.sum() + mc.sum())
        rep.check(dice >= 0.98, "bf16 masks against fp32: Dice %.4f" % dice)
        print("segment: bf16 against fp32 Dice %.4f, max |logit diff| %.3g"
              % (dice, float(np.abs(b - c).max())))
    ec, err = ef(fp32_cfg, "--precision", "bf16")
    rep.check(ec is not None and eb is not None and abs(ec - eb) <= 1.0,
              "ef bf16 %s against fp32 %s %s" % (ec, eb, err))
else:
    print("this CPU has no BF16 products: the bf16 cases are not run")

for cmd in ("segment", "ef"):
    r = ctl(auto_cfg, cmd, avi, "--precision", "fast")
    rep.check(r.returncode == 2 and b"--precision" in r.stderr,
              "%s --precision fast: exit %d %s" % (cmd, r.returncode, r.stderr.decode()[-200:]))
site.close()
rep.finish()
