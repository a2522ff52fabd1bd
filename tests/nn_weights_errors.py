"""nn_weights_errors.py - the engine refuses bad weights files with a clear
error naming the file and the tensor: truncated, mis-shaped, missing, extra,
wrong dtype, overlapping, corrupted (content hash), not safetensors at all,
and a fuzzed header never crashes it.  The converter refuses checkpoints that
do not match the architecture."""
import json
import os
import random
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch

import nn_common as nc

sys.path.insert(0, os.path.join(nc.TOP_SRC, "tools"))
import nn_safetensors  # noqa: E402

failures = []


def expect(label, r, *needles):
    """r: a finished driver run that must fail (exit 1) with all needles in
    its message."""
    msg = r.stderr.strip()
    ok = r.returncode == 1 and all(n in msg for n in needles) and "Sanitizer" not in msg \
        and "runtime error" not in msg
    print("%s: %s -> %s" % ("ok" if ok else "FAIL", label, msg or "(exit %d)" % r.returncode))
    if not ok:
        failures.append(label)


def write(path, tensors, meta, fix_hash=True):
    meta = dict(meta)
    if fix_hash:
        meta["content_sha256"] = nn_safetensors.data_sha256(tensors)
    nn_safetensors.save(path, tensors, meta)


def raw_file(path, header, data):
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


def main():
    torch.manual_seed(5)
    with tempfile.TemporaryDirectory(prefix="nn-errors-") as tmp:
        good = os.path.join(tmp, "good.safetensors")
        pt = os.path.join(tmp, "ef.pt")
        model = nc.r2plus1d(8).eval()
        nc.save_upstream(model, pt)
        nc.convert(pt, good, "--origin", "error test")
        r = nc.run_driver(["info", good])
        print(r.stdout)
        assert "arch=r2plus1d_18" in r.stdout and "hash_verified=1" in r.stdout
        assert "mean=32.49,32.63,32.93" in r.stdout and "clip_frames=32" in r.stdout
        tensors, meta = nn_safetensors.load(good)
        tensors = {k: np.array(v) for k, v in tensors.items()}
        p = os.path.join(tmp, "bad.safetensors")

        blob = open(good, "rb").read()
        with open(p, "wb") as f:
            f.write(blob[:-1000])
        # the first tensor (in name order) whose data is cut is named
        cut = len(blob) - 1000 - 8 - struct.unpack("<Q", blob[:8])[0]
        off = 0
        for name in sorted(tensors):
            off += tensors[name].nbytes
            if off > cut:
                break
        expect("truncated", nc.run_driver(["load", p], check=False), "truncated",
               "tensor '%s' runs past the end" % name, p)
        with open(p, "wb") as f:
            f.write(blob[:5])
        expect("truncated to 5 bytes", nc.run_driver(["load", p], check=False), "too short")
        with open(p, "wb") as f:
            f.write(blob[:300])
        expect("truncated inside the header", nc.run_driver(["load", p], check=False),
               "header length")

        t = dict(tensors)
        w = t["layer2.0.conv1.0.0.weight"]
        t["layer2.0.conv1.0.0.weight"] = np.zeros((w.shape[0], w.shape[1] + 1) + w.shape[2:],
                                                 np.float32)
        write(p, t, meta)
        expect("mis-shaped", nc.run_driver(["load", p], check=False),
               "layer2.0.conv1.0.0.weight", "has shape", "expected")

        t = dict(tensors)
        t["stem.1.running_var"] = t["stem.1.running_var"][:-1].copy()
        write(p, t, meta)
        expect("mis-shaped BatchNorm", nc.run_driver(["load", p], check=False),
               "stem.1.running_var", "has shape")

        t = dict(tensors)
        del t["layer3.1.conv2.1.running_mean"]
        write(p, t, meta)
        expect("missing", nc.run_driver(["load", p], check=False),
               "missing tensor 'layer3.1.conv2.1.running_mean'")

        t = dict(tensors)
        t["aux.weight"] = np.ones(3, np.float32)
        write(p, t, meta)
        expect("extra", nc.run_driver(["load", p], check=False), "unexpected tensor 'aux.weight'")

        t = dict(tensors)
        t["fc.weight"] = t["fc.weight"] + 1.0
        write(p, t, meta, fix_hash=False)
        expect("corrupted data", nc.run_driver(["load", p], check=False),
               "content hash mismatch")

        m2 = dict(meta)
        m2["architecture"] = "resnet152"
        write(p, tensors, m2)
        expect("unknown architecture", nc.run_driver(["load", p], check=False), "resnet152")

        m2 = dict(meta)
        m2["architecture"] = "deeplabv3_resnet50"
        write(p, tensors, m2)
        expect("wrong architecture", nc.run_driver(["load", p], check=False),
               "missing tensor 'backbone.conv1.weight'")

        m2 = dict(meta)
        m2["input_std"] = "1,0,1"
        write(p, tensors, m2)
        expect("bad std", nc.run_driver(["load", p], check=False), "input_std")

        raw_file(p, {"__metadata__": meta, "a": {"dtype": "F16", "shape": [2],
                                                  "data_offsets": [0, 4]}}, b"\0" * 4)
        expect("F16", nc.run_driver(["load", p], check=False), "'a'", "F16")
        raw_file(p, {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                     "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8)
        expect("overlap", nc.run_driver(["load", p], check=False), "overlaps")
        raw_file(p, {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8)
        expect("size/shape mismatch", nc.run_driver(["load", p], check=False), "'a'", "8 data bytes")
        expect("a .pt file", nc.run_driver(["load", pt], check=False), "header length")
        expect("no file", nc.run_driver(["load", os.path.join(tmp, "nope")], check=False), "nope")

        inp = os.path.join(tmp, "frame.raw")
        np.zeros(3 * 112 * 112, np.float32).tofile(inp)
        r = nc.run_driver(["seg", good, inp, p, 1, 112, 112], check=False)
        expect("EF weights asked to segment", r, "cannot segment")

        # Fuzz the header: every mutation must be refused or accepted, never
        # crash (a signal, or a sanitizer report, is a non-1 exit).
        n = struct.unpack("<Q", blob[:8])[0]
        rnd = random.Random(9)
        crashes = 0
        for i in range(60):
            b = bytearray(blob)
            for _ in range(rnd.randint(1, 4)):
                b[8 + rnd.randrange(n)] = rnd.choice(b'{}[]",:0123456789-eE.\\u ' + bytes([0, 255]))
            with open(p, "wb") as f:
                f.write(bytes(b))
            r = nc.run_driver(["load", p], check=False)
            if r.returncode not in (0, 1) or "Sanitizer" in r.stderr or \
                    "runtime error" in r.stderr:
                crashes += 1
                print("FAIL: fuzz %d exit %d: %s" % (i, r.returncode, r.stderr[-500:]))
        if crashes:
            failures.append("fuzz")
        else:
            print("ok: 60 fuzzed headers refused or read without a crash")

        # The converter refuses what does not match the architecture.
        sd = {k: v for k, v in model.state_dict().items()}
        del sd["layer4.1.conv2.1.weight"]
        torch.save(sd, pt)
        r = subprocess.run([nc.PYTHON, nc.CONVERT, pt, p], capture_output=True, text=True)
        ok = r.returncode == 1 and "layer4.1.conv2.1.weight" in r.stderr
        print("%s: converter, missing key -> %s" % ("ok" if ok else "FAIL", r.stderr.strip()))
        if not ok:
            failures.append("converter missing")
        r = subprocess.run([nc.PYTHON, nc.CONVERT, pt, p, "--arch", "deeplabv3_resnet50"],
                           capture_output=True, text=True)
        ok = r.returncode == 1 and "does not match" in r.stderr
        print("%s: converter, wrong --arch -> %s" % ("ok" if ok else "FAIL", r.stderr.strip()[:200]))
        if not ok:
            failures.append("converter arch")

    sys.exit(1 if failures else 0)


main()
