/*
 * net-sr-make.c - writes the SR and the Encapsulated PDF of one made-up
 * result with en_sr.h, for tests/net_sr.py (which reads them back with
 * dsrdump, dcmdump, pydicom and Orthanc).  Not a test by itself.
 *
 *   net-sr-make --seed S --study-uid U --patient-id I --patient-name N
 *               --accession A [--birth D] [--sex X] [--study-date D]
 *               [--study-time T] [--charset C] [--version V] --ef E
 *               [--beat EF]... [--model ROLE:NAME:SHA256:ORIGIN]...
 *               [--phantom] [--notes TEXT] --sr OUT [--pdf IN --pdf-out OUT]
 *
 * Prints the four UIDs it used, one "name=uid" per line.
 */
#include "en_sr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COPY(dst, src) snprintf((dst), sizeof(dst), "%s", (src))

static int model(en_sr_result *r, char *spec)
{
    en_sr_model *m;
    char *f[4];

    if (r->nmodels == EN_SR_MAX_MODELS)
        return -1;
    m = &r->models[r->nmodels++];
    for (int i = 0; i < 4; i++) {
        f[i] = spec;
        if (i < 3 && !(spec = strchr(spec, ':')))
            return -1;
        if (i < 3)
            *spec++ = '\0';
    }
    COPY(m->role, f[0]);
    COPY(m->name, f[1]);
    COPY(m->sha256, f[2]);
    COPY(m->origin, f[3]);
    return 0;
}

int main(int argc, char **argv)
{
    static en_sr_patient pt;
    static en_sr_result r;
    en_sr_uids u;
    en_err e;
    const char *seed = NULL, *sr = NULL, *pdf = NULL, *pdf_out = NULL;

    r.version = 1;
    r.made_ms = 1780000000000LL;
    COPY(r.pseudonym, "0123456789abcdef");
    COPY(r.method, "DeepLabV3 segmentation finds the beats; R(2+1)D-18 predicts EF on each "
                   "beat's clip; the study's EF is their mean");
    COPY(r.algorithm_name, "echonetd EchoNet-Dynamic");
    COPY(r.algorithm_version, "0.1.0");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--phantom")) {
            r.not_for_diagnosis = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "net-sr-make: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--seed")) seed = v;
        else if (!strcmp(a, "--study-uid")) COPY(pt.study_instance_uid, v);
        else if (!strcmp(a, "--patient-id")) COPY(pt.patient_id, v);
        else if (!strcmp(a, "--patient-name")) COPY(pt.patient_name, v);
        else if (!strcmp(a, "--accession")) COPY(pt.accession_number, v);
        else if (!strcmp(a, "--birth")) COPY(pt.patient_birth_date, v);
        else if (!strcmp(a, "--sex")) COPY(pt.patient_sex, v);
        else if (!strcmp(a, "--study-date")) COPY(pt.study_date, v);
        else if (!strcmp(a, "--study-time")) COPY(pt.study_time, v);
        else if (!strcmp(a, "--charset")) COPY(pt.specific_character_set, v);
        else if (!strcmp(a, "--version")) r.version = atoi(v);
        else if (!strcmp(a, "--pseudonym")) COPY(r.pseudonym, v);
        else if (!strcmp(a, "--ef")) r.ef = atof(v);
        else if (!strcmp(a, "--notes")) COPY(r.notes, v);
        else if (!strcmp(a, "--sr")) sr = v;
        else if (!strcmp(a, "--pdf")) pdf = v;
        else if (!strcmp(a, "--pdf-out")) pdf_out = v;
        else if (!strcmp(a, "--beat") && r.nbeats < EN_SR_MAX_BEATS) {
            r.beats[r.nbeats].ef = atof(v);
            r.beats[r.nbeats].ed_frame = r.beats[r.nbeats].es_frame = -1;
            r.nbeats++;
        } else if (!strcmp(a, "--model")) {
            char spec[600];
            COPY(spec, v);
            if (model(&r, spec)) {
                fprintf(stderr, "net-sr-make: --model ROLE:NAME:SHA256:ORIGIN\n");
                return 2;
            }
        } else {
            fprintf(stderr, "net-sr-make: unknown option %s\n", a);
            return 2;
        }
    }
    if (!seed || !sr) {
        fprintf(stderr, "net-sr-make: --seed and --sr are required\n");
        return 2;
    }
    if (en_sr_uids_derive(seed, &u, &e) || en_sr_write(&pt, &r, &u, sr, &e) ||
        (pdf && en_sr_write_pdf(&pt, &r, &u, pdf, pdf_out, &e))) {
        fprintf(stderr, "net-sr-make: %s (%s)\n", e.msg, en_err_name(e.code));
        return 1;
    }
    printf("sr_series=%s\nsr_instance=%s\npdf_series=%s\npdf_instance=%s\n", u.sr_series,
           u.sr_instance, u.pdf_series, u.pdf_instance);
    return 0;
}
