"""echonetctl on a fresh build, run by a person with no configuration.

With no -c, no ECHONETD_CONF, no system configuration and no writable
system state folder, `convert` and `process` must work at once: the site
secret, database and output go to a per-user state folder ($XDG_STATE_HOME/
echonetd, else ~/.local/state/echonetd), made private (0700, the secret
0600), and the run that creates the secret says where it is and why it must
be kept, exactly once.  A run given a configuration makes no such folder.
Each case runs with a fresh HOME in a temporary folder."""
import json
import os
import re
import stat
import subprocess
import sys
import tempfile

import enlib

rep = enlib.Report("echonetctl_first_run")
NOTE = "created the site secret"


def run(env, *args, cwd=None):
    return subprocess.run([enlib.ECHONETCTL] + list(args), env=env, cwd=cwd,
                          capture_output=True, timeout=600)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def fresh_env(home, xdg=None):
    env = {k: v for k, v in os.environ.items() if k not in ("ECHONETD_CONF", "XDG_STATE_HOME")}
    env["HOME"] = home
    if xdg:
        env["XDG_STATE_HOME"] = xdg
    return env


def err(r):
    return r.stderr.decode(errors="replace")


tmp = tempfile.TemporaryDirectory(prefix="en-first-run-")
home = os.path.join(tmp.name, "home")
os.makedirs(home)
env = fresh_env(home)

# Where this build looks for a system configuration and state: the test is
# about their absence, so it cannot run where they are set up.
h = run(env, "help").stdout.decode()
sys_conf = re.search(r"\s(/\S*echonetd\.conf) when it exists", h)
sys_state = re.search(r"are kept in\s+(\S+) when it is writable", h)
if not (sys_conf and sys_state):
    print("FAIL: echonetctl help does not name the system configuration and state folder")
    sys.exit(1)
sys_conf, sys_state = sys_conf.group(1), sys_state.group(1)
if os.path.exists(sys_conf) or os.access(sys_state, os.W_OK):
    print("SKIP: %s exists or %s is writable: not a fresh installation" % (sys_conf, sys_state))
    sys.exit(77)

good = [m for m in enlib.load_manifest() if m["expect"] == "ok"]
dcm = os.path.join(enlib.TESTDATA, good[0]["file"])
dcm2 = os.path.join(enlib.TESTDATA, good[1]["file"])
state = os.path.join(home, ".local", "state", "echonetd")
secret = os.path.join(state, "site-secret")
work = os.path.join(tmp.name, "work")
os.makedirs(work)

# 1. convert X.dcm out.avi: works, the secret is made privately, one note.
r = run(env, "convert", dcm, "out.avi", "--json", cwd=work)
rep.check(r.returncode == 0, "convert on a fresh HOME: exit %d: %s" % (r.returncode, err(r).strip()))
rep.check(os.path.isfile(os.path.join(work, "out.avi")), "convert wrote no out.avi")
rep.check(os.path.isfile(secret), "no site secret at %s" % secret)
if os.path.isfile(secret):
    rep.check(mode(secret) == 0o600, "secret mode %o, expected 600" % mode(secret))
    rep.check(mode(state) == 0o700, "state folder mode %o, expected 700" % mode(state))
    rep.check(mode(os.path.dirname(state)) == 0o700, "~/.local/state made with mode %o, expected 700"
              % mode(os.path.dirname(state)))
rep.check(err(r).count(NOTE) == 1, "the note should appear once on creation: %r" % err(r))
rep.check(secret in err(r) and sys_state in err(r) and "back it up" in err(r),
          "the note should name the secret, why it is per-user and why to keep it: %r" % err(r))
rep.check(len(err(r).strip().splitlines()) <= 2, "note longer than two lines: %r" % err(r))
pseudonym = None
if r.returncode == 0:
    pseudonym = json.loads(r.stdout)["pseudonym"]

# 2. The second run reuses the secret (same pseudonym) and says nothing.
r = run(env, "convert", dcm, "again.avi", "--json", cwd=work)
rep.check(r.returncode == 0, "second convert: exit %d: %s" % (r.returncode, err(r).strip()))
rep.check(NOTE not in err(r), "note repeated on a run that created nothing: %r" % err(r))
if r.returncode == 0 and pseudonym:
    rep.check(json.loads(r.stdout)["pseudonym"] == pseudonym, "pseudonym changed between runs")

# 3. process: the output folder is made (0700); results in the database.
r = run(env, "process", "--json", dcm2)
rep.check(r.returncode == 0, "process on a fresh HOME: exit %d: %s" % (r.returncode, err(r).strip()))
out = os.path.join(state, "output")
rep.check(os.path.isdir(out) and mode(out) == 0o700, "output folder missing or not 0700")
rep.check(NOTE not in err(r), "process repeated the note: %r" % err(r))
if r.returncode == 0:
    res = [x for x in map(json.loads, r.stdout.decode().strip().splitlines())
           if x.get("kind") == "clip"][-1]
    rep.check(os.path.dirname(res["video"]) == out, "video not in %s: %s" % (out, res["video"]))
    rep.check(os.path.isfile(res["video"]), "no video %s" % res["video"])
    rep.check(os.path.isfile(os.path.join(state, "results.db")), "no database in the state folder")
    l = run(env, "list", "--json")
    rep.check(l.returncode == 0 and res["pseudonym"] in l.stdout.decode(),
              "list does not show the processed study: %s" % err(l))

# 4. convert without an output name writes into the per-user output folder.
r = run(env, "convert", dcm)
rep.check(r.returncode == 0 and pseudonym and os.path.isfile(os.path.join(out, pseudonym + ".avi")),
          "convert without OUT: exit %d: %s" % (r.returncode, err(r).strip()))

# 5. XDG_STATE_HOME, when set, is where the folder goes.
home2 = os.path.join(tmp.name, "home2")
xdg = os.path.join(tmp.name, "xdg")
os.makedirs(home2)
r = run(fresh_env(home2, xdg), "convert", dcm, os.path.join(work, "x.avi"))
rep.check(r.returncode == 0 and os.path.isfile(os.path.join(xdg, "echonetd", "site-secret")),
          "XDG_STATE_HOME not used: exit %d: %s" % (r.returncode, err(r).strip()))
rep.check(err(r).count(NOTE) == 1, "XDG case: note should appear once: %r" % err(r))
rep.check(not os.path.exists(os.path.join(home2, ".local")), "~/.local made despite XDG_STATE_HOME")

# 6. With a configuration nothing per-user is made: its paths are the rule.
home3 = os.path.join(tmp.name, "home3")
os.makedirs(home3)
site = enlib.Site()
r = subprocess.run([enlib.ECHONETCTL, "-c", site.conf, "convert", dcm, os.path.join(work, "c.avi")],
                   env=fresh_env(home3), capture_output=True, timeout=600)
rep.check(r.returncode == 0, "convert with -c: exit %d: %s" % (r.returncode, err(r).strip()))
rep.check(not os.path.exists(os.path.join(home3, ".local")), "a configured run made a per-user folder")
rep.check(err(r).count(NOTE) == 1 and "your own" not in err(r),
          "configured run: note once, without the per-user reason: %r" % err(r))
site.close()

# 7. A run that names its secret and output makes no per-user folder (as
# the tests that pass --set deid.secret_file=... must not touch HOME).
home4 = os.path.join(tmp.name, "home4")
os.makedirs(home4)
r = run(fresh_env(home4), "--set", "deid.secret_file=%s/s4" % work, "convert", dcm,
        os.path.join(work, "s4.avi"), "--json")
rep.check(r.returncode == 0, "convert with --set: exit %d: %s" % (r.returncode, err(r).strip()))
rep.check(os.listdir(home4) == [], "convert with --set made %s in HOME" % os.listdir(home4))

# 8. No HOME and no XDG_STATE_HOME: a setup error that says what to do,
# unless nothing of the state folder is needed.
env5 = fresh_env(home)
del env5["HOME"]
r = run(env5, "convert", dcm, os.path.join(work, "n.avi"))
rep.check(r.returncode == 3 and "-c FILE" in err(r), "no HOME: exit %d: %s" % (r.returncode, err(r)))
r = run(env5, "--set", "deid.secret_file=%s/s5" % work, "convert", dcm, os.path.join(work, "n.avi"))
rep.check(r.returncode == 0, "no HOME, secret set: exit %d: %s" % (r.returncode, err(r)))

tmp.cleanup()
rep.finish()
