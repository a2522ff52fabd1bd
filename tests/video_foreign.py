"""video_foreign.py - en_video_read reads videos other tools wrote.

Later stages take AVIs (and other videos) that we did not write, so the
reader must honour each file's range and colour matrix.  A grey ramp
covering 0..255 is encoded with the ffmpeg command-line tool as
  - FFV1 grey in Matroska (lossless, full range): read back exactly;
  - MPEG-4 part 2 yuv420p in AVI ("TV" range 16..235): read back close,
    with 0 still near 0 and 255 near 255 - a reader that ignored the range
    would be ~16 levels off at both ends;
  - H.264 yuv420p in MP4 at 30000/1001 fps (if libx264 is there);
and read with tests/video-read-test.  An audio-only file must be refused
with a message naming it.

Run by automake with $PYTHON; skipped (77) without numpy or ffmpeg.
"""
import os
import shutil
import subprocess
import sys
import tempfile

try:
    import numpy as np
except ImportError as e:  # pragma: no cover - environment problem
    print("skip: %s lacks numpy: %s" % (sys.executable, e))
    sys.exit(77)

FFMPEG = shutil.which("ffmpeg")
if not FFMPEG:
    print("skip: ffmpeg is not installed")
    sys.exit(77)

BUILD = os.environ.get("EN_TOP_BUILDDIR")
if not BUILD:
    print("EN_TOP_BUILDDIR is not set: run through make check")
    sys.exit(99)
READER = os.path.join(BUILD, "tests", "video-read-test")

W, H, N = 96, 64, 30
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL: " + what)


def source():
    """N frames of a horizontal ramp 0..255 with a bar moving down."""
    ramp = np.round(np.linspace(0, 255, W)).astype(np.uint8)
    frames = np.tile(ramp, (N, H, 1))
    for f in range(N):
        y = (f * 2) % (H - 8)
        frames[f, y:y + 8, W // 4:W // 2] = 200
    return frames


def has_encoder(name):
    out = subprocess.run([FFMPEG, "-hide_banner", "-encoders"], capture_output=True, text=True)
    return any(line.split()[1:2] == [name] for line in out.stdout.splitlines() if line.strip())


def encode(raw, out, rate, args):
    cmd = [FFMPEG, "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "gray", "-s", "%dx%d" % (W, H),
           "-framerate", rate, "-i", raw] + args + [out]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError("ffmpeg failed: %s" % res.stderr)


def read(path, folder, channels=1):
    raw = os.path.join(folder, "read.raw")
    res = subprocess.run([READER, path, raw, str(channels)], capture_output=True, text=True)
    if res.returncode != 0:
        return None, None, res.stderr.strip()
    n, rows, cols, ch, fps = res.stdout.split()
    frames = np.fromfile(raw, dtype=np.uint8).reshape(int(n), int(rows), int(cols), int(ch))
    return frames, float(fps), None


def check_case(label, path, folder, src, fps, max_mae, exact=False):
    got, got_fps, err = read(path, folder)
    check(err is None, "%s: read failed: %s" % (label, err))
    if err is not None:
        return
    check(got.shape == (N, H, W, 1), "%s: shape %s" % (label, got.shape))
    check(abs(got_fps - fps) < 0.01, "%s: fps %.4f, want %.4f" % (label, got_fps, fps))
    if got.shape != (N, H, W, 1):
        return
    diff = np.abs(got[..., 0].astype(int) - src.astype(int))
    left = float(got[:, :, 0, 0].mean())
    right = float(got[:, :, -1, 0].mean())
    print("%s: %d frames %dx%d at %.4f fps, mean abs error %.3f, max %d; "
          "column of 0 reads %.2f, column of 255 reads %.2f"
          % (label, got.shape[0], W, H, got_fps, diff.mean(), diff.max(), left, right))
    if exact:
        check(diff.max() == 0, "%s: not exact (max error %d)" % (label, diff.max()))
    check(diff.mean() < max_mae, "%s: mean abs error %.3f" % (label, diff.mean()))
    check(left < 3 and right > 252, "%s: range not honoured (0 -> %.2f, 255 -> %.2f)" % (label, left, right))


def main():
    out_root = os.path.join(BUILD, "tests", "out")
    os.makedirs(out_root, exist_ok=True)
    folder = tempfile.mkdtemp(prefix="video-foreign-", dir=out_root)
    src = source()
    raw = os.path.join(folder, "src.gray")
    src.tofile(raw)

    ffv1 = os.path.join(folder, "ffv1.mkv")
    encode(raw, ffv1, "25", ["-c:v", "ffv1", "-pix_fmt", "gray"])
    check_case("ffv1 gray mkv", ffv1, folder, src, 25.0, 0.001, exact=True)
    rgb, _, err = read(ffv1, folder, channels=3)
    check(err is None and rgb.shape == (N, H, W, 3) and
          (rgb[..., 0] == src).all() and (rgb[..., 1] == src).all() and (rgb[..., 2] == src).all(),
          "ffv1 gray mkv read as RGB: channels differ from the source (%s)" % err)

    mpeg4 = os.path.join(folder, "mpeg4.avi")
    encode(raw, mpeg4, "50", ["-c:v", "mpeg4", "-q:v", "1", "-pix_fmt", "yuv420p"])
    check_case("mpeg4 yuv420p (tv range) avi", mpeg4, folder, src, 50.0, 3.0)

    if has_encoder("libx264"):
        h264 = os.path.join(folder, "h264.mp4")
        encode(raw, h264, "30000/1001", ["-c:v", "libx264", "-crf", "4", "-pix_fmt", "yuv420p"])
        check_case("h264 yuv420p mp4", h264, folder, src, 30000 / 1001, 3.0)
    else:
        print("libx264 not available: H.264 case skipped")

    wav = os.path.join(folder, "tone.wav")
    subprocess.run([FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", "sine=duration=0.2", wav], check=True)
    got, _, err = read(wav, folder)
    check(got is None and err and wav in err and "no video stream" in err,
          "audio-only file: want an error naming it, got %r" % err)
    print("audio-only file: %s" % err)

    if failures:
        print("%d check(s) failed; files kept in %s" % (len(failures), folder))
        return 1
    shutil.rmtree(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
