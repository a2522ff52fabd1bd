"""analysis_findpeaks.py - en_find_peaks and the systole rule against
Debian's scipy/numpy, on thousands of random and adversarial signals.

Every answer must be identical: peak indices, plateau edges, prominences
(bit for bit) and bases.  The signals: every short signal over a 3-letter
alphabet (lengths 0-7), random walks, LV-like sinusoids with noise and
rounding (plateaus, equal peaks), tie-heavy integer signals, rows of equal
peaks closer than the distance, peaks at the edges, constants, negative,
huge and tiny values, and peak heights crafted so numpy's argsort falls
back to heapsort.  The systole rule (trim ranks + find_peaks) is compared
with a Python copy of upstream's lines.  All requests go through one run
of tests/test-analysis-driver, so the test stays fast under the
sanitizers."""
import math
import os
import subprocess
import sys
import time
import warnings

import numpy as np
import scipy
import scipy.signal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from enlib import Report  # noqa: E402

warnings.simplefilter("ignore")  # PeakPropertyWarning on flat signals
DRIVER = os.path.join(os.environ.get("EN_TOP_BUILDDIR", "."), "tests",
                      "test-analysis-driver")
INF = float("inf")
rng = np.random.default_rng(20200325)


# ---------------------------------------------------------------- references

def scipy_peaks(x, distance, pmin, pmax):
    """find_peaks as a caller would write it: None for absent conditions."""
    kw = {}
    if distance:
        kw["distance"] = distance
    if pmin != -INF or pmax != INF:
        kw["prominence"] = (None if pmin == -INF else pmin,
                            None if pmax == INF else pmax)
        if pmax == INF:  # the scalar form, as upstream passes it
            kw["prominence"] = pmin
    peaks, props = scipy.signal.find_peaks(np.asarray(x, dtype=np.float64), **kw)
    prom, lb, rb = scipy.signal.peak_prominences(np.asarray(x, np.float64), peaks)
    _, le, re_ = scipy.signal._peak_finding_utils._local_maxima_1d(
        np.ascontiguousarray(x, dtype=np.float64))
    edges = dict(zip(_.tolist(), zip(le.tolist(), re_.tolist())))
    return [(int(p), edges[p][0], edges[p][1], float(pr), int(l), int(r))
            for p, pr, l, r in zip(peaks.tolist(), prom, lb, rb)]


def upstream_systoles(size):
    """segmentation.py's lines, verbatim apart from the clamp for n <= 5
    (upstream raises IndexError there; we document the clamp)."""
    n = len(size)
    lo, hi = round(len(size) ** 0.05), round(len(size) ** 0.95)
    clamped = int(lo > n - 1 or hi > n - 1)
    if n == 0:
        return None
    lo, hi = min(lo, n - 1), min(hi, n - 1)
    trim_min = sorted(size)[lo]
    trim_max = sorted(size)[hi]
    trim_range = trim_max - trim_min
    systole = set(scipy.signal.find_peaks(-size, distance=20,
                                          prominence=(0.50 * trim_range))[0])
    return (lo, hi, clamped, float(trim_min), float(trim_max),
            float(0.50 * trim_range), sorted(int(s) for s in systole))


# --------------------------------------------- numpy 1.24 argsort, in Python
# Only used to build inputs that drive numpy's introsort into its heapsort
# fallback (McIlroy's adversary), and to confirm they do.

def np_argsort_model(n, less):
    a = list(range(n))
    stats = {"heap": 0}

    def heap(lo, cnt):
        def sift(i, m, item):
            j = 2 * i
            while j <= m:
                if j < m and less(a[lo + j - 1], a[lo + j]):
                    j += 1
                if not less(item, a[lo + j - 1]):
                    break
                a[lo + i - 1] = a[lo + j - 1]
                i = j
                j += j
            a[lo + i - 1] = item
        stats["heap"] += 1
        for l in range(cnt >> 1, 0, -1):
            sift(l, cnt, a[lo + l - 1])
        while cnt > 1:
            item = a[lo + cnt - 1]
            a[lo + cnt - 1] = a[lo]
            cnt -= 1
            sift(1, cnt, item)

    stack, lo, hi = [], 0, n - 1
    budget = (n.bit_length() - 1) * 2 if n else 0
    while True:
        if budget < 0:
            heap(lo, hi - lo + 1)
        else:
            while hi - lo > 15:
                mid = lo + ((hi - lo) >> 1)
                if less(a[mid], a[lo]):
                    a[mid], a[lo] = a[lo], a[mid]
                if less(a[hi], a[mid]):
                    a[hi], a[mid] = a[mid], a[hi]
                if less(a[mid], a[lo]):
                    a[mid], a[lo] = a[lo], a[mid]
                pivot = a[mid]
                i, j = lo, hi - 1
                a[mid], a[j] = a[j], a[mid]
                while True:
                    i += 1
                    while less(a[i], pivot):
                        i += 1
                    j -= 1
                    while less(pivot, a[j]):
                        j -= 1
                    if i >= j:
                        break
                    a[i], a[j] = a[j], a[i]
                a[i], a[hi - 1] = a[hi - 1], a[i]
                budget -= 1
                if i - lo < hi - i:
                    stack.append((i + 1, hi, budget))
                    hi = i - 1
                else:
                    stack.append((lo, i - 1, budget))
                    lo = i + 1
            for i in range(lo + 1, hi + 1):
                item, j = a[i], i
                while j > lo and less(item, a[j - 1]):
                    a[j] = a[j - 1]
                    j -= 1
                a[j] = item
        if not stack:
            break
        lo, hi, budget = stack.pop()
    return a, stats["heap"]


def mcilroy_killer(n):
    """Values on which numpy's quicksort degrades (McIlroy 1999)."""
    gas = n
    val = [gas] * n
    state = {"solid": 0, "cand": 0}

    def freeze(x):
        val[x] = state["solid"]
        state["solid"] += 1

    def less(x, y):
        if val[x] == gas and val[y] == gas:
            freeze(x if x == state["cand"] else y)
        if val[x] == gas:
            state["cand"] = x
        elif val[y] == gas:
            state["cand"] = y
        return val[x] < val[y]

    np_argsort_model(n, less)
    for i in range(n):
        if val[i] == gas:
            freeze(i)
    return val


def heap_count(v):
    return np_argsort_model(len(v), lambda x, y: v[x] < v[y])[1]


# ------------------------------------------------------------------ signals

def walk(n, step=1.0, integer=True):
    s = np.cumsum(rng.normal(0, step, n))
    return np.round(s) if integer else s


def lv_curve(n, period, noise, base=1500.0, amp=400.0, integer=True):
    t = np.arange(n)
    phase = rng.uniform(0, 2 * math.pi)
    y = base + amp * np.sin(2 * math.pi * t / period + phase) ** 3
    y += rng.normal(0, noise, n)
    return np.round(y) if integer else y


def plateaus(n, levels):
    out = []
    while len(out) < n:
        out += [float(rng.integers(0, levels))] * int(rng.integers(1, 6))
    return np.array(out[:n])


def equal_peaks(count, gap, width):
    """count peaks of the same height, plateau width `width`, `gap` apart."""
    x = []
    for _ in range(count):
        x += [0.0] * gap + [5.0] * width
    return np.array(x + [0.0] * gap)


def interleave(heights, low):
    x = [low]
    for h in heights:
        x += [float(h), low]
    return np.array(x)


# ------------------------------------------------------------ request sets

def peak_cases():
    """(signal, distance, pmin, pmax) tuples."""
    opts_small = [(0, -INF, INF), (1, -INF, INF), (2, -INF, INF), (3, 0.0, INF),
                  (1.5, 1.0, INF), (0, -INF, 1.0), (2, 0.5, 1.5), (20, 0.0, INF)]
    cases = []
    for length in range(8):                         # exhaustive, 3 letters
        for code in range(3 ** length):
            x = [(code // 3 ** i) % 3 for i in range(length)]
            for o in opts_small[:4] if length > 5 else opts_small:
                cases.append((np.array(x, float),) + o)
    for _ in range(300):                            # random walks
        n = int(rng.integers(0, 600))
        x = walk(n, integer=bool(rng.integers(0, 2)))
        rng_p = float(np.ptp(x)) if n else 0.0
        for d in (0, 1, 2, 7, 20, 20.2, 50, 1000):
            cases.append((x, d, rng.uniform(0, 0.3) * rng_p, INF))
        cases.append((x, 5, -INF, rng_p * 0.1))
        cases.append((x, 3, rng_p * 0.05, rng_p * 0.4))
    for _ in range(1000):                           # LV-like curves
        n = int(rng.integers(3, 1000))
        x = lv_curve(n, rng.uniform(15, 90), rng.uniform(0, 80),
                     integer=bool(rng.integers(0, 4)))
        for d in (20, 10, 1):
            for frac in (0.5, 0.1, 0.0):
                cases.append((-x, d, frac * float(np.ptp(x)), INF))
    for _ in range(300):                            # plateaus and ties
        x = plateaus(int(rng.integers(0, 300)), int(rng.integers(2, 6)))
        for d in (0, 2, 4, 9, 20):
            cases.append((x, d, float(rng.integers(0, 3)), INF))
            cases.append((-x, d, -INF, INF))
    for count in (1, 2, 3, 15, 16, 17, 18, 40, 100, 333):   # equal peaks
        for gap, width in ((1, 1), (1, 2), (2, 3), (3, 4), (1, 5)):
            x = equal_peaks(count, gap, width)
            for d in (1, 2, 3, 4, 6, 10, 20, 7.5):
                cases.append((x, d, -INF, INF))
                cases.append((x, d, 5.0, INF))
    for n in range(0, 40):                          # edges and constants
        ramp = np.arange(n, dtype=float)
        for x in (ramp, -ramp, np.abs(ramp - n // 2), -np.abs(ramp - n // 2),
                  np.full(n, 7.0), np.full(n, -3.0)):
            cases.append((x, 20, 0.0, INF))
            cases.append((x, 0, -INF, INF))
    for scale, off in ((1e300, 0.0), (1e-300, 0.0), (5e-324, 0.0),
                       (1.0, 1e15), (1.0, -1e15), (1e150, -1e300), (1e307, 0.0)):
        for _ in range(20):                         # huge, tiny, negative
            x = plateaus(int(rng.integers(2, 200)), 5) * scale + off
            for d in (0, 2, 20):
                cases.append((x, d, -INF, INF))
                cases.append((x, d, scale * 1.0, INF))
    return cases


def argsort_cases():
    cases = []
    for n in list(range(0, 40)) + [63, 64, 65, 100, 257, 1000]:
        for levels in (1, 2, 3, 10, 1000):
            cases.append(rng.integers(0, levels, n).astype(float))
    for n in (100, 200, 513, 1000):
        cases.append(np.array(mcilroy_killer(n), float))
    return cases


_TIE_KILLERS = []


def tie_killers():
    """Tie-heavy height sequences that still reach numpy's heapsort."""
    if _TIE_KILLERS:
        return _TIE_KILLERS
    found = _TIE_KILLERS
    for n in (60, 100, 200, 400):
        base = mcilroy_killer(n)
        for k in (2, 3, 4, 6):
            v = [b // k for b in base]
            if heap_count(v):
                found.append(v)
    return found


# ------------------------------------------------------------------- running

def fmt(x):
    return " ".join(float(v).hex() for v in x)


def run_driver(lines):
    out = subprocess.run([DRIVER], input="\n".join(lines) + "\n", text=True,
                         capture_output=True, timeout=600)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise SystemExit("driver failed with status %d" % out.returncode)
    return out.stdout.split("\n")


def parse_peaks(line):
    res = []
    for tok in line.split():
        i, le, re_, pr, lb, rb = tok.split(",")
        res.append((int(i), int(le), int(re_), float.fromhex(pr), int(lb), int(rb)))
    return res


def check_peaks(rep):
    cases = peak_cases()
    lines = ["P %s %s %s %d %s" % (float(d).hex(), float(lo).hex(), float(hi).hex(),
                                   len(x), fmt(x)) for x, d, lo, hi in cases]
    for x, heights in [(interleave(v, -1.0), v) for v in tie_killers()]:
        for d in (3, 5, 9, 41):
            cases.append((x, d, -INF, INF))
            lines.append("P %s %s %s %d %s" % (float(d).hex(), (-INF).hex(),
                                               INF.hex(), len(x), fmt(x)))
    rep.check(len(tie_killers()) > 0, "no tie-heavy heapsort case was built")
    print("find_peaks: %d tie-heavy height rows reach numpy's heapsort" % len(tie_killers()))
    answers = run_driver(lines)
    bad = 0
    for (x, d, lo, hi), got in zip(cases, answers):
        want = scipy_peaks(x, d, lo, hi)
        ok = got.startswith("E") is False and parse_peaks(got) == want
        if not ok and bad < 5:
            print("mismatch: n=%d distance=%g prominence=(%g, %g)\n  x=%s\n"
                  "  scipy=%s\n  ours=%s" % (len(x), d, lo, hi, list(x)[:60],
                                             want, got))
        bad += not ok
    rep.check(bad == 0, "find_peaks: %d of %d signals differ from scipy" % (bad, len(cases)))
    print("find_peaks: %d signals compared, %d differ" % (len(cases), bad))


def check_argsort(rep):
    cases = argsort_cases()
    answers = run_driver(["A %d %s" % (len(v), fmt(v)) for v in cases])
    heaps = sum(1 for v in cases if len(v) and heap_count(list(v)))
    rep.check(heaps >= 4, "adversarial inputs did not reach heapsort (%d)" % heaps)
    bad = 0
    for v, got in zip(cases, answers):
        want = " ".join(str(i) for i in np.argsort(v).tolist())
        if got != want and bad < 3:
            print("argsort mismatch (n=%d):\n  numpy=%s\n  ours=%s" % (len(v), want, got))
        bad += got != want
    rep.check(bad == 0, "argsort: %d of %d arrays differ from numpy" % (bad, len(cases)))
    print("argsort: %d arrays (%d through heapsort), %d differ" % (len(cases), heaps, bad))


def systole_cases():
    cases = []
    for n in range(0, 12):
        cases.append(np.full(n, 1200, np.int64))
        cases.append(lv_curve(n, 30, 20).astype(np.int64))
    for _ in range(2000):
        n = int(rng.integers(12, 800))
        y = lv_curve(n, rng.uniform(18, 80), rng.uniform(0, 150),
                     base=rng.uniform(300, 3000), amp=rng.uniform(0, 800))
        if rng.integers(0, 5) == 0:   # segmentation dropouts
            y[rng.integers(0, n, n // 10 + 1)] = 0
        cases.append(np.maximum(y, 0).astype(np.int64))
    for _ in range(100):
        n = int(rng.integers(12, 400))
        cases.append(plateaus(n, 4).astype(np.int64) * 100 + 1000)
        cases.append(np.abs(walk(n, 30)).astype(np.int64))
    for _ in range(100):                            # non-integer sizes
        n = int(rng.integers(6, 500))
        cases.append(lv_curve(n, rng.uniform(18, 80), 30, integer=False))
    return cases


def check_systoles(rep):
    cases = systole_cases()
    answers = run_driver(["S %d %s" % (len(s), fmt(s)) for s in cases])
    bad = 0
    for size, got in zip(cases, answers):
        want = upstream_systoles(size)
        tok = got.split()
        if want is None:
            ok = tok == ["0", "0", "0", "nan", "nan", "nan", "0"]
        else:
            ours = (int(tok[0]), int(tok[1]), int(tok[2]), float.fromhex(tok[3]),
                    float.fromhex(tok[4]), float.fromhex(tok[5]),
                    [int(t) for t in tok[7:]])
            ok = ours == want and int(tok[6]) == len(want[6])
        if not ok and bad < 5:
            print("systole mismatch n=%d\n  upstream=%s\n  ours=%s"
                  % (len(size), want, got))
        bad += not ok
    rep.check(bad == 0, "systoles: %d of %d curves differ from upstream's rule"
              % (bad, len(cases)))
    print("systoles: %d size curves compared, %d differ" % (len(cases), bad))
    for n in (1, 2, 3, 4, 5):                       # upstream's own failure
        try:
            sorted(range(n))[round(n ** 0.95)]
            rep.check(False, "upstream indexes n=%d without error?" % n)
        except IndexError:
            rep.check(True, "")
    try:
        sorted(range(6))[round(6 ** 0.95)]
        rep.check(True, "")
    except IndexError:
        rep.check(False, "upstream fails at n=6")


def check_rounding(rep):
    ns = list(range(0, EN_MAX_FRAMES + 1))
    lines = ["K %d %s" % (n, e.hex()) for e in (0.05, 0.95) for n in ns]
    vals = [0.0, 0.5, 1.5, 2.5, 3.5, 2.4999999999999996, 2.5000000000000004,
            1e15 + 0.5, 4503599627370495.5, 0.49999999999999994, 7.0]
    lines += ["R %s" % v.hex() for v in vals]
    answers = run_driver(lines)
    i = bad = 0
    for e in (0.05, 0.95):
        for n in ns:
            r = round(n ** e)
            want = "%d %d" % (min(r, max(n - 1, 0)), int(r > n - 1))
            if answers[i] != want and bad < 5:
                print("trim rank n=%d e=%g: ours %s, Python %s" % (n, e, answers[i], want))
            bad += answers[i] != want
            i += 1
    rep.check(bad == 0, "trim ranks: %d differ from Python's round(n ** e)" % bad)
    for v in vals:
        rep.check(answers[i] == str(round(v)), "round(%r): %s" % (v, answers[i]))
        i += 1
    print("rounding: %d trim ranks and %d round() values compared" % (2 * len(ns), len(vals)))


EN_MAX_FRAMES = 16384


def main():
    rep = Report("analysis_findpeaks")
    print("scipy %s, numpy %s" % (scipy.__version__, np.__version__))
    t0 = time.time()
    check_argsort(rep)
    check_peaks(rep)
    check_systoles(rep)
    check_rounding(rep)
    print("%.1f s" % (time.time() - t0))
    rep.finish()


if __name__ == "__main__":
    main()
