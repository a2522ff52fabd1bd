/*
 * config.c - echonetd.conf: the settings table, parsing with libinih,
 * defaults, and what a reload may change (see en_config.h).
 *
 * Every setting is one row of the table below, as redis's config.c declares
 * its own: section and key, the field it fills, type and bounds, the default
 * written as it would be in the file, and when a change reaches a running
 * daemon.  The parser, the defaults, --set, the daemon's SIGHUP comparison
 * and test-config (which holds etc/echonetd.conf to the table) all read it,
 * so adding a setting is adding a row.
 */
#include "en_util.h"
#include "en_config.h"

#include <assert.h>
#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef EN_LOCALSTATEDIR
#define EN_LOCALSTATEDIR "/var"
#endif

static const char *const precision_names[] = { "auto", "fp32", "bf16", NULL };

#define OFF(m) offsetof(en_config, m)
#define ROW(s, k, t, m, lo, hi, names, def, rl) \
    { s, k, EN_CONF_##t, OFF(m), lo, hi, names, def, EN_RELOAD_##rl }
#define PATH(s, k, m, def, rl) ROW(s, k, PATH, m, 0, 0, NULL, def, rl)
#define INT(s, k, m, lo, hi, def, rl) ROW(s, k, INT, m, lo, hi, NULL, def, rl)
#define U32(s, k, m, lo, hi, def, rl) ROW(s, k, U32, m, lo, hi, NULL, def, rl)
#define MB(s, k, m, lo, hi, def, rl) ROW(s, k, MB, m, lo, hi, NULL, def, rl)
#define BOOL(s, k, m, def, rl) ROW(s, k, BOOL, m, 0, 1, NULL, def, rl)
#define ENUM(s, k, m, names, def, rl) ROW(s, k, ENUM, m, 0, 0, names, def, rl)

/* Reload: each study runs in a new process that reads the file, so study
 * settings apply to the next study; the daemon reads [daemon] as it runs;
 * what the daemon opens to prove it works (models, secret, database) is
 * opened again before a reload is accepted.  The spool folders wait for a
 * restart: claimed files live in the running work folder under names only
 * the running daemon knows, and files move between the four by rename. */
static const en_config_row rows[] = {
    PATH("paths", "output_dir", output_dir, "@state/output", NOW),
    PATH("paths", "database", database, "@state/results.db", CHECKED),
    PATH("deid", "secret_file", secret_file, "@state/site-secret", CHECKED),
    PATH("deid", "keystore_file", keystore_file, "", STUDY),
    U32("limits", "max_frames", limits.max_frames, 1, 100000, "2000", STUDY),
    U32("limits", "max_rows", limits.max_rows, 1, 65535, "2048", STUDY),
    U32("limits", "max_cols", limits.max_cols, 1, 65535, "2048", STUDY),
    MB("limits", "max_file_mb", limits.max_file_bytes, 1, 1 << 20, "2048", STUDY),
    MB("limits", "max_pixel_mb", limits.max_pixel_bytes, 1, 1 << 20, "1024", STUDY),
    INT("video", "size", video_size, 16, 1024, "112", STUDY),
    INT("video", "quality", video_quality, 1, 31, "2", STUDY),
    PATH("models", "segmentation", seg_weights, "@models/" EN_DEFAULT_SEG_MODEL, CHECKED),
    PATH("models", "ef", ef_weights, "@models/" EN_DEFAULT_EF_MODEL, CHECKED),
    INT("nn", "threads", nn_threads, 0, 1024, "0", STUDY),
    INT("nn", "batch", nn_batch, 1, 256, "8", STUDY),
    /* Checked: the daemon loads the models with it, so a precision the
     * engine refuses on this machine is refused at reload, not per study. */
    ENUM("nn", "precision", nn_precision, precision_names, "auto", CHECKED),
    BOOL("report", "pdf", report_pdf, "yes", STUDY),
    BOOL("report", "png", report_png, "yes", STUDY),
    BOOL("report", "overlay_video", overlay_video, "no", STUDY),
    INT("analysis", "clip_disagreement_points", clip_disagreement_points, 0, 100, "10", STUDY),
    PATH("daemon", "inbox", inbox_dir, "@spool/inbox", RESTART),
    PATH("daemon", "work", work_dir, "@spool/work", RESTART),
    PATH("daemon", "archive", archive_dir, "@spool/archive", RESTART),
    PATH("daemon", "failed", failed_dir, "@spool/failed", RESTART),
    INT("daemon", "concurrency", concurrency, 0, 256, "0", NOW),
    INT("daemon", "settle_ms", settle_ms, 0, 3600000, "2000", NOW),
    INT("daemon", "rescan_ms", rescan_ms, 100, 3600000, "5000", NOW),
    INT("daemon", "incomplete_wait_s", incomplete_wait_s, 0, 604800, "600", NOW),
    INT("daemon", "max_attempts", max_attempts, 1, 100, "3", NOW),
    INT("daemon", "study_timeout_s", study_timeout_s, 1, 86400, "900", NOW),
    INT("daemon", "study_quiet_s", study_quiet_s, 0, 86400, "300", NOW),
    INT("daemon", "stop_grace_s", stop_grace_s, 0, 3600, "60", NOW),
    INT("daemon", "min_free_mb", min_free_mb, 0, 1 << 30, "512", NOW),
    INT("daemon", "queue_max", queue_max, 1, 1000000, "256", NOW),
    BOOL("daemon", "delete_after_success", delete_after_success, "no", NOW),
    BOOL("daemon", "warm_models", warm_models, "yes", NOW),
    /* Read by echonetd-recv only (the daemon ignores them).  Its SIGHUP
     * applies the allow-list and limits ("now") to new associations; the
     * listening socket, its folders and TLS wait for a restart.  AE titles
     * are short strings stored like paths; the receiver checks them. */
    PATH("recv", "ae_title", recv_ae_title, "ECHONETD", RESTART),
    INT("recv", "port", recv_port, 1, 65535, "11112", RESTART),
    PATH("recv", "allow", recv_allow, "", NOW),
    PATH("recv", "staging", recv_staging, "@spool/incoming", RESTART),
    INT("recv", "max_associations", recv_max_associations, 1, 256, "8", NOW),
    INT("recv", "timeout_s", recv_timeout_s, 1, 3600, "60", RESTART),
    INT("recv", "max_association_s", recv_max_association_s, 1, 86400, "3600", NOW),
    MB("recv", "max_association_mb", recv_max_association_bytes, 1, 1 << 24, "16384", NOW),
    MB("recv", "min_free_mb", recv_min_free_bytes, 0, 1 << 24, "1024", NOW),
    INT("recv", "stop_grace_s", recv_stop_grace_s, 0, 3600, "30", NOW),
    BOOL("recv", "tls", recv_tls, "no", RESTART),
    PATH("recv", "tls_certificate", recv_tls_certificate, "", RESTART),
    PATH("recv", "tls_private_key", recv_tls_private_key, "", RESTART),
    PATH("recv", "tls_trusted", recv_tls_trusted, "", RESTART),
    BOOL("recv", "tls_verify_peer", recv_tls_verify_peer, "yes", RESTART),
    /* Read by echonetd-send and echonetctl send only; echonetd-send reads
     * the file again at each SIGHUP but keeps its outbox open. */
    BOOL("send", "enabled", send_enabled, "no", NOW),
    PATH("send", "ae_title", send_ae_title, "ECHONETD", NOW),
    PATH("send", "peer_ae_title", send_peer_ae_title, "", NOW),
    PATH("send", "peer_host", send_peer_host, "", NOW),
    INT("send", "peer_port", send_peer_port, 1, 65535, "104", NOW),
    PATH("send", "outbox", send_outbox, "@state/outbox/outbox.db", RESTART),
    INT("send", "timeout_s", send_timeout_s, 1, 3600, "30", NOW),
    INT("send", "backoff_min_s", send_backoff_min_s, 1, 86400, "30", NOW),
    INT("send", "backoff_max_s", send_backoff_max_s, 1, 604800, "3600", NOW),
    INT("send", "give_up_after_s", send_give_up_after_s, 1, 31536000, "259200", NOW),
    INT("send", "poll_s", send_poll_s, 1, 3600, "10", NOW),
};
#undef PATH
#undef INT
#undef U32
#undef MB
#undef BOOL
#undef ENUM
#undef ROW
#undef OFF

#define NROWS (sizeof rows / sizeof rows[0])

const en_config_row *en_config_rows(size_t *n)
{
    *n = NROWS;
    return rows;
}

const char *en_config_reload_text(en_config_reload r)
{
    switch (r) {
    case EN_RELOAD_STUDY: return "applies to the next study";
    case EN_RELOAD_NOW: return "applies now";
    case EN_RELOAD_CHECKED: return "checked, applies now";
    case EN_RELOAD_RESTART: return "applies at the next start";
    }
    return "?";
}

void en_config_system_dirs(en_config_dirs *dirs)
{
    dirs->state = EN_LOCALSTATEDIR "/lib/echonetd";
    dirs->spool = EN_LOCALSTATEDIR "/spool/echonetd";
    dirs->models = NULL;
}

int en_config_user_state_dir(char *buf, size_t n, en_err *err)
{
    const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
    int len;

    /* The XDG base directory spec: a relative value is invalid, ignore it. */
    if (xdg && xdg[0] == '/')
        len = snprintf(buf, n, "%s/echonetd", xdg);
    else if (home && home[0] == '/')
        len = snprintf(buf, n, "%s/.local/state/echonetd", home);
    else
        return en_err_set(err, EN_ENOTFOUND, "no folder for your own site secret and results: "
                          "neither XDG_STATE_HOME nor HOME is an absolute path (set one, or give "
                          "a configuration with -c FILE)");
    if (len < 0 || (size_t)len >= n)
        return en_err_set(err, EN_EINVAL, "per-user state folder is longer than %zu characters "
                          "(XDG_STATE_HOME or HOME)", n - 1);
    return EN_OK;
}

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

/* A row's default with its folder prefix filled in. */
static void expand_default(const en_config_row *r, const en_config_dirs *dirs, char *buf, size_t n)
{
    if (!strncmp(r->def, "@state/", 7))
        snprintf(buf, n, "%s/%s", dirs->state, r->def + 7);
    else if (!strncmp(r->def, "@spool/", 7))
        snprintf(buf, n, "%s/%s", dirs->spool, r->def + 7);
    else if (!strncmp(r->def, "@models/", 8) && dirs->models)
        snprintf(buf, n, "%s/%s", dirs->models, r->def + 8);
    else if (!strncmp(r->def, "@models/", 8))
        en_config_default_model(r->def + 8, buf, n);
    else
        snprintf(buf, n, "%s", r->def);
}

static int set_row(en_config *cfg, const en_config_row *r, const char *value, en_err *err);

void en_config_defaults_in(en_config *cfg, const en_config_dirs *dirs)
{
    char value[EN_PATH_MAX];

    memset(cfg, 0, sizeof *cfg);
    /* A limit the DICOM reader has and no row names yet keeps the reader's
     * own default; the rows then set theirs (test-config checks both agree). */
    en_dicom_limits_default(&cfg->limits);
    for (size_t i = 0; i < NROWS; i++) {
        int rc;
        expand_default(&rows[i], dirs, value, sizeof value);
        rc = set_row(cfg, &rows[i], value, NULL);
        assert(rc == EN_OK);
        (void)rc;
    }
}

void en_config_defaults(en_config *cfg)
{
    en_config_dirs dirs;

    en_config_system_dirs(&dirs);
    en_config_defaults_in(cfg, &dirs);
}

static const en_config_row *find_row(const char *section, const char *key)
{
    for (size_t i = 0; i < NROWS; i++)
        if (strcmp(rows[i].section, section) == 0 && strcmp(rows[i].key, key) == 0)
            return &rows[i];
    return NULL;
}

static int set_enum(int *field, const en_config_row *r, const char *value, en_err *err)
{
    char words[128];
    size_t used = 0;

    for (int i = 0; r->names[i]; i++) {
        if (!strcmp(value, r->names[i])) {
            *field = i;
            return EN_OK;
        }
        used += (size_t)snprintf(words + used, sizeof words - used, "%s%s", i ? ", " : "",
                                 r->names[i]);
        if (used >= sizeof words)
            used = sizeof words - 1;
    }
    return en_err_set(err, EN_EINVAL, "[%s] %s = '%s': expected one of %s", r->section, r->key,
                      value, words);
}

static int set_row(en_config *cfg, const en_config_row *r, const char *value, en_err *err)
{
    char *field = (char *)cfg + r->offset;
    long long v;

    switch (r->type) {
    case EN_CONF_PATH:
        if (strlen(value) >= EN_PATH_MAX)
            return en_err_set(err, EN_EINVAL, "[%s] %s: path longer than %d characters",
                              r->section, r->key, EN_PATH_MAX - 1);
        strcpy(field, value);
        return EN_OK;
    case EN_CONF_BOOL:
        if (!strcmp(value, "yes") || !strcmp(value, "true") || !strcmp(value, "1"))
            *(int *)field = 1;
        else if (!strcmp(value, "no") || !strcmp(value, "false") || !strcmp(value, "0"))
            *(int *)field = 0;
        else
            return en_err_set(err, EN_EINVAL, "[%s] %s = '%s': expected yes or no",
                              r->section, r->key, value);
        return EN_OK;
    case EN_CONF_ENUM:
        return set_enum((int *)field, r, value, err);
    case EN_CONF_INT:
    case EN_CONF_U32:
    case EN_CONF_MB:
        break;
    }
    if (en_parse_ll(value, r->min, r->max, &v) != EN_OK)
        return en_err_set(err, EN_EINVAL, "[%s] %s = '%s': expected a whole number from %lld "
                          "to %lld", r->section, r->key, value, r->min, r->max);
    if (r->type == EN_CONF_INT)
        *(int *)field = (int)v;
    else if (r->type == EN_CONF_U32)
        *(uint32_t *)field = (uint32_t)v;
    else
        *(uint64_t *)field = (uint64_t)v << 20;
    return EN_OK;
}

int en_config_set(en_config *cfg, const char *section, const char *key,
                  const char *value, en_err *err)
{
    const en_config_row *r = find_row(section, key);

    if (!r)
        return en_err_set(err, EN_EINVAL, "unknown setting [%s] %s", section, key);
    return set_row(cfg, r, value, err);
}

void en_config_format(const en_config *cfg, const en_config_row *r, char *buf, size_t n)
{
    const char *field = (const char *)cfg + r->offset;
    int iv;

    switch (r->type) {
    case EN_CONF_PATH:
        snprintf(buf, n, "%s", field);
        return;
    case EN_CONF_INT:
        memcpy(&iv, field, sizeof iv);
        snprintf(buf, n, "%d", iv);
        return;
    case EN_CONF_U32: {
        uint32_t u;
        memcpy(&u, field, sizeof u);
        snprintf(buf, n, "%" PRIu32, u);
        return;
    }
    case EN_CONF_MB: {
        uint64_t b;
        memcpy(&b, field, sizeof b);
        snprintf(buf, n, "%" PRIu64, b >> 20);
        return;
    }
    case EN_CONF_BOOL:
        memcpy(&iv, field, sizeof iv);
        snprintf(buf, n, "%s", iv ? "yes" : "no");
        return;
    case EN_CONF_ENUM:
        memcpy(&iv, field, sizeof iv);
        snprintf(buf, n, "%s", r->names[iv]);
        return;
    }
}

static size_t field_size(const en_config_row *r)
{
    switch (r->type) {
    case EN_CONF_PATH: return EN_PATH_MAX;
    case EN_CONF_U32: return sizeof(uint32_t);
    case EN_CONF_MB: return sizeof(uint64_t);
    case EN_CONF_INT: case EN_CONF_BOOL: case EN_CONF_ENUM: break;
    }
    return sizeof(int);
}

static int row_differs(const en_config *a, const en_config *b, const en_config_row *r)
{
    const char *fa = (const char *)a + r->offset, *fb = (const char *)b + r->offset;

    /* Bytes after a path's terminator are whatever a longer value left. */
    if (r->type == EN_CONF_PATH)
        return strcmp(fa, fb) != 0;
    return memcmp(fa, fb, field_size(r)) != 0;
}

void en_config_diff(const en_config *old, const en_config *nw,
                    void (*fn)(const en_config_change *c, void *user), void *user)
{
    char ov[EN_PATH_MAX], nv[EN_PATH_MAX];

    for (size_t i = 0; i < NROWS; i++) {
        en_config_change c = { &rows[i], ov, nv };
        if (!row_differs(old, nw, &rows[i]))
            continue;
        en_config_format(old, &rows[i], ov, sizeof ov);
        en_config_format(nw, &rows[i], nv, sizeof nv);
        fn(&c, user);
    }
}

unsigned en_config_reload_check(const en_config *running, en_config *nw, char *msg, size_t n)
{
    char ov[EN_PATH_MAX], nv[EN_PATH_MAX];
    size_t used = 0;
    unsigned changed = 0;

    if (n > 0)
        msg[0] = '\0';
    for (size_t i = 0; i < NROWS; i++) {
        const en_config_row *r = &rows[i];
        int len;

        if (!row_differs(running, nw, r))
            continue;
        if (r->reload != EN_RELOAD_RESTART) {
            changed |= EN_RELOAD_BIT(r->reload);
            continue;
        }
        en_config_format(running, r, ov, sizeof ov);
        en_config_format(nw, r, nv, sizeof nv);
        if (used < n) {
            len = snprintf(msg + used, n - used, "%s[%s] %s %s -> %s", used ? "; " : "",
                           r->section, r->key, ov, nv);
            used = len < 0 ? n : used + (size_t)len;
        }
        memcpy((char *)nw + r->offset, (const char *)running + r->offset, field_size(r));
    }
    return changed;
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
