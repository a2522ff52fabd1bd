"""Helpers for the DICOM network tests (tests/net_*.py): a throw-away site
with the receiver's folders and configuration, starting echonetd-recv as
a real process, DCMTK's command line tools as one peer and Orthanc (started
here on loopback ports with its own configuration and storage, never the
system service) as the other.

Every helper returns what a test needs to check (exit codes, log text,
files); the tests decide what is a failure."""
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import enlib

TOP_BUILDDIR = enlib.TOP_BUILDDIR
RECV = os.environ.get("EN_ECHONETD_RECV", os.path.join(TOP_BUILDDIR, "echonetd-recv"))
ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"


def free_port():
    """A TCP port nobody listens on now (the OS's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def identifiers(path):
    """Values of a DICOM file that must never reach a log: UIDs, names, IDs."""
    import pydicom
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    out = set()
    for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "PatientName",
               "PatientID", "AccessionNumber", "PatientBirthDate"):
        v = str(getattr(ds, kw, "") or "")
        if len(v) >= 4:
            out.add(v)
    return out


def sanitizer_errors(log):
    """Lines in which ASan, LSan or UBSan report a fault (the tests also run
    in the sanitizer build, where the receiver writes these to stderr)."""
    return [l for l in log.splitlines() if "Sanitizer" in l or "runtime error:" in l]


def sop_uid(path):
    import pydicom
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


class Receiver:
    """A site: spool folders, an echonetd.conf with [daemon] inbox and [recv]
    settings, and echonetd-recv run as a real process (stderr to a file)."""

    def __init__(self, allow="US1 ORTHANC", **recv):
        self.tmp = tempfile.TemporaryDirectory(prefix="en-net-")
        self.dir = self.tmp.name
        self.inbox = os.path.join(self.dir, "spool", "inbox")
        self.staging = os.path.join(self.dir, "spool", "incoming")
        os.makedirs(self.inbox)
        os.makedirs(self.staging)
        self.conf = os.path.join(self.dir, "echonetd.conf")
        self.port = free_port()
        self.opts = {"port": self.port, "allow": allow, "staging": self.staging,
                     "timeout_s": 5, "min_free_mb": 1, "stop_grace_s": 5}
        self.opts.update(recv)
        self.limits = {}
        self.write_conf()
        self.proc = None
        self.logs = []

    def write_conf(self):
        with open(self.conf, "w") as f:
            f.write("[daemon]\ninbox = %s\n" % self.inbox)
            if self.limits:
                f.write("[limits]\n")
                for k, v in self.limits.items():
                    f.write("%s = %s\n" % (k, v))
            f.write("[recv]\n")
            for k, v in self.opts.items():
                f.write("%s = %s\n" % (k, v))

    def start(self, wait=True):
        env = dict(os.environ)
        env.pop("JOURNAL_STREAM", None)
        env.pop("NOTIFY_SOCKET", None)
        self.logfile = os.path.join(self.dir, "recv%d.log" % len(self.logs))
        self.logs.append(self.logfile)
        self.proc = subprocess.Popen([RECV, "-c", self.conf, "-v"], stdout=subprocess.DEVNULL,
                                     stderr=open(self.logfile, "wb"), env=env)
        if wait and not self.wait_log("started:", 30, current=True):
            raise RuntimeError("echonetd-recv did not start: %s" % self.log())
        return self.proc

    def log(self):
        return "".join(open(p, encoding="utf-8", errors="replace").read() for p in self.logs)

    def wait_log(self, text, timeout, count=1, current=False):
        """Until text appears count times in the logs (of this run only
        with current=True)."""
        def n():
            if current:
                return open(self.logfile, encoding="utf-8", errors="replace").read().count(text)
            return self.log().count(text)
        t0 = time.time()
        while time.time() - t0 < timeout:
            if n() >= count:
                return True
            if self.proc is not None and self.proc.poll() is not None:
                return n() >= count
            time.sleep(0.05)
        return False

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def inbox_files(self):
        return sorted(glob.glob(os.path.join(self.inbox, "*")))

    def staging_files(self):
        return sorted(os.listdir(self.staging))

    def echoscu(self, aet="US1", aec="ECHONETD", extra=()):
        return subprocess.run(["echoscu", "-aet", aet, "-aec", aec] + list(extra) +
                              ["127.0.0.1", str(self.port)], capture_output=True, text=True,
                              timeout=60)

    def storescu(self, files, aet="US1", aec="ECHONETD", extra=(), background=False):
        cmd = ["storescu", "-v", "-nh", "-aet", aet, "-aec", aec] + list(extra) + \
              ["127.0.0.1", str(self.port)] + list(files)
        if background:
            return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True)
        return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=300)

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.tmp.cleanup()


def acked(storescu_output):
    """Files storescu saw acknowledged with Success, from its -v output:
    "Sending file: F" ... "Received Store Response (Success)"."""
    done, current = [], None
    for line in storescu_output.splitlines():
        if "Sending file:" in line:
            current = line.split("Sending file:", 1)[1].strip()
        elif "Received Store Response" in line and current:
            if "(Success)" in line:
                done.append(current)
            current = None
    return done


def wait_for_staging_bytes(rcv, minimum, timeout=30, proc=None):
    """Until a transfer in progress has written at least `minimum` bytes."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        for n in rcv.staging_files():
            try:
                if os.path.getsize(os.path.join(rcv.staging, n)) >= minimum:
                    return True
            except OSError:
                pass
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.002)
    return False


class Orthanc:
    """Orthanc on loopback ports with a storage folder of its own, playing
    the PACS.  modalities: {name: (aet, port)} it may send to."""

    def __init__(self, workdir, aet="ORTHANC", modalities=None):
        self.dir = os.path.join(workdir, "orthanc")
        os.makedirs(self.dir, exist_ok=True)
        self.http = free_port()
        self.dicom = free_port()
        self.aet = aet
        conf = {
            "Name": "echonetd-test-pacs",
            "StorageDirectory": os.path.join(self.dir, "storage"),
            "IndexDirectory": os.path.join(self.dir, "storage"),
            "HttpPort": self.http, "DicomPort": self.dicom, "DicomAet": aet,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "HttpServerEnabled": True, "DicomServerEnabled": True,
            "DicomCheckCalledAet": False, "Plugins": [], "StableAge": 1,
            "DicomScuTimeout": 30, "ConcurrentJobs": 1,
            "DicomModalities": {k: [v[0], "127.0.0.1", v[1]] for k, v in
                                (modalities or {}).items()},
        }
        self.conf = os.path.join(self.dir, "orthanc.json")
        with open(self.conf, "w") as f:
            json.dump(conf, f, indent=1)
        self.logfile = os.path.join(self.dir, "orthanc.log")
        self.proc = subprocess.Popen([ORTHANC, self.conf], stdout=subprocess.DEVNULL,
                                     stderr=open(self.logfile, "wb"))
        t0 = time.time()
        while time.time() - t0 < 60:
            try:
                self.get("/system")
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                if self.proc.poll() is not None:
                    break
                time.sleep(0.2)
        raise RuntimeError("Orthanc did not start: " + open(self.logfile).read()[-2000:])

    def _req(self, method, path, body=None, ctype="application/json"):
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.http, path), data=data,
                                     method=method)
        if data is not None:
            req.add_header("Content-Type", ctype)
        with urllib.request.urlopen(req, timeout=300) as r:
            raw = r.read()
        return json.loads(raw) if raw[:1] in (b"{", b"[") else raw

    def get(self, path):
        return self._req("GET", path)

    def post(self, path, body):
        return self._req("POST", path, body)

    def upload(self, path):
        with open(path, "rb") as f:
            return self._req("POST", "/instances", f.read(), "application/dicom")

    def store(self, modality, resources):
        """C-STORE through Orthanc's REST API, as auto-routing does.  Returns
        (ok, answer or error text)."""
        try:
            return True, self.post("/modalities/%s/store" % modality,
                                   {"Resources": resources, "Synchronous": True})
        except urllib.error.HTTPError as e:
            return False, e.read().decode(errors="replace")

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def make_study(src_files, out_dir, seed, patient=("NETTEST^PATIENT", "NET-0001"),
               accession="ACC0001"):
    """Copies of src_files as one study (new Study/Series/SOP UIDs, one
    patient and accession), as a modality would send it."""
    import pydicom
    from pydicom.uid import generate_uid
    os.makedirs(out_dir, exist_ok=True)
    study = generate_uid(entropy_srcs=[str(seed), "study"])
    series = generate_uid(entropy_srcs=[str(seed), "series"])
    out = []
    for i, src in enumerate(src_files):
        ds = pydicom.dcmread(src)
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = generate_uid(entropy_srcs=[str(seed), "sop", str(i)])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientName, ds.PatientID = patient
        ds.AccessionNumber = accession
        ds.InstanceNumber = i + 1
        dst = os.path.join(out_dir, "inst%02d.dcm" % i)
        ds.save_as(dst)
        out.append(dst)
    return out
