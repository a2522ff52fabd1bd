/*
 * analysis-int.h - what the analysis module's files share and nobody else
 * needs.  Internal names carry the ana_ prefix.
 */
#ifndef EN_ANALYSIS_INT_H
#define EN_ANALYSIS_INT_H

#include "en_analysis.h"

/* numpy 1.24's default argsort (introsort) of v[0..n), step for step, so
 * that equal values come out in numpy's order.  idx gets a permutation. */
void ana_argsort(const double *v, int *idx, int n);

/* en_find_peaks into a malloc'd array (*out, free() it; NULL when none). */
int ana_find_peaks(const double *x, int n, const en_peaks_opts *o,
                   en_peak **out, int *count, en_err *err);

/* Python 3's round() of a non-negative double: ties to even. */
long ana_py_round(double f);

/* Upstream's trim rank round(n ** e), clamped to n - 1 (*clamped = 1 then). */
int ana_trim_rank(int n, double e, int *clamped);

/* Size-curve quality measures and flags (flags.c). */
void ana_curve_flags(const double *size, int n, const en_analysis_params *p,
                     en_analysis *a);

#endif
