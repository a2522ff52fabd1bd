/*
 * model.c - the engine's public API (en_nn.h): loading a weights file into
 * one of the two networks, its metadata, and running frames or clips
 * through it with bounded memory.
 *
 * Loading checks the file completely (structure, every tensor, the content
 * hash), folds BatchNorm into private copies of the weights and unmaps the
 * file, so a loaded model holds only the weights it uses.
 */
#include "en_util.h"
#include "nn_int.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NN_DEFAULT_BATCH 8

struct en_nn_model {
    en_nn_info info;
    char **meta_keys, **meta_vals;
    size_t nmeta;
    nn_pool *pool;
    nn_deeplab *seg;
    nn_r2p1d *ef;
    int threads_asked;
    nn_tensor in;      /* the batch in engine layout */
    float *norm;       /* normalised 8-bit frames, one batch or one clip */
    size_t norm_n;
};

/* "a,b,c" -> three finite floats. */
static int parse3(const char *s, float v[3])
{
    char *end;
    for (int i = 0; i < 3; i++) {
        errno = 0;
        double d = strtod(s, &end);
        if (end == s || errno || !isfinite(d))
            return -1;
        v[i] = (float)d;
        s = end;
        while (*s == ' ')
            s++;
        if (i < 2) {
            if (*s != ',')
                return -1;
            s++;
        }
    }
    return *s == '\0' ? 0 : -1;
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    long long v;
    if (en_parse_ll(s, lo, hi, &v) != EN_OK)
        return EN_EINVAL;
    *out = (int)v;
    return EN_OK;
}

static int read_metadata(en_nn_model *m, const char *path, en_err *err)
{
    const char *arch = en_nn_model_meta(m, "architecture");
    const char *mean = en_nn_model_meta(m, "input_mean");
    const char *std = en_nn_model_meta(m, "input_std");
    const char *frames = en_nn_model_meta(m, "clip_frames");
    const char *period = en_nn_model_meta(m, "clip_period");

    if (!arch)
        return en_err_set(err, EN_EFORMAT, "weights file %s: no 'architecture' in the metadata: "
                          "convert it with tools/convert-weights", path);
    if (strcmp(arch, "deeplabv3_resnet50") == 0) {
        m->info.arch = EN_NN_ARCH_DEEPLABV3_RESNET50;
        m->info.arch_name = "deeplabv3_resnet50";
    } else if (strcmp(arch, "r2plus1d_18") == 0) {
        m->info.arch = EN_NN_ARCH_R2PLUS1D_18;
        m->info.arch_name = "r2plus1d_18";
    } else {
        return en_err_set(err, EN_EUNSUPPORTED, "weights file %s: architecture '%.64s' is not "
                          "one the engine runs (deeplabv3_resnet50, r2plus1d_18)", path, arch);
    }
    if (!mean || !std || parse3(mean, m->info.mean) || parse3(std, m->info.std))
        return en_err_set(err, EN_EFORMAT, "weights file %s: metadata input_mean/input_std must "
                          "be three comma-separated numbers", path);
    for (int c = 0; c < 3; c++)
        if (!(m->info.std[c] > 0.0f))
            return en_err_set(err, EN_EFORMAT, "weights file %s: input_std must be positive", path);
    m->info.clip_frames = m->info.clip_period = 1;
    if (m->info.arch == EN_NN_ARCH_R2PLUS1D_18 &&
        (!frames || !period || parse_int(frames, 1, 4096, &m->info.clip_frames) ||
         parse_int(period, 1, 64, &m->info.clip_period)))
        return en_err_set(err, EN_EFORMAT, "weights file %s: metadata clip_frames/clip_period "
                          "missing or invalid", path);
    m->info.origin = en_nn_model_meta(m, "origin");
    if (!m->info.origin)
        m->info.origin = "unknown";
    m->info.sha256 = en_nn_model_meta(m, "content_sha256");
    return EN_OK;
}

int en_nn_prec_parse(const char *s, en_nn_prec *out)
{
    static const char *const names[] = { "auto", "fp32", "bf16" };
    for (int i = 0; i < 3; i++)
        if (s && strcmp(s, names[i]) == 0) {
            *out = (en_nn_prec)i;
            return EN_OK;
        }
    return EN_EINVAL;
}

const char *en_nn_prec_name(en_nn_prec p)
{
    return p == EN_NN_PREC_FP32 ? "fp32" : p == EN_NN_PREC_BF16 ? "bf16" : "auto";
}

int en_nn_model_load(const char *path, en_nn_model **out, en_err *err)
{
    return en_nn_model_load_opts(path, NULL, out, err);
}

typedef struct hash_job {
    const nn_st *st;
    char hex[65];
    en_err err;
    int rc;
} hash_job;

static void *hash_main(void *arg)
{
    hash_job *h = arg;
    h->rc = nn_st_sha256(h->st, h->hex, &h->err);
    return NULL;
}

int en_nn_model_load_opts(const char *path, const en_nn_opts *opts,
                          en_nn_model **out, en_err *err)
{
    en_nn_opts o;
    en_nn_model *m;
    nn_st st;
    nn_kern kern;
    hash_job hash;
    pthread_t hash_thread;
    int rc, hashing = 0;

    *out = NULL;
    memset(&o, 0, sizeof o);
    if (opts)
        o = *opts;
    if (o.threads < 0 || o.threads > 1024 || o.batch < 0 || o.batch > 4096)
        return en_err_set(err, EN_EINVAL, "nn: threads must be 0..1024 and batch 0..4096");
    if ((rc = nn_kern_choose(o.precision, &kern, err)) != EN_OK)
        return en_err_prefix(err, "weights file %s", path);
    if ((rc = nn_st_open(path, &st, err)) != EN_OK)
        return rc;
    st.kern = kern;
    if (!(m = calloc(1, sizeof *m))) {
        nn_st_close(&st);
        return en_err_set(err, EN_ENOMEM, "out of memory");
    }
    /* take over the metadata strings: they outlive the mapping */
    m->meta_keys = st.meta_keys;
    m->meta_vals = st.meta_vals;
    m->nmeta = st.nmeta;
    st.meta_keys = st.meta_vals = NULL;
    st.nmeta = 0;

    if ((rc = read_metadata(m, path, err)) != EN_OK)
        goto fail;
    if (!o.skip_hash && !m->info.sha256) {
        rc = en_err_set(err, EN_EFORMAT, "weights file %s: no content_sha256 in the metadata "
                        "(convert it with tools/convert-weights)", path);
        goto fail;
    }
    /* The hash reads the whole file while the build folds and packs it:
     * one pass each, on two cores (about 0.15 s of a full-size load). */
    memset(&hash, 0, sizeof hash);
    hash.st = &st;
    if (!o.skip_hash && !(hashing = pthread_create(&hash_thread, NULL, hash_main, &hash) == 0))
        hash_main(&hash);
    if (m->info.arch == EN_NN_ARCH_DEEPLABV3_RESNET50)
        rc = nn_deeplab_build(&st, &m->seg, err);
    else
        rc = nn_r2p1d_build(&st, &m->ef, err);
    if (rc == EN_OK)
        rc = nn_st_check_all_used(&st, err);
    if (hashing)
        pthread_join(hash_thread, NULL);    /* before the mapping goes */
    /* A corrupted file says so first, whatever the build made of it. */
    if (!o.skip_hash) {
        if (hash.rc != EN_OK) {
            *err = hash.err;
            rc = hash.rc;
        } else if (strcmp(hash.hex, m->info.sha256) != 0) {
            rc = en_err_set(err, EN_EFORMAT, "weights file %s: content hash mismatch (file "
                            "%.16s..., data %.16s...): the file is corrupted; copy or convert "
                            "it again", path, m->info.sha256, hash.hex);
        } else {
            m->info.hash_verified = 1;
        }
    }
    if (rc != EN_OK)
        goto fail;
    for (size_t i = 0; i < st.nt; i++)
        m->info.nparams += st.t[i].numel;
    nn_st_close(&st);

    /* One threading mechanism: our pool; OpenBLAS stays single-threaded. */
    openblas_set_num_threads(1);
    m->info.blas_core = openblas_get_corename();
    m->info.precision = kern == NN_KERN_FP32 ? EN_NN_PREC_FP32 : EN_NN_PREC_BF16;
    m->info.kernel = nn_kern_name(kern);
    m->info.threads = o.threads ? o.threads : en_cpu_count();
    m->info.batch = o.batch ? o.batch : NN_DEFAULT_BATCH;
    if ((rc = nn_pool_create(m->info.threads, &m->pool, err)) != EN_OK) {
        en_nn_model_free(m);
        return rc;
    }
    m->threads_asked = m->info.threads;
    m->info.threads = nn_pool_size(m->pool);
    *out = m;
    return EN_OK;
fail:
    nn_st_close(&st);
    en_nn_model_free(m);
    return rc;
}

void en_nn_model_free(en_nn_model *m)
{
    if (!m)
        return;
    nn_deeplab_free(m->seg);
    nn_r2p1d_free(m->ef);
    if (nn_pool_forked(m->pool))
        nn_pool_abandon(m->pool);
    else
        nn_pool_free(m->pool);
    nn_tensor_free(&m->in);
    free(m->norm);
    for (size_t i = 0; i < m->nmeta; i++) {
        free(m->meta_keys[i]);
        free(m->meta_vals[i]);
    }
    free(m->meta_keys);
    free(m->meta_vals);
    free(m);
}

void en_nn_model_trim(en_nn_model *m)
{
    if (!m)
        return;
    if (m->seg)
        nn_deeplab_trim(m->seg);
    if (m->ef)
        nn_r2p1d_trim(m->ef);
    /* A pool inherited over fork() is replaced, buffers and all, at the
     * next call (own_pool). */
    if (!nn_pool_forked(m->pool))
        nn_pool_trim(m->pool);
    nn_tensor_free(&m->in);
    free(m->norm);
    m->norm = NULL;
    m->norm_n = 0;
}

const en_nn_info *en_nn_model_info(const en_nn_model *m)
{
    return &m->info;
}

const char *en_nn_model_meta(const en_nn_model *m, const char *key)
{
    for (size_t i = 0; i < m->nmeta; i++)
        if (strcmp(m->meta_keys[i], key) == 0)
            return m->meta_vals[i];
    return NULL;
}

/* A model loaded before fork() runs in the child with a pool of its own
 * (the parent's threads did not come along). */
static int own_pool(en_nn_model *m, en_err *err)
{
    nn_pool *p;
    int rc;

    if (!nn_pool_forked(m->pool))
        return EN_OK;
    if ((rc = nn_pool_create(m->threads_asked, &p, err)) != EN_OK)
        return rc;
    nn_pool_abandon(m->pool);
    m->pool = p;
    m->info.threads = nn_pool_size(p);
    return EN_OK;
}

static int check_size(int h, int w, int min, en_err *err)
{
    if (h < min || w < min || h > 4096 || w > 4096)
        return en_err_set(err, EN_EINVAL, "nn: frame size %dx%d outside %d..4096", h, w, min);
    return EN_OK;
}

int en_nn_segment(en_nn_model *m, const float *frames, size_t n, int h, int w,
                  float *logits, en_err *err)
{
    const size_t plane = (size_t)h * (size_t)w;
    int rc;

    if (!m->seg)
        return en_err_set(err, EN_EINVAL, "nn: %s weights cannot segment", m->info.arch_name);
    if ((rc = check_size(h, w, 32, err)) != EN_OK || (rc = own_pool(m, err)) != EN_OK)
        return rc;
    for (size_t i = 0; i < n; i += (size_t)m->info.batch) {
        size_t nb = n - i < (size_t)m->info.batch ? n - i : (size_t)m->info.batch;
        if ((rc = nn_from_batch_major(frames + i * 3 * plane, (int64_t)nb, 3, 1, h, w,
                                      &m->in, err)) != EN_OK ||
            (rc = nn_deeplab_forward(m->seg, m->pool, &m->in, logits + i * plane, err)) != EN_OK)
            return en_err_prefix(err, "segmentation, frame %zu", i);
    }
    return EN_OK;
}

/* Normalises frame f into dst[c * cstride + y * cols + x]. */
static void normalize_frame(const en_nn_model *m, const en_frames *fr, int f,
                            float *dst, size_t cstride)
{
    const uint8_t *src = en_frames_frame(fr, f);
    const size_t n = (size_t)fr->rows * (size_t)fr->cols;
    const int ch = fr->channels;

    for (int c = 0; c < 3; c++) {
        const float mean = m->info.mean[c], inv = 1.0f / m->info.std[c];
        const int sc = ch == 3 ? c : 0;
        float *d = dst + (size_t)c * cstride;
        for (size_t i = 0; i < n; i++)
            d[i] = ((float)src[i * (size_t)ch + (size_t)sc] - mean) * inv;
    }
}

void en_nn_normalize(const en_nn_model *m, const en_frames *frames, int first,
                     int count, float *out)
{
    const size_t plane = (size_t)frames->rows * (size_t)frames->cols;
    for (int i = 0; i < count; i++)
        normalize_frame(m, frames, first + i, out + (size_t)i * 3 * plane, plane);
}

static int grow_norm(en_nn_model *m, size_t n, en_err *err)
{
    if (n > m->norm_n) {
        float *p = realloc(m->norm, n * sizeof *p);
        if (!p)
            return en_err_set(err, EN_ENOMEM, "nn: out of memory");
        m->norm = p;
        m->norm_n = n;
    }
    return EN_OK;
}

static int check_frames(const en_frames *fr, en_err *err)
{
    if (!fr || !fr->data || fr->nframes <= 0 || (fr->channels != 1 && fr->channels != 3))
        return en_err_set(err, EN_EINVAL, "nn: no frames, or not grey/RGB");
    return EN_OK;
}

int en_nn_segment_frames(en_nn_model *m, const en_frames *fr, float *logits,
                         int *sizes, en_err *err)
{
    const size_t plane = (size_t)fr->rows * (size_t)fr->cols;
    int rc;

    if ((rc = check_frames(fr, err)) != EN_OK ||
        (rc = check_size(fr->rows, fr->cols, 32, err)) != EN_OK ||
        (rc = grow_norm(m, (size_t)m->info.batch * 3 * plane, err)) != EN_OK)
        return rc;
    for (int i = 0; i < fr->nframes; i += m->info.batch) {
        int nb = fr->nframes - i < m->info.batch ? fr->nframes - i : m->info.batch;
        float *out = logits + (size_t)i * plane;
        en_nn_normalize(m, fr, i, nb, m->norm);
        if ((rc = en_nn_segment(m, m->norm, (size_t)nb, fr->rows, fr->cols, out, err)) != EN_OK)
            return rc;
        for (int k = 0; sizes && k < nb; k++) {
            int cnt = 0;
            for (size_t p = 0; p < plane; p++)
                cnt += out[(size_t)k * plane + p] > 0.0f;
            sizes[i + k] = cnt;
        }
    }
    return EN_OK;
}

int en_nn_ef(en_nn_model *m, const float *clip, int t, int h, int w, float *ef,
             en_err *err)
{
    int rc;

    if (!m->ef)
        return en_err_set(err, EN_EINVAL, "nn: %s weights cannot estimate EF", m->info.arch_name);
    if ((rc = check_size(h, w, 16, err)) != EN_OK || (rc = own_pool(m, err)) != EN_OK)
        return rc;
    if (t < 1 || t > 4096)
        return en_err_set(err, EN_EINVAL, "nn: clip length %d outside 1..4096", t);
    if ((rc = nn_from_batch_major(clip, 1, 3, t, h, w, &m->in, err)) != EN_OK ||
        (rc = nn_r2p1d_forward(m->ef, m->pool, &m->in, ef, err)) != EN_OK)
        return en_err_prefix(err, "EF");
    return EN_OK;
}

int en_nn_ef_frames(en_nn_model *m, const en_frames *fr, int start, float *ef,
                    en_err *err)
{
    const int len = m->info.clip_frames, period = m->info.clip_period;
    const size_t plane = (size_t)fr->rows * (size_t)fr->cols;
    const size_t cstride = (size_t)len * plane;
    int rc;

    if ((rc = check_frames(fr, err)) != EN_OK)
        return rc;
    if (start < 0 || start >= fr->nframes)
        return en_err_set(err, EN_EINVAL, "nn: clip start %d outside the video's %d frames",
                          start, fr->nframes);
    if ((rc = grow_norm(m, 3 * cstride, err)) != EN_OK)
        return rc;
    for (int i = 0; i < len; i++) {
        int f = start + i * period;
        float *dst = m->norm + (size_t)i * plane;
        if (f < fr->nframes) {
            normalize_frame(m, fr, f, dst, cstride);
        } else {
            /* upstream pads after normalisation: zero, i.e. mean-coloured */
            for (int c = 0; c < 3; c++)
                memset(dst + (size_t)c * cstride, 0, plane * sizeof *dst);
        }
    }
    return en_nn_ef(m, m->norm, len, fr->rows, fr->cols, ef, err);
}

int en_nn_model_prepare(en_nn_model *m, int rows, int cols, en_err *err)
{
    const size_t plane = (size_t)rows * (size_t)cols;
    float *zeros, out[1];
    int rc;

    if ((rc = check_size(rows, cols, m->seg ? 32 : 16, err)) != EN_OK)
        return rc;
    /* one pass over zeros (a whole batch of frames, one clip) plans every
     * layer for this size (dead taps, paths, their packed weights) and
     * brings every buffer to its working size */
    zeros = calloc(3 * plane * (size_t)(m->seg ? m->info.batch : m->info.clip_frames),
                   sizeof *zeros);
    if (!zeros)
        return en_err_set(err, EN_ENOMEM, "nn: out of memory");
    if (m->seg) {
        float *logits = malloc((size_t)m->info.batch * plane * sizeof *logits);
        rc = logits ? en_nn_segment(m, zeros, (size_t)m->info.batch, rows, cols, logits, err)
                    : en_err_set(err, EN_ENOMEM, "nn: out of memory");
        free(logits);
    } else {
        rc = en_nn_ef(m, zeros, m->info.clip_frames, rows, cols, out, err);
    }
    free(zeros);
    return rc;
}
