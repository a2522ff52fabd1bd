/*
 * threads.c - the engine's one threading mechanism: a small pool of
 * pthreads that run "parallel for" over tasks (column tiles of a matrix
 * product, planes of a pooling).  OpenBLAS itself is kept single-threaded
 * (openblas_set_num_threads(1) at model load), so the two never compete for
 * the cores; each task calls a single-threaded sgemm on its own tile, which
 * also parallelises the im2col and the epilogue around it.
 *
 * A pool belongs to the process that made it: a child forked from a process
 * with a loaded model (a pre-forked worker that inherits the packed weights)
 * has none of the parent's threads, so model.c abandons the inherited pool
 * and starts its own (nn_pool_forked).
 */
#include "nn_int.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct nn_pool {
    int n;                      /* threads including the caller */
    pid_t pid;                  /* the process the threads run in */
    pthread_t *tid;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    unsigned long generation;   /* bumped per nn_pool_run */
    _Atomic unsigned long gen;  /* its copy for spinning readers */
    int stop;
    /* the current job */
    nn_task_fn fn;
    void *arg;
    int ntasks, next;
    _Atomic int active;         /* workers inside a job (changed under mu) */
    _Atomic int64_t spin_caller, spin_worker;   /* spin budgets, ns */
    /* per-thread scratch, and packed bf16 panels */
    float **scratch;
    size_t *scratch_n;
    uint16_t **panels;
    size_t *panels_n;
};

/* How long a thread spins, watching for the next job (workers) or the end
 * of this one (the caller), before it sleeps on a condition: a network
 * runs hundreds of short parallel steps, and a wake-up through the kernel
 * costs tens of microseconds, more in a virtual machine, where the
 * sleeper's vCPU halts.  The caller meets the threads' imbalance at the
 * end of nearly every step, often more than 10 us; when the spin was 1,000
 * pauses (10 us on this CPU) it slept there and the worker's signal had
 * to wake it: segmentation's threads were idle inside parallel steps 17
 * ms of 2 x 197 per 8 frames, 9 of 2 x 186-196 spinning up to 1 ms.
 *
 * But a spinning thread holds a core that another may need: with more
 * threads than cores (two studies at once, each with a thread per core)
 * a fixed 1 ms spin made segmentation 10-15 % slower.  So the budget
 * adapts, per role: a spin that ends in time doubles it (up to
 * NN_SPIN_NS), one that runs out quarters it (down to NN_SPIN_MIN_NS).
 * Measured (best of 2 passes, ms/frame): alone 23.6 against 24.2 for the
 * 10 us spin and 23.3 for a fixed 1 ms (means of 16 alternating runs);
 * two processes on the two cores 46.5-48.1 against 44.2-47.4 and
 * 49.7-53.2.  Timed, not counted: a pause lasts 10 to 150 cycles,
 * depending on the CPU. */
#define NN_SPIN_NS 1000000
#define NN_SPIN_MIN_NS 10000

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Spins for up to its role's budget, the clock read every 64 pauses:
 * the caller until no worker is in the job, a worker until a job after
 * seen is posted; then adapts the budget. */
static void spin(nn_pool *p, int caller, unsigned long seen)
{
    _Atomic int64_t *budget = caller ? &p->spin_caller : &p->spin_worker;
    const int64_t b = atomic_load_explicit(budget, memory_order_relaxed);
    const int64_t end = now_ns() + b;
    for (;;) {
        for (int i = 0; i < 64; i++) {
            if (caller ? atomic_load(&p->active) <= 0 :
                         atomic_load_explicit(&p->gen, memory_order_acquire) != seen) {
                if (b < NN_SPIN_NS)
                    atomic_store_explicit(budget, b * 2 < NN_SPIN_NS ? b * 2 : NN_SPIN_NS,
                                          memory_order_relaxed);
                return;
            }
            cpu_relax();
        }
        if (now_ns() >= end)
            break;
    }
    if (b > NN_SPIN_MIN_NS)
        atomic_store_explicit(budget, b / 4 > NN_SPIN_MIN_NS ? b / 4 : NN_SPIN_MIN_NS,
                              memory_order_relaxed);
}

typedef struct worker_arg {
    nn_pool *p;
    int index;
} worker_arg;

static void run_tasks(nn_pool *p, int thread)
{
    for (;;) {
        int task;
        nn_task_fn fn;
        void *arg;
        pthread_mutex_lock(&p->mu);
        task = p->next < p->ntasks ? p->next++ : -1;
        fn = p->fn;
        arg = p->arg;
        pthread_mutex_unlock(&p->mu);
        if (task < 0)
            return;
        fn(arg, task, thread);
    }
}

static void *worker(void *varg)
{
    worker_arg *wa = varg;
    nn_pool *p = wa->p;
    int index = wa->index;
    unsigned long seen = 0;

    free(wa);
    for (;;) {
        spin(p, 0, seen);
        pthread_mutex_lock(&p->mu);
        while (!p->stop && p->generation == seen)
            pthread_cond_wait(&p->wake, &p->mu);
        if (p->stop) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        seen = p->generation;
        p->active++;
        pthread_mutex_unlock(&p->mu);

        run_tasks(p, index);

        pthread_mutex_lock(&p->mu);
        if (--p->active == 0)
            pthread_cond_signal(&p->done);
        pthread_mutex_unlock(&p->mu);
    }
}

int nn_pool_create(int nthreads, nn_pool **out, en_err *err)
{
    nn_pool *p = calloc(1, sizeof *p);

    if (nthreads < 1)
        nthreads = 1;
    if (!p)
        return en_err_set(err, EN_ENOMEM, "nn: out of memory");
    p->n = nthreads;
    p->pid = getpid();
    p->spin_caller = p->spin_worker = NN_SPIN_NS;
    p->tid = calloc((size_t)nthreads, sizeof *p->tid);
    p->scratch = calloc((size_t)nthreads, sizeof *p->scratch);
    p->scratch_n = calloc((size_t)nthreads, sizeof *p->scratch_n);
    p->panels = calloc((size_t)nthreads, sizeof *p->panels);
    p->panels_n = calloc((size_t)nthreads, sizeof *p->panels_n);
    if (!p->tid || !p->scratch || !p->scratch_n || !p->panels || !p->panels_n) {
        free(p->tid); free(p->scratch); free(p->scratch_n);
        free(p->panels); free(p->panels_n); free(p);
        return en_err_set(err, EN_ENOMEM, "nn: out of memory");
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    for (int i = 1; i < nthreads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa || (wa->p = p, wa->index = i,
                    pthread_create(&p->tid[i], NULL, worker, wa) != 0)) {
            free(wa);
            p->n = i;   /* run with the threads we got */
            break;
        }
    }
    *out = p;
    return EN_OK;
}

void nn_pool_free(nn_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    atomic_store(&p->gen, p->generation + 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++)
        pthread_join(p->tid[i], NULL);
    for (int i = 0; i < p->n; i++) {
        free(p->scratch[i]);
        free(p->panels[i]);
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p->scratch);
    free(p->scratch_n);
    free(p->panels);
    free(p->panels_n);
    free(p->tid);
    free(p);
}

int nn_pool_forked(const nn_pool *p)
{
    return p && p->pid != getpid();
}

void nn_pool_abandon(nn_pool *p)
{
    /* after fork: the workers, their mutex and conditions belong to the
     * parent; only the memory is ours to release */
    if (!p)
        return;
    for (int i = 0; i < p->n; i++) {
        free(p->scratch[i]);
        free(p->panels[i]);
    }
    free(p->scratch);
    free(p->scratch_n);
    free(p->panels);
    free(p->panels_n);
    free(p->tid);
    free(p);
}

int nn_pool_size(const nn_pool *p)
{
    return p ? p->n : 1;
}

void nn_pool_run(nn_pool *p, int ntasks, nn_task_fn fn, void *arg)
{
    if (!p || p->n == 1 || ntasks <= 1) {
        for (int i = 0; i < ntasks; i++)
            fn(arg, i, 0);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    p->ntasks = ntasks;
    p->next = 0;
    p->generation++;
    atomic_store_explicit(&p->gen, p->generation, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);

    run_tasks(p, 0);

    /* Wait until no worker is inside this job and none is still to join it:
     * every task taken means only stragglers that are running remain. */
    spin(p, 1, 0);
    pthread_mutex_lock(&p->mu);
    while (p->active > 0)
        pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

void nn_pool_trim(nn_pool *p)
{
    for (int i = 0; i < p->n; i++) {
        free(p->scratch[i]);
        free(p->panels[i]);
        p->scratch[i] = NULL;
        p->panels[i] = NULL;
        p->scratch_n[i] = p->panels_n[i] = 0;
    }
}

float *nn_pool_scratch(nn_pool *p, int thread, size_t n)
{
    static _Thread_local float *solo;       /* pool-less callers (tests) */
    static _Thread_local size_t solo_n;
    float **slot = p ? &p->scratch[thread] : &solo;
    size_t *cap = p ? &p->scratch_n[thread] : &solo_n;

    if (n > *cap) {
        float *q = nn_alloc(n * sizeof(float));
        if (!q)
            return NULL;
        free(*slot);
        *slot = q;
        *cap = n;
    }
    return *slot;
}

uint16_t *nn_pool_panels(nn_pool *p, int thread, size_t n)
{
    static _Thread_local uint16_t *solo;     /* pool-less callers (tests) */
    static _Thread_local size_t solo_n;
    uint16_t **slot = p ? &p->panels[thread] : &solo;
    size_t *cap = p ? &p->panels_n[thread] : &solo_n;

    if (n > *cap) {
        uint16_t *q = nn_alloc(n * sizeof *q);
        if (!q)
            return NULL;
        free(*slot);
        *slot = q;
        *cap = n;
    }
    return *slot;
}
