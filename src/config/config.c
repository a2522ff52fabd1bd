/*
 * config.c - echonetd.conf parsing with libinih (see en_config.h).
 *
 * A table maps each "section.key" to a typed setter, so the parser, the
 * command-line overrides and the documentation in etc/echonetd.conf all
 * speak about the same list of settings.
 */
#include "en_util.h"
#include "en_config.h"

#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef EN_LOCALSTATEDIR
#define EN_LOCALSTATEDIR "/var"
#endif

typedef enum { T_PATH, T_INT, T_U32, T_MB, T_BOOL } opt_type;

typedef struct opt {
    const char *section;
    const char *key;
    opt_type type;
    size_t offset;
    long long min, max;
} opt;

#define OFF(m) offsetof(en_config, m)
static const opt options[] = {
    { "paths", "output_dir", T_PATH, OFF(output_dir), 0, 0 },
    { "paths", "database", T_PATH, OFF(database), 0, 0 },
    { "deid", "secret_file", T_PATH, OFF(secret_file), 0, 0 },
    { "deid", "keystore_file", T_PATH, OFF(keystore_file), 0, 0 },
    { "limits", "max_frames", T_U32, OFF(limits.max_frames), 1, 100000 },
    { "limits", "max_rows", T_U32, OFF(limits.max_rows), 1, 65535 },
    { "limits", "max_cols", T_U32, OFF(limits.max_cols), 1, 65535 },
    { "limits", "max_file_mb", T_MB, OFF(limits.max_file_bytes), 1, 1 << 20 },
    { "limits", "max_pixel_mb", T_MB, OFF(limits.max_pixel_bytes), 1, 1 << 20 },
    { "video", "size", T_INT, OFF(video_size), 16, 1024 },
    { "video", "quality", T_INT, OFF(video_quality), 1, 31 },
    { "models", "segmentation", T_PATH, OFF(seg_weights), 0, 0 },
    { "models", "ef", T_PATH, OFF(ef_weights), 0, 0 },
    { "nn", "threads", T_INT, OFF(nn_threads), 0, 1024 },
    { "nn", "batch", T_INT, OFF(nn_batch), 1, 256 },
    { "report", "pdf", T_BOOL, OFF(report_pdf), 0, 1 },
    { "report", "png", T_BOOL, OFF(report_png), 0, 1 },
    { "report", "overlay_video", T_BOOL, OFF(overlay_video), 0, 1 },
    { "daemon", "inbox", T_PATH, OFF(inbox_dir), 0, 0 },
    { "daemon", "work", T_PATH, OFF(work_dir), 0, 0 },
    { "daemon", "archive", T_PATH, OFF(archive_dir), 0, 0 },
    { "daemon", "failed", T_PATH, OFF(failed_dir), 0, 0 },
    { "daemon", "concurrency", T_INT, OFF(concurrency), 0, 256 },
    { "daemon", "settle_ms", T_INT, OFF(settle_ms), 0, 3600000 },
    { "daemon", "rescan_ms", T_INT, OFF(rescan_ms), 100, 3600000 },
    { "daemon", "incomplete_wait_s", T_INT, OFF(incomplete_wait_s), 0, 604800 },
    { "daemon", "max_attempts", T_INT, OFF(max_attempts), 1, 100 },
    { "daemon", "study_timeout_s", T_INT, OFF(study_timeout_s), 1, 86400 },
    { "daemon", "stop_grace_s", T_INT, OFF(stop_grace_s), 0, 3600 },
    { "daemon", "min_free_mb", T_INT, OFF(min_free_mb), 0, 1 << 30 },
    { "daemon", "queue_max", T_INT, OFF(queue_max), 1, 1000000 },
    { "daemon", "delete_after_success", T_BOOL, OFF(delete_after_success), 0, 1 },
};
#undef OFF

/* Every default path lives under the configured state folder. */
#define STATE_PATH(field, rel) \
    snprintf(cfg->field, sizeof cfg->field, "%s/%s", EN_LOCALSTATEDIR, rel)

void en_config_default_model(const char *file, char *buf, size_t n)
{
    snprintf(buf, n, "%s/models/%s", EN_PKGDATADIR, file);
#ifdef EN_SRCDIR
    /* Run from a build tree before `make install`: the source copy. */
    if (access(buf, R_OK) != 0) {
        char src[EN_PATH_MAX];
        snprintf(src, sizeof src, "%s/models/%s", EN_SRCDIR, file);
        if (access(src, R_OK) == 0)
            snprintf(buf, n, "%s", src);
    }
#endif
}

void en_config_defaults(en_config *cfg)
{
    /* Zero is the default of everything not set below (nn threads and
     * daemon concurrency: sized for the machine; no key store; archive
     * rather than delete). */
    memset(cfg, 0, sizeof *cfg);
    STATE_PATH(output_dir, "lib/echonetd/output");
    STATE_PATH(secret_file, "lib/echonetd/site-secret");
    STATE_PATH(database, "lib/echonetd/results.db");
    STATE_PATH(inbox_dir, "spool/echonetd/inbox");
    STATE_PATH(work_dir, "spool/echonetd/work");
    STATE_PATH(archive_dir, "spool/echonetd/archive");
    STATE_PATH(failed_dir, "spool/echonetd/failed");
    en_dicom_limits_default(&cfg->limits);
    en_config_default_model(EN_DEFAULT_SEG_MODEL, cfg->seg_weights, sizeof cfg->seg_weights);
    en_config_default_model(EN_DEFAULT_EF_MODEL, cfg->ef_weights, sizeof cfg->ef_weights);
    cfg->video_size = 112;
    cfg->video_quality = 2;
    cfg->nn_batch = 8;
    cfg->report_pdf = 1;
    cfg->report_png = 1;
    cfg->settle_ms = 2000;
    cfg->rescan_ms = 5000;
    cfg->incomplete_wait_s = 600;
    cfg->max_attempts = 3;
    cfg->study_timeout_s = 900;
    cfg->stop_grace_s = 60;
    cfg->min_free_mb = 512;
    cfg->queue_max = 256;
}
#undef STATE_PATH

static const opt *find_opt(const char *section, const char *key)
{
    for (size_t i = 0; i < sizeof options / sizeof options[0]; i++)
        if (strcmp(options[i].section, section) == 0 && strcmp(options[i].key, key) == 0)
            return &options[i];
    return NULL;
}

int en_config_set(en_config *cfg, const char *section, const char *key,
                  const char *value, en_err *err)
{
    const opt *o = find_opt(section, key);
    char *base = (char *)cfg;
    long long v;

    if (!o)
        return en_err_set(err, EN_EINVAL, "unknown setting [%s] %s", section, key);
    if (o->type == T_PATH) {
        if (strlen(value) >= EN_PATH_MAX)
            return en_err_set(err, EN_EINVAL, "[%s] %s: path longer than %d characters",
                              section, key, EN_PATH_MAX - 1);
        strcpy(base + o->offset, value);
        return EN_OK;
    }
    if (o->type == T_BOOL) {
        if (!strcmp(value, "yes") || !strcmp(value, "true") || !strcmp(value, "1"))
            v = 1;
        else if (!strcmp(value, "no") || !strcmp(value, "false") || !strcmp(value, "0"))
            v = 0;
        else
            return en_err_set(err, EN_EINVAL, "[%s] %s = '%s': expected yes or no", section, key, value);
        *(int *)(base + o->offset) = (int)v;
        return EN_OK;
    }
    if (en_parse_ll(value, o->min, o->max, &v) != EN_OK)
        return en_err_set(err, EN_EINVAL, "[%s] %s = '%s': expected a whole number from %lld to %lld",
                          section, key, value, o->min, o->max);
    switch (o->type) {
    case T_INT: *(int *)(base + o->offset) = (int)v; break;
    case T_U32: *(uint32_t *)(base + o->offset) = (uint32_t)v; break;
    case T_MB: *(uint64_t *)(base + o->offset) = (uint64_t)v << 20; break;
    case T_PATH: case T_BOOL: break;
    }
    return EN_OK;
}

typedef struct load_ctx {
    en_config *cfg;
    en_err *err;
    int failed;
} load_ctx;

static int on_entry(void *user, const char *section, const char *key, const char *value)
{
    load_ctx *ctx = user;

    if (ctx->failed)
        return 0;
    if (en_config_set(ctx->cfg, section, key, value, ctx->err) != EN_OK) {
        ctx->failed = 1;
        return 0;
    }
    return 1;
}

int en_config_load(en_config *cfg, const char *path, en_err *err)
{
    load_ctx ctx = { cfg, err, 0 };
    int line = ini_parse(path, on_entry, &ctx);

    if (line == -1)
        return en_err_set(err, EN_EIO, "cannot open configuration %s: %s", path, strerror(errno));
    if (line == -2)
        return en_err_set(err, EN_ENOMEM, "out of memory reading configuration %s", path);
    if (line > 0 && ctx.failed)
        return en_err_prefix(err, "%s:%d", path, line);
    if (line > 0)
        return en_err_set(err, EN_EINVAL, "%s:%d: syntax error (expected [section] or key = value)",
                          path, line);
    return EN_OK;
}
