/*
 * test-analysis-driver.c - a line-oriented front end to the analysis
 * module for tests/analysis_findpeaks.py, which compares every answer with
 * scipy/numpy.  Not a test by itself.  One request per input line, one
 * answer line per request; numbers in C99 hex-float form so nothing is
 * lost in print and parse:
 *
 *   P distance pmin pmax n x...  -> en_find_peaks: per peak
 *                                   "index,left_edge,right_edge,prom,lbase,rbase"
 *   S n size...                  -> en_analysis_systoles: "rank_lo rank_hi
 *                                   clamped trim_min trim_max prom count frames..."
 *   A n v...                     -> numpy-order argsort permutation
 *   R f                          -> Python round(f)
 *   K n e                        -> trim rank round(n ** e) and clamped flag
 * A failed call answers "E <code name>".
 */
#include "analysis-int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *next_tok(char **s)
{
    return strtok_r(NULL, " \t\n", s);
}

static int read_values(char **s, double **v, int *n)
{
    char *t = next_tok(s);

    if (!t)
        return -1;
    *n = atoi(t);
    *v = malloc(((size_t)*n + 1) * sizeof **v);
    if (!*v)
        return -1;
    for (int i = 0; i < *n; i++) {
        if (!(t = next_tok(s))) {
            free(*v);
            return -1;
        }
        (*v)[i] = strtod(t, NULL);
    }
    return 0;
}

static void do_peaks(char **s)
{
    en_peaks_opts o;
    en_err err;
    double *x;
    int n, count;
    en_peak *pk;

    en_peaks_opts_init(&o);
    o.distance = strtod(next_tok(s), NULL);
    o.prominence_min = strtod(next_tok(s), NULL);
    o.prominence_max = strtod(next_tok(s), NULL);
    if (read_values(s, &x, &n) != 0) {
        puts("E parse");
        return;
    }
    pk = malloc(((size_t)n / 2 + 1) * sizeof *pk);
    if (en_find_peaks(x, n, &o, pk, n / 2, &count, &err) != EN_OK) {
        printf("E %s\n", en_err_name(err.code));
    } else {
        for (int k = 0; k < count; k++)
            printf("%s%d,%d,%d,%a,%d,%d", k ? " " : "", pk[k].index,
                   pk[k].left_edge, pk[k].right_edge, pk[k].prominence,
                   pk[k].left_base, pk[k].right_base);
        putchar('\n');
    }
    free(pk);
    free(x);
}

static void do_systoles(char **s)
{
    static en_systoles sys;
    en_systole_params p;
    en_analysis_params ap;
    en_err err;
    double *x;
    int n;

    en_analysis_params_default(&ap);
    p = ap.systole;
    if (read_values(s, &x, &n) != 0) {
        puts("E parse");
        return;
    }
    if (en_analysis_systoles(x, n, &p, &sys, &err) != EN_OK) {
        printf("E %s\n", en_err_name(err.code));
    } else {
        printf("%d %d %d %a %a %a %d", sys.trim_min_rank, sys.trim_max_rank,
               sys.trim_clamped, sys.trim_min, sys.trim_max, sys.prominence,
               sys.count);
        for (int k = 0; k < sys.count; k++)
            printf(" %d", sys.frame[k]);
        putchar('\n');
    }
    free(x);
}

static void do_argsort(char **s)
{
    double *v;
    int n, *idx;

    if (read_values(s, &v, &n) != 0) {
        puts("E parse");
        return;
    }
    idx = malloc(((size_t)n + 1) * sizeof *idx);
    ana_argsort(v, idx, n);
    for (int i = 0; i < n; i++)
        printf("%s%d", i ? " " : "", idx[i]);
    putchar('\n');
    free(idx);
    free(v);
}

static void do_rank(char **s)
{
    int n = atoi(next_tok(s)), clamped = 0;
    int r = ana_trim_rank(n, strtod(next_tok(s), NULL), &clamped);

    printf("%d %d\n", r, clamped);
}

int main(void)
{
    char *line = NULL, *save;
    size_t cap = 0;

    while (getline(&line, &cap, stdin) > 0) {
        char *cmd = strtok_r(line, " \t\n", &save);
        if (!cmd)
            continue;
        if (!strcmp(cmd, "P"))
            do_peaks(&save);
        else if (!strcmp(cmd, "S"))
            do_systoles(&save);
        else if (!strcmp(cmd, "A"))
            do_argsort(&save);
        else if (!strcmp(cmd, "R"))
            printf("%ld\n", ana_py_round(strtod(next_tok(&save), NULL)));
        else if (!strcmp(cmd, "K"))
            do_rank(&save);
        else
            puts("E command");
    }
    free(line);
    return 0;
}
