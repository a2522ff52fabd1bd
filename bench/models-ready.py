#!/usr/bin/python3
"""How long a study waits for its models in the daemon, with the model host
([daemon] warm_models = yes, the default) and without it (each study's
process loads its own), in the same run, on full-size networks.

    bench/models-ready.py [--studies N] [--width-div 1] [--threads 2]

Run from a build folder (or set EN_TOP_BUILDDIR).  Starts echonetd twice on
a temporary spool, delivers N short studies one after the other to each and
reads the daemon's "models ready after N ms" lines: the time from handing
the study to a process (fork by the host, or exec) until its pipeline has
both models and the database open.  Also prints the host's own load time
and each study's total time.  A benchmark, not a test: nothing is judged.
"""
import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import daemonlib as dl  # noqa: E402
import enlib  # noqa: E402
import testmodels  # noqa: E402


def host_rss_mb(sp):
    """VmRSS of the daemon's child named echonetd-host, or None."""
    for p in os.listdir("/proc"):
        try:
            if not p.isdigit() or open("/proc/%s/comm" % p).read().strip() != "echonetd-host":
                continue
            st = open("/proc/%s/status" % p).read()
        except OSError:
            continue
        if re.search(r"PPid:\s+%d\n" % sp.proc.pid, st):
            return int(re.search(r"VmRSS:\s+(\d+)", st).group(1)) / 1024
    return None


def run(sp, warm, n, src, first):
    sp.write_conf(warm_models="yes" if warm else "no")
    sp.start()
    if warm and not sp.wait_log("model host ready", 300):
        sys.exit("model host not ready")
    for i in range(n):
        path = os.path.join(sp.dir, "s%d-%d.dcm" % (warm, i))
        dl.with_new_uids(src, path, "ready%d%d" % (warm, i))
        sp.deliver(path)
        if not sp.wait_settled(first + i + 1, 600):
            sys.exit("study %d not done: %s, daemon exit %s\n%s" % (i, sp.counts(), sp.proc.poll(), sp.log()[-3000:].decode()))
    rss = host_rss_mb(sp) if warm else None
    sp.stop()
    log = open(sp.logfile, "rb").read().decode(errors="replace")
    ready = [float(x) for x in re.findall(r"models ready after (\d+) ms", log)]
    total = [float(x) for x in re.findall(r"study done: .* in ([\d.]+) s", log)]
    host = re.findall(r"models loaded and prepared in (\d+) ms", log)
    return ready, total, host, rss


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--studies", type=int, default=5)
    ap.add_argument("--width-div", type=int, default=1, help="1: full-size networks")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    manifest = enlib.load_manifest()
    good = sorted([m for m in manifest if m["expect"] == "ok" and 12 <= m["frames"] <= 40],
                  key=lambda m: m["frames"])[0]
    src = os.path.join(enlib.TESTDATA, good["file"])
    t0 = time.monotonic()
    mdir = tempfile.mkdtemp(prefix="en-ready-models-")
    models = testmodels.build(mdir, a.width_div, "models-ready bench random weights")
    print("models (width / %d) built in %.0f s" % (a.width_div, time.monotonic() - t0))
    sp = dl.Spool(models=models, concurrency=1, study_timeout_s=3600)
    orig = sp.write_conf

    def write_conf(**over):
        # [nn] threads: the spool's default is 1; the bench's is 2.
        orig(**over)
        with open(sp.site.conf) as f:
            conf = f.read().replace("threads = 1", "threads = %d" % a.threads)
        with open(sp.site.conf, "w") as f:
            f.write(conf)
    sp.write_conf = write_conf
    results = {}
    for warm, first in ((False, 0), (True, a.studies)):
        results[warm] = run(sp, warm, a.studies, src, first)
    print("\n%-34s %12s %12s %12s" % ("", "ready median", "ready max", "study median"))
    for warm in (False, True):
        ready, total, host, rss = results[warm]
        name = "model host (warm_models = yes)" if warm else "own load (warm_models = no)"
        print("%-34s %9.0f ms %9.0f ms %10.2f s" % (name, statistics.median(ready), max(ready),
                                                   statistics.median(total)))
        if host:
            print("  the host loaded and prepared both models once, in %s ms; its RSS after "
                  "the studies: %.0f MB" % (host[-1], rss or 0))
    sp.close()
    shutil.rmtree(mdir, ignore_errors=True)


if __name__ == "__main__":
    main()
