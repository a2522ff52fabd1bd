/*
 * safetensors.c - reads a weights file in the safetensors format: an 8-byte
 * little-endian header length, a JSON header, then the raw little-endian
 * tensor data.  The file is mapped read-only and tensors point into the
 * mapping.  Every entry is checked before anything is used: dtype (F32
 * only), shape, offsets inside the data section, sizes matching shapes, no
 * overlaps or holes, 4-byte alignment.  A truncated file is reported by the
 * first tensor whose data runs past its end.
 */
#include "nn_int.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define NN_ST_MAX_HEADER (100u << 20)   /* the format's own limit */

/* Formats the error with the file name in front. */
#define ST_ERR(st, err, code, ...) \
    (en_err_set((err), (code), __VA_ARGS__), \
     en_err_prefix((err), "weights file %s", (st)->path))

static int is_uint(const nj_val *v, double max)
{
    return v && v->type == NJ_NUM && v->num >= 0 && v->num <= max &&
           v->num == (double)(uint64_t)v->num;
}

static int cmp_offset(const void *a, const void *b)
{
    const nn_st_tensor *x = a, *y = b;
    if (x->data != y->data)
        return x->data < y->data ? -1 : 1;
    return x->numel < y->numel ? -1 : x->numel > y->numel;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int parse_entry(nn_st *st, const char *name, const nj_val *v,
                       nn_st_tensor *t, en_err *err)
{
    const nj_val *dtype = nj_get(v, "dtype"), *shape = nj_get(v, "shape");
    const nj_val *off = nj_get(v, "data_offsets");
    uint64_t begin, end, numel = 1;

    if (v->type != NJ_OBJ || !dtype || dtype->type != NJ_STR || !shape ||
        shape->type != NJ_ARR || !off || off->type != NJ_ARR || off->n != 2 ||
        !is_uint(&off->items[0], 9e15) || !is_uint(&off->items[1], 9e15))
        return ST_ERR(st, err, EN_EFORMAT, "tensor '%s': malformed header entry "
                      "(needs dtype, shape, data_offsets)", name);
    if (strcmp(dtype->str, "F32") != 0)
        return ST_ERR(st, err, EN_EUNSUPPORTED, "tensor '%s' has dtype %s; the engine reads "
                      "F32 only: reconvert with tools/convert-weights", name, dtype->str);
    if (shape->n > 8)
        return ST_ERR(st, err, EN_EFORMAT, "tensor '%s' has %zu dimensions", name, shape->n);
    t->ndim = (int)shape->n;
    for (size_t i = 0; i < shape->n; i++) {
        if (!is_uint(&shape->items[i], 1 << 30))
            return ST_ERR(st, err, EN_EFORMAT, "tensor '%s': bad shape", name);
        t->shape[i] = (int64_t)shape->items[i].num;
        if (t->shape[i] && numel > (UINT64_MAX >> 3) / (uint64_t)t->shape[i])
            return ST_ERR(st, err, EN_EFORMAT, "tensor '%s': shape too large", name);
        numel *= (uint64_t)t->shape[i];
    }
    begin = (uint64_t)off->items[0].num;
    end = (uint64_t)off->items[1].num;
    if (begin > end)
        return ST_ERR(st, err, EN_EFORMAT, "tensor '%s': data_offsets reversed", name);
    if (end > st->data_len)
        return ST_ERR(st, err, EN_EFORMAT, "tensor '%s' runs past the end of the file "
                      "(%llu > %zu data bytes): the file is truncated; copy or convert it again",
                      name, (unsigned long long)end, st->data_len);
    if (end - begin != numel * 4)
        return ST_ERR(st, err, EN_EFORMAT, "tensor '%s': %llu data bytes for %llu floats",
                      name, (unsigned long long)(end - begin), (unsigned long long)numel);
    if (((uintptr_t)(st->data + begin)) % 4 != 0)
        return ST_ERR(st, err, EN_EFORMAT, "tensor '%s' is not 4-byte aligned "
                      "(header not padded): reconvert with tools/convert-weights", name);
    if (!(t->name = strdup(name)))
        return en_err_set(err, EN_ENOMEM, "out of memory");
    t->data = (const float *)(const void *)(st->data + begin);
    t->numel = (size_t)numel;
    return EN_OK;
}

static int parse_metadata(nn_st *st, const nj_val *m, en_err *err)
{
    if (m->type != NJ_OBJ)
        return ST_ERR(st, err, EN_EFORMAT, "__metadata__ is not an object");
    st->meta_keys = calloc(m->n + 1, sizeof *st->meta_keys);
    st->meta_vals = calloc(m->n + 1, sizeof *st->meta_vals);
    if (!st->meta_keys || !st->meta_vals)
        return en_err_set(err, EN_ENOMEM, "out of memory");
    for (size_t i = 0; i < m->n; i++) {
        if (m->items[i].type != NJ_STR)
            return ST_ERR(st, err, EN_EFORMAT, "__metadata__ value '%s' is not a string",
                          m->keys[i]);
        st->meta_keys[i] = strdup(m->keys[i]);
        st->meta_vals[i] = strdup(m->items[i].str);
        st->nmeta = i + 1;
        if (!st->meta_keys[i] || !st->meta_vals[i])
            return en_err_set(err, EN_ENOMEM, "out of memory");
    }
    return EN_OK;
}

static int parse_header(nn_st *st, const nj_val *root, en_err *err)
{
    size_t nt = 0;
    int rc;

    if (root->type != NJ_OBJ)
        return ST_ERR(st, err, EN_EFORMAT, "header is not a JSON object");
    {
        /* duplicate names: sort a copy of the keys, compare neighbours */
        char **keys = malloc((root->n + 1) * sizeof *keys);
        if (!keys)
            return en_err_set(err, EN_ENOMEM, "out of memory");
        /* (an empty object has no key array: memcpy and qsort may not be
         * given NULL, even for nothing) */
        if (root->n > 0) {
            memcpy(keys, root->keys, root->n * sizeof *keys);
            qsort(keys, root->n, sizeof *keys, cmp_name);
        }
        for (size_t i = 1; i < root->n; i++)
            if (strcmp(keys[i - 1], keys[i]) == 0) {
                rc = ST_ERR(st, err, EN_EFORMAT, "tensor '%s' appears twice", keys[i]);
                free(keys);
                return rc;
            }
        free(keys);
    }
    if (!(st->t = calloc(root->n + 1, sizeof *st->t)))
        return en_err_set(err, EN_ENOMEM, "out of memory");
    for (size_t i = 0; i < root->n; i++) {
        if (strcmp(root->keys[i], "__metadata__") == 0) {
            if ((rc = parse_metadata(st, &root->items[i], err)) != EN_OK)
                return rc;
            continue;
        }
        if ((rc = parse_entry(st, root->keys[i], &root->items[i], &st->t[nt], err)) != EN_OK)
            return rc;
        st->nt = ++nt;
    }
    /* The data section must be exactly covered: no overlaps, no holes. */
    {
        nn_st_tensor *sorted = malloc((nt + 1) * sizeof *sorted);
        const uint8_t *pos = st->data;
        if (!sorted)
            return en_err_set(err, EN_ENOMEM, "out of memory");
        memcpy(sorted, st->t, nt * sizeof *sorted);
        qsort(sorted, nt, sizeof *sorted, cmp_offset);
        for (size_t i = 0; i < nt; i++) {
            const uint8_t *b = (const uint8_t *)sorted[i].data;
            if (b != pos) {
                rc = ST_ERR(st, err, EN_EFORMAT, "tensor '%s' %s the previous tensor's data",
                            sorted[i].name, b < pos ? "overlaps" : "leaves a gap after");
                free(sorted);
                return rc;
            }
            pos = b + sorted[i].numel * 4;
        }
        free(sorted);
        if (pos != st->data + st->data_len)
            return ST_ERR(st, err, EN_EFORMAT, "%zu bytes after the last tensor",
                          (size_t)(st->data + st->data_len - pos));
    }
    return EN_OK;
}

int nn_st_open(const char *path, nn_st *st, en_err *err)
{
    struct stat sb;
    uint64_t hlen = 0;
    nj_val root;
    int fd, rc;

    memset(st, 0, sizeof *st);
    st->path = path;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return en_err_set(err, errno == ENOENT ? EN_ENOTFOUND : EN_EIO,
                          "weights file %s: %s", path, strerror(errno));
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return en_err_set(err, EN_EIO, "weights file %s: not a regular file", path);
    }
    if (sb.st_size < 10) {
        close(fd);
        return en_err_set(err, EN_EFORMAT, "weights file %s: %lld bytes, too short to be "
                          "safetensors (truncated?)", path, (long long)sb.st_size);
    }
    st->map_len = (size_t)sb.st_size;
    st->map = mmap(NULL, st->map_len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (st->map == MAP_FAILED) {
        st->map = NULL;
        return en_err_set(err, EN_EIO, "weights file %s: mmap: %s", path, strerror(errno));
    }
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | ((const uint8_t *)st->map)[i];
    if (hlen < 2 || hlen > NN_ST_MAX_HEADER || hlen > st->map_len - 8) {
        rc = en_err_set(err, EN_EFORMAT, "weights file %s: header length %llu does not fit "
                        "a %zu-byte file: not safetensors, or truncated", path,
                        (unsigned long long)hlen, st->map_len);
        nn_st_close(st);
        return rc;
    }
    st->data = (const uint8_t *)st->map + 8 + hlen;
    st->data_len = st->map_len - 8 - (size_t)hlen;
    if ((rc = nj_parse((const char *)st->map + 8, (size_t)hlen, &root, err)) != EN_OK) {
        en_err_prefix(err, "weights file %s", path);
        nn_st_close(st);
        return rc;
    }
    rc = parse_header(st, &root, err);
    nj_free(&root);
    if (rc != EN_OK)
        nn_st_close(st);
    return rc;
}

void nn_st_close(nn_st *st)
{
    for (size_t i = 0; i < st->nt; i++)
        free(st->t[i].name);
    free(st->t);
    for (size_t i = 0; i < st->nmeta; i++) {
        free(st->meta_keys[i]);
        free(st->meta_vals[i]);
    }
    free(st->meta_keys);
    free(st->meta_vals);
    if (st->map)
        munmap(st->map, st->map_len);
    memset(st, 0, sizeof *st);
}

const char *nn_st_meta(const nn_st *st, const char *key)
{
    for (size_t i = 0; i < st->nmeta; i++)
        if (strcmp(st->meta_keys[i], key) == 0)
            return st->meta_vals[i];
    return NULL;
}

nn_st_tensor *nn_st_find(nn_st *st, const char *name)
{
    for (size_t i = 0; i < st->nt; i++)
        if (strcmp(st->t[i].name, name) == 0)
            return &st->t[i];
    return NULL;
}

void nn_st_release(const nn_st *st, const void *p, size_t len)
{
    /* Drop whole pages of the read-only mapping from our resident set once
     * they are consumed (they stay in the page cache); a later read simply
     * faults them back in.  Only an optimisation: errors are ignored. */
    const long pg = sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1);
    uintptr_t b = ((uintptr_t)p + len) & ~((uintptr_t)pg - 1);

    (void)st;
    if (pg > 0 && b > a)
        madvise((void *)a, b - a, MADV_DONTNEED);
}

int nn_st_sha256(const nn_st *st, char hex[65], en_err *err)
{
    const size_t chunk = (size_t)8 << 20;
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);

    for (size_t off = 0; ok && off < st->data_len; off += chunk) {
        size_t n = st->data_len - off < chunk ? st->data_len - off : chunk;
        ok = EVP_DigestUpdate(ctx, st->data + off, n);
        nn_st_release(st, st->data + off, n);
    }
    ok = ok && EVP_DigestFinal_ex(ctx, md, &mdlen) && mdlen == 32;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return en_err_set(err, EN_EIO, "weights file %s: SHA-256 failed", st->path);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return EN_OK;
}

int nn_st_check_all_used(const nn_st *st, en_err *err)
{
    for (size_t i = 0; i < st->nt; i++)
        if (!st->t[i].used)
            return ST_ERR(st, err, EN_EFORMAT, "unexpected tensor '%s' (not part of the "
                          "architecture: wrong --arch at conversion, or a different model)",
                          st->t[i].name);
    return EN_OK;
}
