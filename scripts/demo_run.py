"""The main job on sample data, as an operator would run it: simulated echo
studies (tools/echosim.py, known truth) are delivered into echonetd's inbox
by rename, echonetd processes them on the bundled default models, and the
results are printed from the database beside the simulator's truth.  One
delivery is not DICOM at all, to show a failure with its reason.  Used by
demo.sh; exits non-zero if echonetd does not start or a good study fails.

    /usr/bin/python3 scripts/demo_run.py TOP OUT [--studies N]
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time


def sh(cmd, **kw):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("top")
    ap.add_argument("out")
    ap.add_argument("--studies", type=int, default=6)
    a = ap.parse_args()
    top, out = os.path.abspath(a.top), os.path.abspath(a.out)
    ctl, daemon = os.path.join(top, "build", "echonetctl"), os.path.join(top, "build", "echonetd")
    site, studies, spool = (os.path.join(out, d) for d in ("site", "studies", "spool"))
    for d in (studies, spool, os.path.join(out, "output")):
        shutil.rmtree(d, ignore_errors=True)
    for d in ("inbox", "work", "archive", "failed", "staging"):
        os.makedirs(os.path.join(spool, d))
    os.makedirs(os.path.join(out, "output"))
    os.makedirs(site, exist_ok=True)
    os.chmod(site, 0o700)
    conf = os.path.join(site, "echonetd.conf")
    db = os.path.join(out, "results.db")
    if os.path.exists(db):
        os.unlink(db)
    with open(conf, "w") as f:
        f.write(f"""# Written by demo.sh: everything under {out}.
# [models] is not set: the bundled phantom-trained default models are used.
[paths]
output_dir = {out}/output
database = {db}
[deid]
secret_file = {site}/site-secret
[report]
overlay_video = yes
[daemon]
inbox = {spool}/inbox
work = {spool}/work
archive = {spool}/archive
failed = {spool}/failed
settle_ms = 500
rescan_ms = 1000
min_free_mb = 64
# A study's result once no file of it arrived for this long (the default,
# 300 s, waits for the rest of a study a machine is still sending).
study_quiet_s = 2
""")

    print(f"simulating {a.studies} apical-4-chamber studies (tools/echosim.py) in {studies} ...",
          flush=True)
    # As a machine that names its views writes them (docs/analysis.md: a
    # clip the DICOM calls A4C is judged on its LV, not on its RV).
    r = sh(["/usr/bin/python3", os.path.join(top, "tools", "echosim.py"), "dicoms", "--out", studies,
            "--count", a.studies, "--seed", 9000, "--held-out", "--view-codes", "yes"])
    if r.returncode != 0:
        sys.exit("demo: the simulator failed: " + r.stderr)
    truth = json.load(open(os.path.join(studies, "truth.json")))

    log_path = os.path.join(out, "echonetd.log")
    print(f"starting echonetd (log: {log_path}) ...", flush=True)
    log = open(log_path, "wb")
    proc = subprocess.Popen([daemon, "-c", conf, "-v"], stdout=subprocess.DEVNULL, stderr=log)
    t0 = time.time()
    while b"started:" not in open(log_path, "rb").read():
        if proc.poll() is not None or time.time() - t0 > 120:
            sys.exit("demo: echonetd did not start:\n" + open(log_path).read())
        time.sleep(0.1)
    for line in open(log_path).read().splitlines():
        if "phantom" in line or "started:" in line:
            print("  " + line)

    # Deliver as the operations guide says: write elsewhere, rename in.
    deliveries = [t["file"] for t in truth]
    for name in deliveries:
        staged = os.path.join(spool, "staging", name)
        shutil.copyfile(os.path.join(studies, name), staged)
        os.rename(staged, os.path.join(spool, "inbox", name))
    with open(os.path.join(spool, "staging", "notes.dcm"), "w") as f:
        f.write("not an echo: a text file delivered by mistake\n")
    os.rename(os.path.join(spool, "staging", "notes.dcm"), os.path.join(spool, "inbox", "notes.dcm"))
    total = len(deliveries) + 1
    print(f"delivered {total} files into the inbox; processing ...", flush=True)

    def finished():
        ls = lambda d: [n for n in os.listdir(os.path.join(spool, d)) if n.endswith(".dcm")]
        return len(ls("archive")) + len(ls("failed")), len(ls("failed"))

    last = -1
    while True:
        n, nf = finished()
        if n != last:
            print(f"  {n}/{total} finished ({nf} failed)", flush=True)
            last = n
        if n >= total:
            break
        if proc.poll() is not None:
            sys.exit("demo: echonetd exited early:\n" + open(log_path).read()[-2000:])
        if time.time() - t0 > 1800:
            sys.exit("demo: timed out waiting for echonetd")
        time.sleep(0.5)
    # Then each study's result over its clips (docs/analysis.md).
    while time.time() - t0 < 1800:
        r = sh([ctl, "-c", conf, "list", "--json"])
        rows = json.loads(r.stdout) if r.returncode == 0 else []
        if rows and all(row.get("status") == "done" for row in rows):
            break
        if proc.poll() is not None:
            sys.exit("demo: echonetd exited early:\n" + open(log_path).read()[-2000:])
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)

    # Which pseudonym is which simulated file: convert gives it (it is a
    # keyed hash of the study's identity under this site's secret).
    base = [ctl, "-c", conf]
    pseudo = {}
    tmp_avi = os.path.join(out, "probe.avi")
    for t in truth:
        r = sh(base + ["convert", os.path.join(studies, t["file"]), tmp_avi, "--json"])
        if r.returncode == 0:
            pseudo[json.loads(r.stdout)["pseudonym"]] = t
    if os.path.exists(tmp_avi):
        os.unlink(tmp_avi)

    print("\nresults from the database (echonetctl list):")
    r = sh(base + ["list"])
    print(r.stdout.rstrip())
    r = sh(base + ["list", "--json"])
    rows = json.loads(r.stdout) if r.returncode == 0 else []
    print(f"\n{'pseudonym':<17} {'EF echonetd':>11} {'EF truth':>9} {'beats':>5} {'truth':>5}  class")
    bad = 0
    for row in rows:
        t = pseudo.get(row.get("pseudonym"))
        ef = row.get("ef_mean")
        print(f"{row.get('pseudonym', '?'):<17} {ef if ef is not None else float('nan'):>11.1f} "
              f"{t['ef'] if t else float('nan'):>9.1f} {row.get('beats', 0) or 0:>5} "
              f"{len(t['beats']) if t else 0:>5}  {row.get('ef_class') or '-'}")
        bad += row.get("status") != "done"
    reasons = [n for n in os.listdir(os.path.join(spool, "failed")) if n.endswith(".reason")]
    for n in reasons:
        err = [l for l in open(os.path.join(spool, "failed", n)).read().splitlines() if l.startswith("error")]
        print(f"\nfailed as expected: {n}: {err[0] if err else '?'}")
    print(f"\nreports (PDF, PNG, overlay video) in {out}/output; originals archived in "
          f"{spool}/archive; database {db}")
    print("These numbers come from the phantom-trained default models: not for clinical use.")
    done = sum(1 for row in rows if row.get("status") == "done")
    return 0 if done == len(deliveries) and len(reasons) == 1 and not bad else 1


if __name__ == "__main__":
    sys.exit(main())
