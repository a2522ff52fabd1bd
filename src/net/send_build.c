/*
 * send_build.c - one study result version as the DICOM objects the PACS
 * gets (en_send_build in en_send.h): the SR and the Encapsulated PDF of
 * en_sr.h, filled from the results database (what echonetd found) and the
 * key store (which study it was: the only identifying input).
 *
 * The database keeps a study's current result only, so a version can be
 * built while it is current and its clips have not changed since
 * (not stale); otherwise it is superseded and the newer version is sent
 * instead.  The PDF is the page the daemon drew for the current result
 * (<output_dir>/<pseudonym>.pdf).  The daemon commits a result first and
 * draws its page after (seconds later), so a page older than the result is
 * the previous version's: it is waited for, never sent under the new
 * version's UIDs (which the PACS would keep for good).
 */
#include "en_send.h"

#include "en_deid.h"
#include "en_dicom.h"

#include "config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* Fields shorter in en_sr.h than in the store (origins, notes) are cut
 * on purpose: they are words for a reader, not keys. */
#define COPY(dst, src) copy((dst), sizeof(dst), (src))

static void copy(char *dst, size_t n, const char *src)
{
    size_t len = strnlen(src, n - 1);

    memcpy(dst, src, len);
    dst[len] = '\0';
}

static int used(const en_store_clip *c)
{
    return c->status == EN_STORE_DONE && !strcmp(c->r.verdict, "usable") && c->r.nbeats > 0;
}

static void add_model(en_sr_result *r, const char *role, const en_store_model *m)
{
    if (!m->sha256[0] || r->nmodels == EN_SR_MAX_MODELS)
        return;
    for (int i = 0; i < r->nmodels; i++)
        if (!strcmp(r->models[i].sha256, m->sha256) && !strcmp(r->models[i].role, role))
            return;
    en_sr_model *o = &r->models[r->nmodels++];
    COPY(o->role, role);
    COPY(o->name, m->architecture);
    COPY(o->sha256, m->sha256);
    COPY(o->origin, m->origin);
    if (strstr(m->origin, "phantom"))
        r->not_for_diagnosis = 1;
}

static void fill_result(const en_store_study *s, en_sr_result *r)
{
    memset(r, 0, sizeof *r);
    COPY(r->pseudonym, s->pseudonym);
    r->version = s->res.version;
    r->made_ms = s->res.computed_ms;
    r->ef = s->res.ef_mean;
    for (int i = 0; i < s->nclips; i++) {
        const en_store_clip *c = &s->clip[i];
        if (!used(c))
            continue;
        for (int b = 0; b < c->r.nbeats && r->nbeats < EN_SR_MAX_BEATS; b++) {
            r->beats[r->nbeats].ef = c->r.beats[b].ef;
            r->beats[r->nbeats].ed_frame = c->r.beats[b].ed_frame;
            r->beats[r->nbeats].es_frame = c->r.beats[b].systole_frame;
            r->nbeats++;
        }
        add_model(r, "segmentation", &c->r.seg_model);
        add_model(r, "ejection fraction", &c->r.ef_model);
    }
    snprintf(r->method, sizeof r->method, "DeepLabV3 segmentation finds the beats; "
             "R(2+1)D-18 predicts EF on each beat's clip; the study's EF is the mean over "
             "the %d beats of %d usable clip(s) of %d", s->res.beats, s->res.clips_usable,
             s->res.clips_total);
    COPY(r->algorithm_name, "echonetd EchoNet-Dynamic");
    COPY(r->algorithm_version, PACKAGE_VERSION);
    if (s->res.flags_text[0]) {
        COPY(r->notes, "Quality flags: ");
        copy(r->notes + strlen(r->notes), sizeof r->notes - strlen(r->notes),
             s->res.flags_text);
    }
}

static void fill_patient(const en_dicom_identity *id, en_sr_patient *pt)
{
    memset(pt, 0, sizeof *pt);
    COPY(pt->study_instance_uid, id->study_instance_uid);
    COPY(pt->patient_id, id->patient_id);
    COPY(pt->patient_name, id->patient_name);
    COPY(pt->accession_number, id->accession_number);
    COPY(pt->patient_birth_date, id->patient_birth_date);
    COPY(pt->study_date, id->study_date);
    COPY(pt->study_time, id->study_time);
}

/* 1: the page is there and drawn for this result (not before it). */
static int page_current(const char *pdf, int64_t computed_ms)
{
    struct stat sb;
    int64_t mtime_ms;

    if (stat(pdf, &sb) != 0)
        return 0;
    mtime_ms = (int64_t)sb.st_mtim.tv_sec * 1000 + sb.st_mtim.tv_nsec / 1000000;
    return mtime_ms >= computed_ms;
}

int en_send_build(const en_config *cfg, en_store *st, const char *pseudonym, int version,
                  int64_t now_ms, const char *dir, char paths[2][EN_PATH_MAX + 16],
                  int *nfiles, en_send_defer *defer, en_sr_uids *uids, en_err *err)
{
    static en_sr_result r;      /* large; echonetd-send builds one at a time */
    en_store_study s;
    en_sr_patient pt;
    en_dicom_identity id;
    char pdf[EN_PATH_MAX + 80], seed[96];
    int rc, with_pdf;

    *nfiles = 0;
    *defer = EN_SEND_READY;
    if (!cfg->keystore_file[0])
        return en_err_set(err, EN_EINVAL, "study %s: sending needs the key store ([deid] "
                          "keystore_file is not set)", pseudonym);
    memset(&s, 0, sizeof s);
    if ((rc = en_store_study_show(st, pseudonym, 0, &s, err)))
        return rc;
    if (s.res.version != version || s.stale) {
        *defer = EN_SEND_SUPERSEDED;
        rc = en_err_set(err, EN_ENOTFOUND, "study %s: result version %d is superseded "
                        "(current %d%s)", pseudonym, version, s.res.version,
                        s.stale ? ", being recomputed" : "");
        goto out;
    }
    if (isnan(s.res.ef_mean) || s.res.beats <= 0) {
        rc = en_err_set(err, EN_EINVAL, "study %s: result version %d has no EF to send (%s)",
                        pseudonym, version, s.res.no_ef_reason[0] ? s.res.no_ef_reason
                                                                  : "no usable beat");
        goto out;
    }
    snprintf(pdf, sizeof pdf, "%s/%s.pdf", cfg->output_dir, pseudonym);
    with_pdf = cfg->report_pdf && page_current(pdf, s.res.computed_ms);
    if (cfg->report_pdf && !with_pdf && now_ms - s.res.computed_ms < EN_SEND_REPORT_WAIT_MS) {
        *defer = EN_SEND_REPORT_PENDING;
        rc = en_err_set(err, EN_ENOTFOUND, "study %s: the report of result version %d is not "
                        "drawn yet", pseudonym, version);
        goto out;
    }
    fill_result(&s, &r);
    memset(&id, 0, sizeof id);
    if ((rc = en_deid_keystore_get(cfg->keystore_file, pseudonym, &id, err)))
        goto out;
    fill_patient(&id, &pt);
    snprintf(seed, sizeof seed, "%s/v%d", pseudonym, version);
    snprintf(paths[0], EN_PATH_MAX + 16, "%s/sr.dcm", dir);
    if ((rc = en_sr_uids_derive(seed, uids, err)) ||
        (rc = en_sr_write(&pt, &r, uids, paths[0], err)))
        goto out;
    *nfiles = 1;
    if (with_pdf) {
        snprintf(paths[1], EN_PATH_MAX + 16, "%s/pdf.dcm", dir);
        if ((rc = en_sr_write_pdf(&pt, &r, uids, pdf, paths[1], err)))
            goto out;
        *nfiles = 2;
    }
    rc = EN_OK;
out:
    memset(&id, 0, sizeof id);
    memset(&pt, 0, sizeof pt);
    en_store_study_free(&s);
    return rc;
}
