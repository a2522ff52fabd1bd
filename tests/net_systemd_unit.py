"""systemd/echonetd-recv.service: `systemd-analyze verify` accepts it (with
ExecStart pointed at this build's echonetd-recv, as `make install` rewrites
it); it is Type=notify with a watchdog and a reload; it carries every
hardening setting of echonetd.service with the same value, except the
three that keep echonetd off the network (the receiver's whole job is the
network); it can write the spool only; and the spool folder it stages in
is made by echonetd.tmpfiles.  Exits 77 (skipped) without systemd-analyze."""
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
rep = enlib.Report("net_systemd_unit")


def settings(path):
    """[Service] key=value pairs; repeated keys keep every value."""
    out, section = {}, None
    for line in open(path):
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out.setdefault(k, []).append(v)
    return out


unit_path = os.path.join(TOP, "systemd", "echonetd-recv.service")
unit = open(unit_path).read()
with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "echonetd-recv.service")
    with open(path, "w") as f:
        f.write(unit.replace("/usr/bin/echonetd-recv", os.path.join(BUILD, "echonetd-recv")))
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", path], capture_output=True,
                       text=True, env=dict(os.environ, SYSTEMD_LOG_LEVEL="notice"))
    mine = [l for l in r.stderr.splitlines() if "echonetd-recv.service" in l]
    rep.check(r.returncode == 0 and not mine,
              "systemd-analyze verify: rc %d: %s" % (r.returncode, mine or r.stderr[-800:]))

recv = settings(unit_path)
daemon = settings(os.path.join(TOP, "systemd", "echonetd.service"))
for key, want in (("Type", ["notify"]), ("WatchdogSec", ["60s"]), ("User", ["echonetd"]),
                  ("ReadWritePaths", ["/var/spool/echonetd"])):
    rep.check(recv.get(key) == want, "%s=%s, expected %s" % (key, recv.get(key), want))
rep.check("ExecReload" in recv, "no ExecReload (SIGHUP applies the allow-list)")
NETWORK = {"PrivateNetwork", "IPAddressDeny", "RestrictAddressFamilies"}
HARDENING = [k for k in daemon if k.startswith(("Protect", "Private", "Restrict", "NoNew",
                                                "Capability", "Ambient", "SystemCall",
                                                "LockPersonality", "MemoryDeny", "RemoveIPC",
                                                "LimitCORE", "UMask", "IPAddress"))]
rep.check(len(HARDENING) >= 20, "found only %d hardening settings in echonetd.service" %
          len(HARDENING))
for k in HARDENING:
    if k in NETWORK:
        continue
    rep.check(recv.get(k) == daemon[k], "%s: echonetd.service has %s, echonetd-recv.service %s" %
              (k, daemon[k], recv.get(k)))
rep.check("PrivateNetwork" not in recv, "the receiver cannot have PrivateNetwork=yes")
rep.check(recv.get("RestrictAddressFamilies") == ["AF_INET AF_INET6 AF_UNIX"],
          "RestrictAddressFamilies: %s" % recv.get("RestrictAddressFamilies"))
tmpfiles = open(os.path.join(TOP, "systemd", "echonetd.tmpfiles")).read()
rep.check("/var/spool/echonetd/incoming" in tmpfiles, "tmpfiles does not make the staging folder")
conf = open(os.path.join(TOP, "etc", "echonetd.conf")).read()
rep.check("#staging = /var/spool/echonetd/incoming" in conf,
          "echonetd.conf's [recv] staging default is not the tmpfiles folder")
rep.finish()
