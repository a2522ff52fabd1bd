#!/usr/bin/python3
"""nn-bench.py - echonetd's inference engine against PyTorch on this machine.

Builds full-size DeepLabV3-ResNet50 and R(2+1)D-18 with random weights (speed
does not depend on the values), saves them as upstream does, converts them
with tools/convert-weights, then times segmentation (ms/frame, frames batched)
and EF (ms/clip, 3x32x112x112) in echonetd (bench/nn-bench) and in
torchvision with the same thread count, each in fp32 and in bf16 (echonetd's
bf16 path; PyTorch's bf16 autocast), alternating all of them round by round
so background load hits them alike.  Prints best-of-rounds times, ratios
(echonetd / PyTorch in the same precision, <= 1.0 means echonetd is at
least as fast) and peak RSS.  bf16 rows are left out when the CPU has no
bf16 kernel for echonetd.

  make bench/nn-bench && /usr/bin/python3 ../bench/nn-bench.py --threads 2

Run from the build directory (or pass --builddir).  Not a test.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time


def torch_worker(task, pt, n, threads, batch, reps, bf16):
    import contextlib
    import torch
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    import nn_common as nc
    torch.set_num_threads(threads)
    model = nc.deeplab() if task == "seg" else nc.r2plus1d()
    sd = torch.load(pt, map_location="cpu")["state_dict"]
    model.load_state_dict({k[len("module."):]: v for k, v in sd.items()})
    model.eval()
    g = torch.Generator().manual_seed(0)
    if task == "seg":
        x = torch.randn(n, 3, 112, 112, generator=g)
    else:
        x = torch.randn(n, 1, 3, 32, 112, 112, generator=g)
    best = total = 0.0
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with torch.no_grad(), amp:
        for r in range(-1, reps):
            t = time.perf_counter()
            if task == "seg":
                for i in range(0, n, batch):
                    model(x[i:i + batch])["out"]
            else:
                for i in range(n):
                    model(x[i])
            dt = (time.perf_counter() - t) / n
            if r >= 0:
                total += dt
                best = dt if r == 0 else min(best, dt)
    print(json.dumps({"engine": "pytorch", "task": task, "threads": torch.get_num_threads(),
                      "ms_best": best * 1e3, "ms_mean": total / reps * 1e3,
                      "peak_rss_mb": vm_hwm_mb(), "precision": "bf16" if bf16 else "fp32"}))


def vm_hwm_mb():
    """Peak RSS of this process (VmHWM; ru_maxrss would include the parent's
    pages inherited across fork/exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_json(cmd, env=None):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit("%s failed: %s" % (cmd[0], r.stderr))
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--frames", type=int, default=32, help="frames per segmentation run")
    ap.add_argument("--batch", type=int, default=8, help="segmentation batch (both engines)")
    ap.add_argument("--clips", type=int, default=1, help="clips per EF run")
    ap.add_argument("--reps", type=int, default=2, help="timed repetitions per run")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds per engine")
    ap.add_argument("--builddir", default=os.getcwd())
    ap.add_argument("--worker", nargs=6, metavar=("TASK", "PT", "N", "BATCH", "REPS", "PREC"),
                    help=argparse.SUPPRESS)
    ap.add_argument("--fp32-only", action="store_true", help="leave bf16 out")
    a = ap.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    if a.worker:
        task, pt, n, batch, reps, prec = a.worker
        torch_worker(task, pt, int(n), a.threads, int(batch), int(reps), prec == "bf16")
        return

    bench = os.path.join(a.builddir, "bench", "nn-bench")
    if not os.access(bench, os.X_OK):
        sys.exit("%s not built: run `make bench/nn-bench` in the build directory" % bench)
    sys.path.insert(0, os.path.join(here, "..", "tests"))
    os.environ.setdefault("EN_TOP_SRCDIR", os.path.join(here, ".."))
    import torch
    import nn_common as nc

    results = {}
    bf16 = subprocess.run([bench, "seg", "/nonexistent", "1", "1", "1", "1"], capture_output=True,
                          text=True, env=dict(os.environ, EN_NN_PRECISION="bf16"))
    bf16 = "precision bf16 needs" not in bf16.stderr
    with tempfile.TemporaryDirectory(prefix="nn-bench-") as tmp:
        for task, build in (("seg", nc.deeplab), ("ef", nc.r2plus1d)):
            torch.manual_seed(1)
            pt, st = os.path.join(tmp, task + ".pt"), os.path.join(tmp, task + ".safetensors")
            nc.save_upstream(build().eval(), pt)
            nc.convert(pt, st, "--origin", "nn-bench random weights")
            n = a.frames if task == "seg" else a.clips
            c_cmd = [bench, task, st, str(n), str(a.threads)] + (
                [str(a.batch)] if task == "seg" else []) + [str(a.reps)]

            def t_cmd(prec):
                return [sys.executable, os.path.abspath(__file__), "--threads", str(a.threads),
                        "--worker", task, pt, str(n), str(a.batch), str(a.reps), prec]

            def c_env(prec, drop_coretype=False):
                env = {k: v for k, v in os.environ.items()
                       if not (drop_coretype and k == "OPENBLAS_CORETYPE")}
                env["EN_NN_PRECISION"] = prec
                return env
            runs = [("echonetd fp32", c_cmd, c_env("fp32")), ("pytorch fp32", t_cmd("fp32"), None)]
            if os.environ.get("OPENBLAS_CORETYPE"):
                # the environment pins OpenBLAS's kernels: also measure what
                # its own CPU detection would pick
                runs.insert(1, ("echonetd fp32 (OpenBLAS auto)", c_cmd, c_env("fp32", True)))
            if not a.fp32_only and bf16:
                runs += [("echonetd bf16", c_cmd, c_env("bf16")),
                         ("pytorch bf16", t_cmd("bf16"), None)]
            best = {}
            for _ in range(a.rounds):
                for eng, cmd, env in runs:
                    r = run_json(cmd, env)
                    if eng not in best or r["ms_best"] < best[eng]["ms_best"]:
                        best[eng] = r
            results[task] = best

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print("machine: %s, %d online cores, %s; threads %d; torch %s; OPENBLAS_CORETYPE %s; "
          "%d rounds, best of each" % (
              cpu, os.cpu_count(), platform.machine(), a.threads, torch.__version__,
              os.environ.get("OPENBLAS_CORETYPE", "unset"), a.rounds))
    print("| task | engine | precision (kernels) | time | PyTorch, same precision | ratio | "
          "peak RSS | PyTorch peak RSS |")
    print("|---|---|---|---|---|---|---|---|")
    for task, unit in (("seg", "ms/frame"), ("ef", "ms/clip")):
        for eng, e in results[task].items():
            if not eng.startswith("echonetd"):
                continue
            prec = e.get("precision", "fp32")
            p = results[task]["pytorch " + prec]
            if prec == "fp32":
                kern = e.get("fp32_products", "?")
                if kern == "openblas":
                    kern = "OpenBLAS " + e.get("blas_core", "?")
            else:
                kern = e.get("kernel", "?")
            print("| %s (%s) | %s | %s (%s) | %.1f | %.1f | %.2f | %.0f MB | %.0f MB |" % (
                "segmentation, batch %d" % a.batch if task == "seg" else "EF, 3x32x112x112",
                unit, eng, prec, kern, e["ms_best"], p["ms_best"], e["ms_best"] / p["ms_best"],
                e["peak_rss_mb"], p["peak_rss_mb"]))


if __name__ == "__main__":
    main()
