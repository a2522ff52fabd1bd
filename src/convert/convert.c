/*
 * convert.c - DICOM in, deidentified network-ready AVI out (see en_convert.h).
 *
 * The order matters for privacy: identifying attributes are consumed (for
 * the pseudonym and the optional key store) and wiped before any output is
 * written, and the only pixels that reach the AVI are those inside the
 * located fan, so burned-in names and dates never leave this function.
 */
#include "en_util.h"
#include "en_convert.h"

#include "en_frames.h"
#include "en_video.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The pseudonym keys on StudyInstanceUID (Type 1, so nearly always there);
 * a file without it still gets a stable pseudonym from its SOPInstanceUID
 * rather than being refused. */
static int make_pseudonym(const en_deid *deid, const en_dicom_identity *id,
                          en_convert_result *res, en_err *err)
{
    const char *key = id->study_instance_uid;

    if (!*key) {
        key = id->sop_instance_uid;
        if (res->info.nwarnings < EN_DICOM_MAX_WARNINGS)
            snprintf(res->info.warnings[res->info.nwarnings++], sizeof res->info.warnings[0],
                     "no StudyInstanceUID: pseudonym derived from SOPInstanceUID");
    }
    if (!*key)
        return en_err_set(err, EN_EFORMAT,
                          "neither StudyInstanceUID nor SOPInstanceUID is present, so no "
                          "stable pseudonym can be made; fix the file at its source");
    return en_deid_pseudonym(deid, key, res->pseudonym, err);
}

static int output_path(const en_config *cfg, const char *out_path,
                       en_convert_result *res, en_err *err)
{
    const char *dir = out_path ? out_path : cfg->output_dir;
    int n;

    if (out_path && !is_dir(out_path))
        n = snprintf(res->avi_path, sizeof res->avi_path, "%s", out_path);
    else if (!is_dir(dir))
        return en_err_set(err, EN_ENOTFOUND, "output folder %s does not exist: create it or set "
                          "[paths] output_dir", dir);
    else
        n = snprintf(res->avi_path, sizeof res->avi_path, "%s/%s.avi", dir, res->pseudonym);
    if (n < 0 || (size_t)n >= sizeof res->avi_path)
        return en_err_set(err, EN_EINVAL, "output path too long");
    return EN_OK;
}

/* The "sop:" prefix separates this key's domain from the pseudonyms', so a
 * StudyInstanceUID equal to some SOPInstanceUID cannot collide. */
static int make_dedup_key(const en_deid *deid, const en_dicom_identity *id,
                          en_convert_result *res, en_err *err)
{
    char buf[EN_DICOM_UID_MAX + 8];

    if (!*id->sop_instance_uid)
        return EN_OK;
    snprintf(buf, sizeof buf, "sop:%s", id->sop_instance_uid);
    return en_deid_pseudonym(deid, buf, res->dedup_key, err);
}

static int deidentify(const en_config *cfg, const en_deid *deid, en_dicom_identity *id,
                      en_convert_result *res, en_err *err)
{
    int rc = make_pseudonym(deid, id, res, err);

    if (rc == EN_OK)
        rc = make_dedup_key(deid, id, res, err);

    if (rc == EN_OK && cfg->keystore_file[0])
        rc = en_deid_keystore_put(cfg->keystore_file, res->pseudonym, id, err);
    /* Nothing downstream may see the identifiers. */
    memset(id, 0, sizeof *id);
    return rc;
}

int en_convert_file(const en_config *cfg, const en_deid *deid,
                    const char *in_path, const char *out_path,
                    en_convert_result *res, en_err *err)
{
    return en_convert_file_frames(cfg, deid, in_path, out_path, res, NULL, err);
}

int en_convert_file_frames(const en_config *cfg, const en_deid *deid,
                           const char *in_path, const char *out_path,
                           en_convert_result *res, en_frames *keep, en_err *err)
{
    en_dicom_identity id;
    en_dicom_limits lim;
    en_frames src = { 0 }, net = { 0 };
    double t0 = en_mono_ms(), t1, t2;
    int rc;

    memset(res, 0, sizeof *res);
    memset(&id, 0, sizeof id);
    if (keep)
        memset(keep, 0, sizeof *keep);
    /* The study's CPU budget, [nn] threads, also bounds its decoding threads. */
    lim = cfg->limits;
    lim.threads = cfg->nn_threads;
    rc = en_dicom_read(in_path, &lim, &res->info, &id, &src, err);
    if (rc == EN_ENOTIMAGE && (id.study_instance_uid[0] || id.sop_instance_uid[0])) {
        /* No pixels, but an instance of its study all the same: the
         * pseudonym lets the pipeline record it as a clip not analysed. */
        en_err cause = *err;
        if (deidentify(cfg, deid, &id, res, err) == EN_OK)
            *err = cause;
        memset(&id, 0, sizeof id);
        return EN_ENOTIMAGE;
    }
    if (rc != EN_OK)
        return rc;
    rc = deidentify(cfg, deid, &id, res, err);
    if (rc != EN_OK)
        goto out;
    t1 = en_mono_ms();
    res->ms_read = t1 - t0;

    rc = en_sector_locate(&src, &res->info, &res->sector, err);
    if (rc == EN_OK)
        rc = en_sector_frame(&src, &res->sector, cfg->video_size, &net, err);
    if (rc != EN_OK) {
        en_err_prefix(err, "%s: study %s", in_path, res->pseudonym);
        goto out;
    }
    en_frames_free(&src);
    t2 = en_mono_ms();
    res->ms_sector = t2 - t1;

    rc = output_path(cfg, out_path, res, err);
    if (rc == EN_OK)
        rc = en_video_write_avi(res->avi_path, &net, res->info.fps, cfg->video_quality, err);
    if (rc != EN_OK) {
        en_err_prefix(err, "study %s: video", res->pseudonym);
        goto out;
    }
    res->out_frames = net.nframes;
    res->out_size = net.rows;
    res->ms_write = en_mono_ms() - t2;
    if (keep) {
        *keep = net;
        memset(&net, 0, sizeof net);
    }
out:
    en_frames_free(&src);
    en_frames_free(&net);
    return rc;
}
