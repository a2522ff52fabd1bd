/*
 * test-nn-fork.c - a model loaded and prepared once serves forked children
 * (the pre-forked worker the daemon can keep): en_nn_model_prepare changes
 * no result, a child forked after the parent's threads ran gets the
 * parent's results bit for bit with threads of its own, twice in a row, and
 * frees the model cleanly; the parent still runs afterwards.  Trimming a
 * model's working memory (en_nn_model_trim, in the parent and in a forked
 * child) gives memory back and changes no result.  On every precision this
 * CPU offers (the default models, 112 x 112).
 */
#include "en_nn.h"
#include "tst.h"

#include <dirent.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define NF 5          /* frames: one partial batch of the default 8 */

static void fill(float *p, size_t n)
{
    unsigned s = 99;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = (float)((s >> 9) & 0xFFFF) / 32768.0f - 1.0f;
    }
}

/* Threads of this process (/proc/self/task). */
static int threads_now(void)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d)))
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

/* Resident bytes of this process (/proc/self/statm). */
static long resident(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &res) != 2)
            res = 0;
        fclose(f);
    }
    return res * sysconf(_SC_PAGESIZE);
}

/* logits of NF frames and the EF of one clip */
static int run(en_nn_model *seg, en_nn_model *ef, const float *in, float *logits, float *efv)
{
    en_err err;
    if (en_nn_segment(seg, in, NF, 112, 112, logits, &err) != EN_OK ||
        en_nn_ef(ef, in, 32, 112, 112, efv, &err) != EN_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    return 0;
}

static void check_precision(en_nn_prec prec, const char *segp, const char *efp)
{
    const size_t plane = 112 * 112;
    float *in = malloc(3 * 32 * plane * sizeof *in);
    float *ref = calloc(NF * plane, sizeof *ref), *got = calloc(NF * plane, sizeof *got);
    float ef_ref = 0.0f, ef_got = 0.0f;
    en_nn_opts o;
    en_nn_model *seg, *ef, *cold_seg, *cold_ef;
    en_err err;
    int status;
    pid_t pid;

    memset(&o, 0, sizeof o);
    o.precision = prec;
    o.threads = 2;
    fill(in, 3 * 32 * plane);
    if (en_nn_model_load_opts(segp, &o, &seg, &err) != EN_OK ||
        en_nn_model_load_opts(efp, &o, &ef, &err) != EN_OK ||
        en_nn_model_load_opts(segp, &o, &cold_seg, &err) != EN_OK ||
        en_nn_model_load_opts(efp, &o, &cold_ef, &err) != EN_OK) {
        if (err.code == EN_EUNSUPPORTED) {
            fprintf(stderr, "note: %s: %s\n", en_nn_prec_name(prec), err.msg);
            free(in); free(ref); free(got);
            return;
        }
        CHECKF(0, "%s", err.msg);
        exit(1);
    }
    /* prepared against not prepared: the same numbers */
    CHECKF(en_nn_model_prepare(seg, 112, 112, &err) == EN_OK, "%s", err.msg);
    CHECKF(en_nn_model_prepare(ef, 112, 112, &err) == EN_OK, "%s", err.msg);
    CHECK(run(cold_seg, cold_ef, in, ref, &ef_ref) == 0);
    CHECK(run(seg, ef, in, got, &ef_got) == 0);
    CHECKF(memcmp(ref, got, NF * plane * sizeof *ref) == 0 && ef_ref == ef_got,
           "%s: prepared model differs", en_nn_prec_name(prec));

    pid = fork();
    if (pid == 0) {
        int bad = 0;
        for (int rep = 0; rep < 3; rep++) {
            memset(got, 0, NF * plane * sizeof *got);
            bad |= run(seg, ef, in, got, &ef_got) != 0 ||
                   memcmp(ref, got, NF * plane * sizeof *ref) != 0 || ef_got != ef_ref;
            if (rep == 1) {   /* the inherited buffers, then the child's own */
                en_nn_model_trim(seg);
                en_nn_model_trim(ef);
            }
        }
        /* the child's own worker threads (the parent's did not come along) */
        bad |= (en_nn_model_info(seg)->threads != 2 || threads_now() < 2) << 1;
        en_nn_model_free(seg);
        en_nn_model_free(ef);
        en_nn_model_free(cold_seg);
        en_nn_model_free(cold_ef);
        free(in); free(ref); free(got);
        _exit(bad);
    }
    CHECK(pid > 0);
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "%s: the forked child's results differ or it failed (1), or it ran without "
           "worker threads (2): status %d", en_nn_prec_name(prec),
           WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    /* the parent's own threads are untouched */
    CHECK(run(seg, ef, in, got, &ef_got) == 0);
    CHECK(memcmp(ref, got, NF * plane * sizeof *ref) == 0 && ef_got == ef_ref);
    /* trimmed: memory given back, and the same numbers after */
    {
        long before = resident(), after;
        en_nn_model_trim(ef);
        en_nn_model_trim(seg);
        after = resident();
#if defined(__SANITIZE_ADDRESS__)
        /* ASan's allocator keeps freed memory in quarantine: no drop to see
         * (it checks that nothing uses the freed buffers instead). */
        (void)after;
        (void)before;
#else
        CHECKF(after < before - (1L << 20), "%s: trimming gave back %ld bytes of %ld",
               en_nn_prec_name(prec), before - after, before);
#endif
        memset(got, 0, NF * plane * sizeof *got);
        CHECK(run(seg, ef, in, got, &ef_got) == 0);
        CHECKF(memcmp(ref, got, NF * plane * sizeof *ref) == 0 && ef_got == ef_ref,
               "%s: results differ after trimming", en_nn_prec_name(prec));
        en_nn_model_trim(seg);   /* twice in a row is harmless */
        en_nn_model_trim(seg);
        CHECK(run(seg, ef, in, got, &ef_got) == 0);
        CHECK(memcmp(ref, got, NF * plane * sizeof *ref) == 0 && ef_got == ef_ref);
    }
    en_nn_model_free(seg);
    en_nn_model_free(ef);
    en_nn_model_free(cold_seg);
    en_nn_model_free(cold_ef);
    free(in); free(ref); free(got);
}

int main(void)
{
    char segp[1024], efp[1024];

    snprintf(segp, sizeof segp, "%s/models/phantom-seg.safetensors", tst_env("EN_TOP_SRCDIR"));
    snprintf(efp, sizeof efp, "%s/models/phantom-ef.safetensors", tst_env("EN_TOP_SRCDIR"));
    check_precision(EN_NN_PREC_FP32, segp, efp);
    check_precision(EN_NN_PREC_BF16, segp, efp);
    TST_DONE();
}
