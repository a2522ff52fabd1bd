"""video_opencv.py - OpenCV reads what en_video_write_avi writes.

EchoNet-Dynamic loads its AVIs with cv2.VideoCapture, so that is the reader
that counts.  tests/video-write-test writes the synthetic clip of
tests/video_synth.h (and the exact source bytes beside it); here we check
with OpenCV the frame count, 112x112, 3 channels, the frame rate, pixel
values close to the source and, for grey input, three equal channels; and
with ffprobe that the stream is MJPEG with fourcc MJPG in an AVI.

Run by automake with $PYTHON (Debian's python3 with opencv and numpy).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

try:
    import cv2
    import numpy as np
except ImportError as e:  # pragma: no cover - environment problem
    print("skip: %s lacks OpenCV/numpy: %s" % (sys.executable, e))
    sys.exit(77)

BUILD = os.environ.get("EN_TOP_BUILDDIR")
if not BUILD:
    print("EN_TOP_BUILDDIR is not set: run through make check")
    sys.exit(99)
WRITER = os.path.join(BUILD, "tests", "video-write-test")

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL: " + what)


def write_clip(folder, name, fps, channels, nframes=40, size=112):
    avi = os.path.join(folder, name + ".avi")
    raw = os.path.join(folder, name + ".raw")
    out = subprocess.run([WRITER, avi, raw, repr(fps), str(channels), str(nframes), str(size)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError("%s failed: %s" % (WRITER, out.stderr))
    n, rows, cols, ch, _ = out.stdout.split()
    shape = (int(n), int(rows), int(cols), int(ch))
    src = np.fromfile(raw, dtype=np.uint8).reshape(shape)
    return avi, src


def read_opencv(avi):
    cap = cv2.VideoCapture(avi, cv2.CAP_FFMPEG)
    if not cap.isOpened():
        return None, {}
    props = {
        "count": int(cap.get(cv2.CAP_PROP_FRAME_COUNT)),
        "fps": cap.get(cv2.CAP_PROP_FPS),
        "width": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
        "height": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
    }
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return np.array(frames), props


def check_opencv(avi, src, fps, label):
    n, rows, cols, ch = src.shape
    frames, props = read_opencv(avi)
    check(frames is not None, label + ": OpenCV cannot open the file")
    if frames is None:
        return
    check(props["count"] == n, "%s: CAP_PROP_FRAME_COUNT %d, want %d" % (label, props["count"], n))
    check(abs(props["fps"] - fps) < 0.01, "%s: CAP_PROP_FPS %.4f, want %g" % (label, props["fps"], fps))
    check(props["width"] == cols and props["height"] == rows,
          "%s: %dx%d, want %dx%d" % (label, props["width"], props["height"], cols, rows))
    check(frames.shape == (n, rows, cols, 3), "%s: frames %s, want %s" % (label, frames.shape, (n, rows, cols, 3)))
    if frames.shape != (n, rows, cols, 3):
        return
    if ch == 1:
        b, g, r = (frames[..., i].astype(int) for i in range(3))
        unequal = int(np.count_nonzero((b != g) | (g != r)))
        check(unequal == 0, "%s: %d pixels with unequal channels" % (label, unequal))
        want = src[..., 0].astype(int)
        got = g
    else:
        want = src[..., ::-1].astype(int)  # OpenCV gives BGR
        got = frames.astype(int)
    err = np.abs(got - want)
    black = want == 0 if ch == 1 else (src.max(axis=3, keepdims=True) == 0).repeat(3, axis=3)
    mae = float(err.mean())
    print("%s: OpenCV read %d frames %dx%dx3 at %.4f fps; mean abs error %.3f, max %d, "
          "black mean %.3f" % (label, len(frames), cols, rows, props["fps"], mae, err.max(),
                               float(got[black].mean())))
    check(mae < 3.0, "%s: mean abs error %.3f" % (label, mae))
    check(float(got[black].mean()) < 1.0, "%s: black is not black" % label)


def check_ffprobe(avi, fps_fraction, label):
    if not shutil.which("ffprobe"):
        print("%s: ffprobe not installed, container checks skipped" % label)
        return
    out = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", avi],
                         capture_output=True, text=True)
    check(out.returncode == 0, "%s: ffprobe failed: %s" % (label, out.stderr))
    if out.returncode != 0:
        return
    info = json.loads(out.stdout)
    streams = info.get("streams", [])
    check(len(streams) == 1, "%s: %d streams" % (label, len(streams)))
    if not streams:
        return
    st = streams[0]
    check(st.get("codec_name") == "mjpeg", "%s: codec_name %s" % (label, st.get("codec_name")))
    check(st.get("codec_tag_string") == "MJPG", "%s: fourcc %s" % (label, st.get("codec_tag_string")))
    check(st.get("r_frame_rate") == fps_fraction,
          "%s: r_frame_rate %s, want %s" % (label, st.get("r_frame_rate"), fps_fraction))
    # Our documented choice (avi_write.c): full-resolution chroma.
    check(st.get("pix_fmt") == "yuvj444p", "%s: pix_fmt %s" % (label, st.get("pix_fmt")))
    fmt = info.get("format", {}).get("format_name")
    check(fmt == "avi", "%s: container %s" % (label, fmt))
    tags = json.dumps(info.get("format", {}).get("tags", {}))
    check("Lavf" not in tags, "%s: libav version string in the file: %s" % (label, tags))
    print("%s: ffprobe %s/%s %s %s in %s" % (label, st.get("codec_name"), st.get("codec_tag_string"),
                                             st.get("pix_fmt"), st.get("r_frame_rate"), fmt))


def main():
    out_root = os.path.join(BUILD, "tests", "out")
    os.makedirs(out_root, exist_ok=True)
    folder = tempfile.mkdtemp(prefix="video-opencv-", dir=out_root)
    cases = [
        ("grey-50", 50.0, 1, "50/1"),
        ("grey-29.97", 29.97, 1, "2997/100"),
        ("grey-50.5", 50.5, 1, "101/2"),
        ("rgb-30", 30.0, 3, "30/1"),
    ]
    for name, fps, channels, fraction in cases:
        avi, src = write_clip(folder, name, fps, channels)
        check_opencv(avi, src, fps, name)
        check_ffprobe(avi, fraction, name)
    if failures:
        print("%d check(s) failed; files kept in %s" % (len(failures), folder))
        return 1
    shutil.rmtree(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
