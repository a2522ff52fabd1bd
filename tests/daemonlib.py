"""Helpers for the echonetd tests: a temporary spool with small
random-weight models, starting/stopping the daemon as a real process,
delivering files (rename-in, slow writes) and waiting for outcomes.

Random weights say nothing about accuracy; these tests are about the
plumbing: every file ends in done or failed exactly once."""
import atexit
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time


import enlib
import nn_common as nc
import testmodels

TOP_BUILDDIR = enlib.TOP_BUILDDIR
ECHONETD = os.environ.get("EN_ECHONETD", os.path.join(TOP_BUILDDIR, "echonetd"))


def sanitized():
    return nc.sanitized()


def build_models(d):
    """Tiny models of the real topology (built once per test run)."""
    return testmodels.build(d, 16, "daemon test random weights")


class Spool:
    """A site (enlib.Site) plus the daemon's four folders and its config."""

    def __init__(self, models=None, extra_conf="", **daemon_opts):
        self.site = enlib.Site()
        self.extra_conf = extra_conf    # more sections, appended as written
        self.dir = self.site.dir
        self.models = models or build_models(self.dir)
        self.db = os.path.join(self.dir, "results.db")
        for k in ("inbox", "work", "archive", "failed", "staging"):
            os.makedirs(os.path.join(self.dir, k))
            setattr(self, k, os.path.join(self.dir, k))
        opts = {"inbox": self.inbox, "work": self.work, "archive": self.archive,
                "failed": self.failed, "concurrency": 2, "settle_ms": 300,
                "rescan_ms": 500, "max_attempts": 2, "study_timeout_s": 120,
                "stop_grace_s": 30, "min_free_mb": 1, "incomplete_wait_s": 4}
        opts.update(daemon_opts)
        self.opts = opts
        self.write_conf()
        self.proc = None
        self.logs = []
        self.n = 0
        # A test that dies half-way must not leave its daemon running.
        atexit.register(self.kill)

    def write_conf(self, **over):
        o = dict(self.opts)
        o.update(over)
        with open(self.site.conf, "w") as f:
            f.write("[paths]\noutput_dir = %s\ndatabase = %s\n[deid]\nsecret_file = %s/secret\n"
                    "[models]\nsegmentation = %s\nef = %s\n[nn]\nthreads = 1\n"
                    "[report]\npng = no\n[daemon]\n"
                    % (self.site.out, self.db, self.dir, self.models["seg"], self.models["ef"]))
            for k, v in o.items():
                f.write("%s = %s\n" % (k, v))
            f.write(self.extra_conf)

    def start(self, env=None, wait_ready=True, preexec_fn=None):
        e = dict(os.environ)
        e.pop("JOURNAL_STREAM", None)
        e.pop("NOTIFY_SOCKET", None)
        if env:
            e.update(env)
        self.logfile = os.path.join(self.dir, "log%d.txt" % len(self.logs))
        self.logs.append(self.logfile)
        self.proc = subprocess.Popen([ECHONETD, "-c", self.site.conf, "-v"],
                                     stdout=subprocess.DEVNULL, stderr=open(self.logfile, "wb"),
                                     env=e, preexec_fn=preexec_fn)
        if wait_ready:
            self.wait_log("started:", 60)
        return self.proc

    def log(self):
        return b"".join(open(p, "rb").read() for p in self.logs)

    def wait_log(self, text, timeout):
        t0 = time.time()
        while time.time() - t0 < timeout:
            if text.encode() in open(self.logfile, "rb").read():
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    def stop(self, sig=signal.SIGTERM, timeout=120):
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def deliver(self, src, name=None, slow=False):
        """Rename-in (write in staging/, rename into the inbox), or a slow
        write straight into the inbox in chunks."""
        self.n += 1
        name = name or "delivered_%03d.dcm" % self.n
        if slow:
            data = open(src, "rb").read()
            with open(os.path.join(self.inbox, name), "wb") as f:
                step = max(1, len(data) // 5)
                for i in range(0, len(data), step):
                    f.write(data[i:i + step])
                    f.flush()
                    time.sleep(0.15)
        else:
            tmp = os.path.join(self.staging, name)
            shutil.copyfile(src, tmp)
            os.rename(tmp, os.path.join(self.inbox, name))
        return name

    def counts(self):
        """(files in inbox, work, archive, failed .dcm, failed .reason)."""
        ls = lambda d, ext: len([n for n in os.listdir(d) if n.endswith(ext)])
        return (len(os.listdir(self.inbox)), ls(self.work, ".dcm"), ls(self.archive, ".dcm"),
                ls(self.failed, ".dcm"), ls(self.failed, ".reason"))

    def wait_settled(self, total, timeout):
        """Until archive + failed == total and work/ and the inbox are empty."""
        t0 = time.time()
        while time.time() - t0 < timeout:
            c = self.counts()
            if c[0] == 0 and c[1] == 0 and c[2] + c[3] == total:
                return True
            if self.proc is not None and self.proc.poll() is not None:
                return False
            time.sleep(0.2)
        return False

    def sql(self, q, *args):
        con = sqlite3.connect(self.db)
        try:
            return con.execute(q, args).fetchall()
        finally:
            con.close()

    def clips(self):
        """One dict per stored instance (clip): id, its study's pseudonym,
        status, video_frames, frames and beats stored, ef_mean,
        finished_at."""
        q = ("SELECT c.id, s.pseudonym, c.status, c.video_frames, "
             "(SELECT count(*) FROM frames f WHERE f.clip_id = c.id), "
             "(SELECT count(*) FROM beats b WHERE b.clip_id = c.id), c.ef_mean, c.finished_at "
             "FROM clips c JOIN studies s ON s.id = c.study_id ORDER BY c.id")
        keys = ("id", "pseudonym", "status", "video_frames", "frames", "beats", "ef_mean",
                "finished_at")
        return [dict(zip(keys, r)) for r in self.sql(q)]

    def reasons(self):
        """{job: the fields of failed/<job>.reason}."""
        out = {}
        for n in os.listdir(self.failed):
            if n.endswith(".reason"):
                with open(os.path.join(self.failed, n)) as f:
                    out[n[:-7]] = dict(l.split(": ", 1) for l in f.read().splitlines() if ": " in l)
        return out

    def rss_kb(self):
        try:
            with open("/proc/%d/status" % self.proc.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self):
        self.kill()
        self.site.close()


def with_new_uids(src, dst, seed, comment=None, keep_study=False):
    """A copy of src with new Study/Series/SOP Instance UIDs (a different
    study and instance), for floods; with keep_study, another instance of
    the same study."""
    import pydicom
    from pydicom.uid import generate_uid
    ds = pydicom.dcmread(src)
    for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        if keep_study and kw == "StudyInstanceUID":
            continue
        setattr(ds, kw, generate_uid(entropy_srcs=[str(seed), kw]))
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if comment:
        ds.ImageComments = comment
    ds.save_as(dst)
