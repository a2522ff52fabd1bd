"""echonetd-recv over DICOM TLS (DCMTK's OpenSSL layer, BCP 195 profile):
a peer with a certificate signed by [recv] tls_trusted stores over TLS and
checks the receiver's certificate in turn; a peer without a certificate, one
with a certificate from another CA, and one speaking plain TCP are all
turned away before any association, with a log line, and store nothing.
Certificates are made here with the openssl command line tool."""
import os
import subprocess
import sys
import tempfile

import enlib
import netlib

rep = enlib.Report("net_tls")
work = tempfile.TemporaryDirectory(prefix="en-net-tls-")
W = work.name


def openssl(*args):
    r = subprocess.run(["openssl"] + list(args), capture_output=True, text=True, cwd=W)
    if r.returncode != 0:
        raise RuntimeError("openssl %s: %s" % (" ".join(args), r.stderr))


def ca(name):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=%s" % name, "-keyout", name + ".key", "-out", name + ".pem")


def leaf(name, ca_name):
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=%s" % name, "-keyout",
            name + ".key", "-out", name + ".csr")
    openssl("x509", "-req", "-in", name + ".csr", "-CA", ca_name + ".pem", "-CAkey",
            ca_name + ".key", "-CAcreateserial", "-days", "2", "-out", name + ".pem")
    os.chmod(os.path.join(W, name + ".key"), 0o600)


ca("site-ca")
ca("other-ca")
leaf("receiver", "site-ca")
leaf("cart", "site-ca")
leaf("stranger", "other-ca")
P = lambda n: os.path.join(W, n)

rcv = netlib.Receiver(allow="US1", tls="yes", tls_certificate=P("receiver.pem"),
                      tls_private_key=P("receiver.key"), tls_trusted=P("site-ca.pem"),
                      tls_verify_peer="yes")
try:
    rcv.start()
    rep.check("(TLS)" in rcv.log(), "start line does not say TLS")
    f = os.path.join(enlib.TESTDATA, "us_single_rgb_explicit.dcm")
    trust_server = ["+cf", P("site-ca.pem")]
    r = rcv.storescu([f], extra=["+tls", P("cart.key"), P("cart.pem")] + trust_server)
    rep.check(r.returncode == 0 and len(netlib.acked(r.stdout)) == 1,
              "store over TLS with a trusted certificate: %s" % r.stdout[-800:])
    rep.check(len(rcv.inbox_files()) == 1, "inbox after the TLS store: %d" % len(rcv.inbox_files()))

    refusals = [("no certificate", ["+tla"] + trust_server),
                ("certificate of another CA", ["+tls", P("stranger.key"), P("stranger.pem")] +
                 trust_server),
                ("plain TCP", [])]
    for i, (what, extra) in enumerate(refusals):
        r = rcv.echoscu(extra=extra)
        rep.check(r.returncode != 0, "%s: C-ECHO succeeded" % what)
        rep.check(rcv.wait_log("dropped before any association", 10, count=i + 1),
                  "%s: no log line" % what)
    rep.check(len(rcv.inbox_files()) == 1, "a refused peer stored something")
    # The peer checks us too: a cart that trusts another CA refuses the receiver.
    r = rcv.echoscu(extra=["+tls", P("cart.key"), P("cart.pem"), "+cf", P("other-ca.pem")])
    rep.check(r.returncode != 0, "a peer that does not trust the receiver's CA connected")
    rep.check(rcv.stop() == 0, "exit status")
    rep.check(not netlib.sanitizer_errors(rcv.log()), "sanitizer: %s" %
              netlib.sanitizer_errors(rcv.log())[:3])
finally:
    rcv.close()

# A private key that does not match the certificate is refused at start.
rcv = netlib.Receiver(allow="US1", tls="yes", tls_certificate=P("receiver.pem"),
                      tls_private_key=P("cart.key"), tls_trusted=P("site-ca.pem"))
try:
    rcv.start(wait=False)
    rc = rcv.proc.wait(30)
    rep.check(rc == 3 and "does not belong" in rcv.log(), "mismatched key: rc %s %s" % (rc, rcv.log()))
finally:
    rcv.close()
work.cleanup()
rep.finish()
