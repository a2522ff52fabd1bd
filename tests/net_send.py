"""echonetd-send with a real PACS: Orthanc (on loopback ports, its own
storage) holds the original study; `echonetctl process` analyses it with the
default models; echonetd-send puts the SR and the PDF into the ORIGINAL
study (same Study Instance UID, patient ID and accession number), with the
study's EF and every beat's (read back from Orthanc with dsrdump), once.

Then the durable outbox: a version is never sent twice; the PACS down while
sending (retries with back-off) and up again: delivered once; a SIGKILL
between the PACS's confirmation and the "sent" commit: sent again with the
same UIDs, so Orthanc still holds one of each; the PACS down past
[send] give_up_after_s: failed in `echonetctl status`, and
`echonetctl send` queues it again; a version whose page the daemon has not
drawn yet waits for it (an older page is never sent).  Sending is off by
default and refused
without a key store; no identifier reaches the sender's log, the results
database or the outbox.  Also the unit: systemd-analyze verify and the
hardening of echonetd.service.  Exits 77 (skipped) without Orthanc."""
import json
import os
import re
import signal
import sqlite3
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error

import pydicom

import enlib
import netlib

if not os.path.exists(netlib.ORTHANC):
    print("skip: Orthanc not installed (Debian package orthanc)")
    sys.exit(77)

TOP = enlib.TOP_SRCDIR
SEND = os.environ.get("EN_ECHONETD_SEND", os.path.join(enlib.TOP_BUILDDIR, "echonetd-send"))
rep = enlib.Report("net_send")
work = tempfile.TemporaryDirectory(prefix="en-net-send-")
W = work.name
pacs = None
procs = []


def conf(path, send=None, keystore=True):
    """echonetd.conf of the site; send: the [send] rows (None: none)."""
    with open(path, "w") as f:
        f.write("[paths]\noutput_dir = %s/out\ndatabase = %s/results.db\n" % (W, W))
        f.write("[deid]\nsecret_file = %s/secret\n" % W)
        if keystore:
            f.write("keystore_file = %s/keys.db\n" % W)
        f.write("[models]\nsegmentation = %s/models/phantom-seg.safetensors\n"
                "ef = %s/models/phantom-ef.safetensors\n" % (TOP, TOP))
        if send is not None:
            f.write("[send]\n")
            for k, v in send.items():
                f.write("%s = %s\n" % (k, v))


def ctl(cfg, *args, timeout=600):
    r = subprocess.run([enlib.ECHONETCTL, "-c", cfg] + list(args), capture_output=True,
                       text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


logs = []


def sender(cfg, *extra, wait=True):
    """echonetd-send as a process, stderr to a log of its own."""
    env = dict(os.environ)
    env.pop("JOURNAL_STREAM", None)
    env.pop("NOTIFY_SOCKET", None)
    log = os.path.join(W, "send%d.log" % len(logs))
    logs.append(log)
    p = subprocess.Popen([SEND, "-c", cfg, "-v"] + list(extra), stdout=subprocess.DEVNULL,
                         stderr=open(log, "wb"), env=env)
    procs.append(p)
    if wait:
        p.wait(300)
    return p, log


def text(log):
    return open(log, encoding="utf-8", errors="replace").read()


def wait_for(fn, timeout):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if fn():
            return True
        time.sleep(0.1)
    return False


def outbox(path):
    db = sqlite3.connect(path)
    try:
        return {(p, v): (s, a) for p, v, s, a in
                db.execute("SELECT pseudonym, version, state, attempts FROM outbox")}
    finally:
        db.close()


def pacs_up():
    """Orthanc again on the same ports and storage (netlib starts it once)."""
    pacs.proc = subprocess.Popen([netlib.ORTHANC, pacs.conf], stdout=subprocess.DEVNULL,
                                 stderr=open(pacs.logfile, "ab"))
    ok = wait_for(lambda: _alive(), 60)
    rep.check(ok, "Orthanc did not come back")


def _alive():
    try:
        pacs.get("/system")
        return True
    except (urllib.error.URLError, ConnectionError, OSError):
        return False


def study_instances(study_uid):
    """Orthanc's instances of the study: {SOPInstanceUID: (modality, series, id)}."""
    ids = pacs.post("/tools/find", {"Level": "Instance", "Query": {"StudyInstanceUID": study_uid}})
    out = {}
    for i in ids:
        t = pacs.get("/instances/%s/simplified-tags" % i)
        out[t["SOPInstanceUID"]] = (t.get("Modality"), t["SeriesInstanceUID"], i)
    return out


def sr_values(path):
    """(study EF, [beat EFs]) from dsrdump's text; the first LVEF NUM is the
    study's, the others carry a Beat Number."""
    r = subprocess.run(["dsrdump", "-v", path], capture_output=True, text=True)
    rep.check(r.returncode == 0 and "W:" not in r.stderr and "E:" not in r.stderr,
              "dsrdump complains: %s" % r.stderr[-500:])
    vals = [float(v) for v in re.findall(
        r'NUM:\(,,"Left Ventricular Ejection Fraction by US"\)="([0-9.]+)"', r.stdout)]
    return (vals[0], vals[1:]) if vals else (None, []), r.stdout


try:
    cfg = os.path.join(W, "echonetd.conf")
    sim = os.path.join(W, "sim")
    r = subprocess.run([sys.executable, os.path.join(TOP, "tools", "echosim.py"), "dicoms",
                        "--out", sim, "--count", "1", "--seed", "61000", "--max-seconds", "3"],
                       capture_output=True, text=True)
    rep.check(r.returncode == 0, "echosim failed: %s" % r.stderr[-500:])
    src = os.path.join(sim, [n for n in os.listdir(sim) if n.endswith(".dcm")][0])
    orig = pydicom.dcmread(src, stop_before_pixels=True)
    secrets = netlib.identifiers(src)

    # Off by default: no outbox, nothing sent, echonetctl send refuses.
    conf(cfg)
    p, log = sender(cfg)
    rep.check(p.returncode == 0 and "sending is off" in text(log),
              "sender without [send] enabled: rc %s: %s" % (p.returncode, text(log)))
    rep.check(not os.path.exists(os.path.join(W, "outbox")), "an outbox was made while off")

    pacs = netlib.Orthanc(W, aet="PACS")
    pacs.upload(src)
    ob = os.path.join(W, "outbox", "outbox.db")
    send = {"enabled": "yes", "ae_title": "ECHONETD", "peer_ae_title": "PACS",
            "peer_host": "127.0.0.1", "peer_port": pacs.dicom, "outbox": ob,
            "backoff_min_s": 1, "backoff_max_s": 2, "give_up_after_s": 3600, "poll_s": 1,
            "timeout_s": 5}

    # Sending needs the key store.
    conf(cfg, send, keystore=False)
    p, log = sender(cfg)
    rep.check(p.returncode == 3 and "keystore_file" in text(log),
              "sender without key store: rc %s: %s" % (p.returncode, text(log)))

    conf(cfg, send)
    rc, out, err = ctl(cfg, "send", "0123456789abcdef")
    rep.check(rc != 0, "echonetctl send of an unknown study succeeded")
    # The outbox starts before the first result (results older than the
    # outbox are sent by hand only).
    p, log = sender(cfg, "--once")
    rep.check(p.returncode == 0 and os.path.exists(ob), "first sender run: %s" % text(log))
    rep.check(os.stat(ob).st_mode & 0o777 == 0o600, "outbox mode %o" % (os.stat(ob).st_mode & 0o777))

    # --- one study processed, sent, filed in the original study ---------------------
    rc, out, err = ctl(cfg, "process", src)
    rep.check(rc == 0, "process: %s" % err[-800:])
    m = re.search(r"study ([0-9a-f]+)\s+result v(\d+)", out + err)
    pseudo = m.group(1) if m else ""
    rc, js, err = ctl(cfg, "show", pseudo, "--json")
    study = json.loads(js)["studies"][0]
    ef = study["result"]["ef_mean"]
    beats = [b["ef"] for c in study["clips"] for b in c["beats"]]
    rep.check(len(beats) >= 2, "the phantom models should find beats: %s" % beats)

    p, log = sender(cfg, "--once")
    rep.check(p.returncode == 0 and "result version 1 sent" in text(log),
              "send v1: %s" % text(log))
    inst = study_instances(str(orig.StudyInstanceUID))
    mods = sorted(v[0] for v in inst.values())
    rep.check(mods == ["DOC", "SR", "US"], "Orthanc's study holds %s" % mods)
    sr = [i for u, i in inst.items() if i[0] == "SR"]
    pdf = [i for u, i in inst.items() if i[0] == "DOC"]
    if sr and pdf:
        path = os.path.join(W, "sr1.dcm")
        with open(path, "wb") as f:
            f.write(pacs.get("/instances/%s/file" % sr[0][2]))
        (sef, sbeats), dump = sr_values(path)
        rep.check(sef is not None and abs(sef - ef) < 0.051,
                  "SR EF %s, the study's %.3f" % (sef, ef))
        rep.check(len(sbeats) == len(beats) and
                  all(abs(a - b) < 0.051 for a, b in zip(sbeats, beats)),
                  "SR beats %s, the study's %s" % (sbeats, beats))
        ds = pydicom.dcmread(path)
        for kw in ("StudyInstanceUID", "PatientID", "PatientName", "AccessionNumber"):
            rep.check(str(getattr(ds, kw)) == str(getattr(orig, kw)),
                      "SR %s differs from the original study's" % kw)
        rep.check(ds.VerificationFlag == "UNVERIFIED", "VerificationFlag %s" % ds.VerificationFlag)
        rep.check("NOT FOR DIAGNOSIS" in dump.upper(), "phantom models: no not-for-diagnosis note")
        pdfpath = os.path.join(W, "pdf1.dcm")
        with open(pdfpath, "wb") as f:
            f.write(pacs.get("/instances/%s/file" % pdf[0][2]))
        dp = pydicom.dcmread(pdfpath)
        page = open(os.path.join(W, "out", pseudo + ".pdf"), "rb").read()
        rep.check(bytes(dp.EncapsulatedDocument).rstrip(b"\0") == page.rstrip(b"\0") and
                  str(dp.StudyInstanceUID) == str(orig.StudyInstanceUID),
                  "the PDF in Orthanc is not the report of the original study")
    rep.check(outbox(ob).get((pseudo, 1)) == ("sent", 1), "outbox: %s" % outbox(ob))

    # Never twice: another round sends nothing.
    p, log = sender(cfg, "--once")
    rep.check(" sent to " not in text(log) and len(study_instances(str(orig.StudyInstanceUID))) == 3,
              "a second round sent again: %s" % text(log))

    # --- the PACS down while sending, then up: delivered once --------------------
    pacs.close()
    rc, out, err = ctl(cfg, "process", src)
    rep.check(rc == 0 and "result v2" in out + err, "process v2: %s" % (out + err)[-300:])
    p, log = sender(cfg, wait=False)
    rep.check(wait_for(lambda: "attempt 2 failed" in text(log), 60),
              "no second failed attempt with the PACS down: %s" % text(log))
    st = outbox(ob).get((pseudo, 2))
    rep.check(st is not None and st[0] == "pending" and st[1] >= 2, "outbox while down: %s" % (st,))
    pacs_up()
    rep.check(wait_for(lambda: "result version 2 sent" in text(log), 60),
              "not sent once the PACS was up: %s" % text(log))
    p.send_signal(signal.SIGTERM)
    rep.check(p.wait(60) == 0, "sender exit after SIGTERM")
    inst = study_instances(str(orig.StudyInstanceUID))
    rep.check(sorted(v[0] for v in inst.values()) == ["DOC", "DOC", "SR", "SR", "US"],
              "after v2: %s" % sorted(v[0] for v in inst.values()))
    rep.check(text(log).count(" sent to ") == 1, "v2 sent more than once: %s" % text(log))
    rep.check(outbox(ob).get((pseudo, 2), ("",))[0] == "sent", "outbox: %s" % outbox(ob))

    # --- SIGKILL between the PACS's confirmation and the "sent" commit -----------
    rc, out, err = ctl(cfg, "process", src)
    rep.check(rc == 0 and "result v3" in out + err, "process v3: %s" % (out + err)[-300:])
    p, log = sender(cfg, "--pause-after-store", "20000", wait=False)
    ok = wait_for(lambda: len(study_instances(str(orig.StudyInstanceUID))) == 7, 60)
    rep.check(ok, "v3 did not reach Orthanc: %s" % text(log))
    p.send_signal(signal.SIGKILL)
    p.wait(30)
    rep.check(outbox(ob).get((pseudo, 3), ("",))[0] == "sending",
              "outbox after SIGKILL: %s" % outbox(ob))
    before = study_instances(str(orig.StudyInstanceUID))
    p, log = sender(cfg, "--once")
    rep.check("result version 3 sent" in text(log), "v3 not sent again after the kill: %s" % text(log))
    after = study_instances(str(orig.StudyInstanceUID))
    rep.check(sorted(after) == sorted(before) and len(after) == 7,
              "Orthanc after the resend: %d instances, %d before (same UIDs expected)" %
              (len(after), len(before)))
    rep.check(outbox(ob).get((pseudo, 3)) == ("sent", 2), "outbox v3: %s" % outbox(ob))
    stats = pacs.get("/statistics")
    rep.check(stats["CountInstances"] == 7, "Orthanc holds %d instances" % stats["CountInstances"])

    # --- gives up after give_up_after_s; status shows it; send by hand -----------
    pacs.close()
    send["give_up_after_s"] = 3
    conf(cfg, send)
    rc, out, err = ctl(cfg, "process", src)
    rep.check(rc == 0 and "result v4" in out + err, "process v4: %s" % (out + err)[-300:])
    p, log = sender(cfg, wait=False)
    rep.check(wait_for(lambda: "give_up_after_s" in text(log), 60),
              "did not give up: %s" % text(log))
    p.send_signal(signal.SIGTERM)
    p.wait(60)
    rep.check(outbox(ob).get((pseudo, 4), ("",))[0] == "failed", "outbox v4: %s" % outbox(ob))
    rc, out, err = ctl(cfg, "status")
    rep.check(re.search(r"outbox .* 1 failed", out) and (pseudo + " v4") in out,
              "echonetctl status: %s %s" % (out, err))
    rc, out, err = ctl(cfg, "status", "--json")
    j = json.loads(out) if rc == 0 else {}
    fs = j.get("outbox", {}).get("failed_sends", [])
    rep.check(j.get("outbox", {}).get("failed") == 1 and fs and fs[0]["pseudonym"] == pseudo and
              fs[0]["version"] == 4, "status --json outbox: %s" % j.get("outbox"))
    send["give_up_after_s"] = 3600
    conf(cfg, send)
    rc, out, err = ctl(cfg, "send", pseudo)
    rep.check(rc == 0 and "version 4 queued" in out, "echonetctl send: %s %s" % (out, err))
    rep.check(outbox(ob).get((pseudo, 4)) == ("pending", 0), "outbox after send: %s" % outbox(ob))
    pacs_up()
    p, log = sender(cfg, "--once")
    rep.check("result version 4 sent" in text(log), "v4 after echonetctl send: %s" % text(log))
    rep.check(len(study_instances(str(orig.StudyInstanceUID))) == 9, "v4 not in Orthanc once")

    # --- the page of a new version not drawn yet: the older page is not sent
    # under the new version's UIDs; the version waits for its own page -------------
    rc, out, err = ctl(cfg, "process", src)
    rep.check(rc == 0 and "result v5" in out + err, "process v5: %s" % (out + err)[-300:])
    page = os.path.join(W, "out", pseudo + ".pdf")
    old = time.time() - 3600
    os.utime(page, (old, old))
    p, log = sender(cfg, "--once")
    rep.check("not drawn yet" in text(log) and " sent to " not in text(log),
              "v5 with an older page: %s" % text(log))
    rep.check(outbox(ob).get((pseudo, 5), ("",))[0] == "pending", "outbox v5: %s" % outbox(ob))
    rep.check(len(study_instances(str(orig.StudyInstanceUID))) == 9, "v5 sent with an older page")
    os.utime(page, None)
    time.sleep(1.2)
    p, log = sender(cfg, "--once")
    rep.check("result version 5 sent" in text(log) and "SR and PDF" in text(log),
              "v5 once its page is drawn: %s" % text(log))
    rep.check(len(study_instances(str(orig.StudyInstanceUID))) == 11, "v5 not in Orthanc once")

    # --- nothing identifying in the logs, the results database or the outbox -----
    alltext = "".join(text(l) for l in logs)
    for v in secrets:
        rep.check(v not in alltext, "an identifier of the study is in the sender's log")
    for db in (os.path.join(W, "results.db"), ob):
        con = sqlite3.connect(db)
        dump = "\n".join(con.iterdump())
        con.close()
        rep.check(dump and not any(v in dump for v in secrets),
                  "an identifier of the study is in %s" % os.path.basename(db))
    rep.check(not netlib.sanitizer_errors(alltext), "sanitizer: %s" % netlib.sanitizer_errors(alltext))

    # --- the unit ------------------------------------------------------------------
    unit_path = os.path.join(TOP, "systemd", "echonetd-send.service")
    if shutil.which("systemd-analyze"):
        u = os.path.join(W, "echonetd-send.service")
        with open(u, "w") as f:
            f.write(open(unit_path).read().replace("/usr/bin/echonetd-send", SEND))
        r = subprocess.run(["systemd-analyze", "verify", "--man=no", u], capture_output=True,
                           text=True, env=dict(os.environ, SYSTEMD_LOG_LEVEL="notice"))
        mine = [l for l in r.stderr.splitlines() if "echonetd-send.service" in l]
        rep.check(r.returncode == 0 and not mine, "systemd-analyze verify: %s" % (mine or r.stderr[-800:]))

    def settings(path):
        out, section = {}, None
        for line in open(path):
            line = line.strip()
            if line.startswith("["):
                section = line
            elif section == "[Service]" and "=" in line and not line.startswith("#"):
                k, v = line.split("=", 1)
                out.setdefault(k, []).append(v)
        return out
    mine, daemon = settings(unit_path), settings(os.path.join(TOP, "systemd", "echonetd.service"))
    rep.check(mine.get("Type") == ["notify"] and "WatchdogSec" in mine and "ExecReload" in mine,
              "unit: Type=notify, a watchdog and a reload")
    rep.check(mine.get("ReadWritePaths") == ["/var/lib/echonetd/outbox"],
              "unit writes %s" % mine.get("ReadWritePaths"))
    for k, v in daemon.items():
        if k.startswith(("Protect", "Private", "Restrict", "NoNew", "Capability", "Ambient",
                         "SystemCall", "LockPersonality", "MemoryDeny", "RemoveIPC", "LimitCORE",
                         "UMask")) and k not in ("PrivateNetwork", "RestrictAddressFamilies"):
            rep.check(mine.get(k) == v, "%s: echonetd.service %s, echonetd-send.service %s" %
                      (k, v, mine.get(k)))
    rep.check("PrivateNetwork" not in mine, "the sender needs the network")
    tmpfiles = open(os.path.join(TOP, "systemd", "echonetd.tmpfiles")).read()
    rep.check("/var/lib/echonetd/outbox " in tmpfiles, "tmpfiles does not make the outbox folder")
finally:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    if pacs:
        pacs.close()
rep.finish()
