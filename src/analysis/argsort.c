/*
 * argsort.c - numpy's default argsort for float64, reproduced exactly.
 *
 * scipy's distance rule visits peaks in the order np.argsort(heights) gives,
 * from the back.  np.argsort's default kind is an introsort (median-of-3
 * quicksort, insertion sort below 16 elements, heapsort when recursion goes
 * too deep) and it is not stable: among equal heights, which peak wins
 * depends on the exact sequence of swaps.  Reproducing find_peaks on
 * integer LV sizes, where equal heights are common, therefore means doing
 * the same swaps in the same order as numpy 1.24's aquicksort_<double> and
 * aheapsort_<double> (numpy/core/src/npysort).  Later numpy versions use
 * x86-simd-sort on AVX-512 machines and order ties differently; the tests
 * pin the behaviour to the installed numpy.
 */
#include "analysis-int.h"

#define SMALL_RUN 15   /* partitions at most this long + 1 go to insertion sort */
#define STACK_MAX 128  /* numpy's bound: two entries per bit of npy_intp */

/* numpy's DOUBLE_LT: NaNs sort last.  Inputs are finite here, but keeping
 * the exact predicate keeps the swap sequence exact. */
static int lt(double a, double b)
{
    return a < b || (b != b && a == a);
}

static void swap(int *a, int *b)
{
    int t = *a;
    *a = *b;
    *b = t;
}

static int floor_log2(int n)
{
    int d = 0;

    while (n >>= 1)
        d++;
    return d;
}

/* Sifts heap slot i (1-based over a[0..n)) down. */
static void sift_down(const double *v, int *a, int i, int n, int item)
{
    for (int j = 2 * i; j <= n;) {
        if (j < n && lt(v[a[j - 1]], v[a[j]]))
            j++;
        if (!lt(v[item], v[a[j - 1]]))
            break;
        a[i - 1] = a[j - 1];
        i = j;
        j += j;
    }
    a[i - 1] = item;
}

static void heap_argsort(const double *v, int *a, int n)
{
    for (int l = n >> 1; l > 0; l--)
        sift_down(v, a, l, n, a[l - 1]);
    while (n > 1) {
        int item = a[n - 1];
        a[n - 1] = a[0];
        n--;
        sift_down(v, a, 1, n, item);
    }
}

static void insertion_argsort(const double *v, int *a, int lo, int hi)
{
    for (int i = lo + 1; i <= hi; i++) {
        int item = a[i], j = i;
        double key = v[item];
        while (j > lo && lt(key, v[a[j - 1]])) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = item;
    }
}

/* One median-of-3 partition of a[lo..hi]; returns the pivot's slot. */
static int partition(const double *v, int *a, int lo, int hi)
{
    int mid = lo + ((hi - lo) >> 1), i = lo, j = hi - 1;
    double pivot;

    if (lt(v[a[mid]], v[a[lo]]))
        swap(&a[mid], &a[lo]);
    if (lt(v[a[hi]], v[a[mid]]))
        swap(&a[hi], &a[mid]);
    if (lt(v[a[mid]], v[a[lo]]))
        swap(&a[mid], &a[lo]);
    pivot = v[a[mid]];
    swap(&a[mid], &a[j]);
    for (;;) {
        do
            i++;
        while (lt(v[a[i]], pivot));
        do
            j--;
        while (lt(pivot, v[a[j]]));
        if (i >= j)
            break;
        swap(&a[i], &a[j]);
    }
    swap(&a[i], &a[hi - 1]);
    return i;
}

void ana_argsort(const double *v, int *idx, int n)
{
    int stack[STACK_MAX], depth[STACK_MAX];
    int sp = 0, dp = 0, lo = 0, hi = n - 1;
    int budget = floor_log2(n) * 2;

    for (int i = 0; i < n; i++)
        idx[i] = i;
    for (;;) {
        if (budget < 0) {
            heap_argsort(v, idx + lo, hi - lo + 1);
        } else {
            while (hi - lo > SMALL_RUN) {
                int p = partition(v, idx, lo, hi);
                /* The larger side waits on the stack, as in numpy. */
                if (p - lo < hi - p) {
                    stack[sp++] = p + 1;
                    stack[sp++] = hi;
                    hi = p - 1;
                } else {
                    stack[sp++] = lo;
                    stack[sp++] = p - 1;
                    lo = p + 1;
                }
                depth[dp++] = --budget;
            }
            insertion_argsort(v, idx, lo, hi);
        }
        if (sp == 0)
            break;
        hi = stack[--sp];
        lo = stack[--sp];
        budget = depth[--dp];
    }
}
