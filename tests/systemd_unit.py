"""systemd/echonetd.service: `systemd-analyze verify` accepts it (with
ExecStart pointed at this build's echonetd, as `make install` rewrites
it), and the hardening the design asks for is there: its own user, a
read-only system with the spool and state folders writable, no network,
no new privileges, a system call filter, Type=notify with a watchdog.
Exits 77 (skipped) where systemd-analyze is not installed."""
import os
import shutil
import subprocess
import sys
import tempfile

import enlib

TOP = os.environ.get("EN_TOP_SRCDIR", os.path.join(os.path.dirname(__file__), ".."))
BUILD = os.environ.get("EN_TOP_BUILDDIR", TOP)
if not shutil.which("systemd-analyze"):
    print("skip: systemd-analyze not installed")
    sys.exit(77)
rep = enlib.Report("systemd_unit")
unit = open(os.path.join(TOP, "systemd", "echonetd.service")).read()
with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "echonetd.service")
    with open(path, "w") as f:
        f.write(unit.replace("/usr/bin/echonetd", os.path.join(BUILD, "echonetd")))
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", path], capture_output=True,
                       text=True, env=dict(os.environ, SYSTEMD_LOG_LEVEL="notice"))
    mine = [l for l in r.stderr.splitlines() if "echonetd.service" in l]
    rep.check(r.returncode == 0 and not mine, "systemd-analyze verify: rc %d: %s" % (r.returncode, mine or r.stderr[-800:]))
lines = {l.strip() for l in unit.splitlines()}
for want in ("Type=notify", "WatchdogSec=60s", "User=echonetd", "ProtectSystem=strict",
             "ReadWritePaths=/var/spool/echonetd /var/lib/echonetd", "PrivateNetwork=yes",
             "NoNewPrivileges=yes", "SystemCallFilter=@system-service", "CapabilityBoundingSet="):
    rep.check(want in lines, "unit lacks %s" % want)
sysusers = open(os.path.join(TOP, "systemd", "echonetd.sysusers")).read()
rep.check("echonetd" in sysusers and sysusers.lstrip().startswith(("#", "u")), "sysusers file")
tmpfiles = open(os.path.join(TOP, "systemd", "echonetd.tmpfiles")).read()
for d in ("/var/spool/echonetd/inbox", "/var/spool/echonetd/work", "/var/spool/echonetd/archive",
          "/var/spool/echonetd/failed", "/var/lib/echonetd"):
    rep.check(d in tmpfiles, "tmpfiles does not make %s" % d)
sys.exit(rep.finish())
