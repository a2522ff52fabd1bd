/*
 * echonetd.c - the inbox daemon: DICOMs delivered to [daemon] inbox become
 * results in the database and reports on disk (docs/operations.md).
 *
 *   echonetd [-c FILE] [-v]        run in the foreground (systemd Type=notify)
 *   echonetd --process-one WORKFILE --job JOB [-c FILE]
 *                                  one file; what the daemon runs per file
 *   echonetd --finish-study PSEUDONYM [-c FILE]
 *                                  one study's result; what the daemon runs
 *                                  once a study has been quiet study_quiet_s
 *   echonetd --model-host [-c FILE]
 *                                  keeps the models and forks studies; what
 *                                  the daemon runs with warm_models (fd 3)
 *
 * Start-up: configuration, spool folders (must exist, one file system),
 * then the site secret, both models and the database are opened once here
 * to prove they work (with warm_models, the model host, warm.c, loads the
 * models once more and keeps them for every study's process; otherwise each
 * child loads its own).  READY=1 only after that.  The spool is locked first: a second daemon on the same work
 * folder exits 3 naming the first.
 * Signals: SIGTERM/SIGINT stop taking files and let running studies finish
 * for stop_grace_s (a second signal, or the end of the grace, kills them;
 * their files stay in work/ and resume next start), then exit 0.  SIGHUP
 * re-reads the configuration; a configuration that does not load (or whose
 * models or database do not open) is refused and the old one kept.
 */
#include "config.h"

#include "daemon.h"
#include "en_service.h"
#include "en_pipeline.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef EN_SYSCONFDIR
#define EN_SYSCONFDIR "/etc"
#endif

static void usage(FILE *f)
{
    fprintf(f, "usage: echonetd [-c FILE] [-v]\n"
               "       echonetd --process-one WORKFILE --job JOB [-c FILE]\n"
               "       echonetd --finish-study PSEUDONYM [-c FILE]\n"
               "Runs in the foreground; see echonetd.conf [daemon] and docs/operations.md.\n");
}

/* Which weights studies will run on; the phantom-trained defaults get a
 * warning of their own, since their numbers mean nothing for patients. */
static void log_models(const en_pipeline *p)
{
    const en_nn_info *seg = en_nn_model_info(p->seg), *ef = en_nn_model_info(p->ef);

    dm_log(DM_INFO, NULL, "models: segmentation %s (weights %.12s), ef %s (weights %.12s)",
           p->cfg->seg_weights, seg->sha256, p->cfg->ef_weights, ef->sha256);
    if (en_pipeline_phantom(p))
        dm_log(DM_WARN, NULL, "using the phantom-trained default models: not for clinical "
               "use; set [models] segmentation and ef to real weights (README: converting "
               "weights)");
}

/* Opens what a study needs once, to fail at start-up (or on SIGHUP) rather
 * than on every file. */
static int validate(const en_config *cfg, en_err *err)
{
    en_pipeline p;
    int rc;

    if ((rc = dm_spool_check(cfg, err)) != EN_OK)
        return rc;
    if ((rc = en_pipeline_open(&p, cfg, err)) != EN_OK)
        return rc;
    log_models(&p);
    en_pipeline_close(&p);
    return EN_OK;
}

static int auto_concurrency(const en_config *cfg)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (cfg->concurrency > 0)
        return cfg->concurrency;
    n = n / 8;
    return n < 1 ? 1 : (int)n;
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Stopping and no child left: close every handle, which ends the loop.
 * Queued jobs simply stay in work/ for the next start. */
static void on_idle(dm_daemon *d)
{
    if (!dm_jobs_idle(d) || !dm_studies_idle(d))
        return;     /* the last child's end calls again */
    dm_jobs_free_queue(d);
    uv_walk(d->loop, close_walk, NULL);
}

static void on_grace(uv_timer_t *t)
{
    dm_daemon *d = t->data;
    dm_log(DM_WARN, NULL, "stop: %d studies still running after %d s; killing them (they "
           "resume at the next start)", d->nrunning, d->cfg.stop_grace_s);
    dm_jobs_stop_all(d);
    dm_studies_stop(d, 1);
}

static void stop(dm_daemon *d, int signum)
{
    if (d->stopping) {
        dm_log(DM_NOTICE, NULL, "second stop signal: killing running studies now");
        dm_jobs_stop_all(d);
        dm_studies_stop(d, 1);
        return;
    }
    d->stopping = 1;
    en_service_notify("STOPPING=1");
    dm_log(DM_NOTICE, NULL, "%s: taking no more files; %d running studies may finish "
           "(up to %d s)", strsignal(signum), d->nrunning, d->cfg.stop_grace_s);
    dm_intake_stop(d);
    dm_studies_stop(d, 0);
    dm_host_stop(d);
    uv_timer_stop(&d->status_tick);
    dm_status(d);
    if (d->nrunning > 0 || !dm_studies_idle(d))
        uv_timer_start(&d->grace, on_grace, (uint64_t)d->cfg.stop_grace_s * 1000, 0);
    on_idle(d);
}

static void log_change(const en_config_change *c, void *user)
{
    (*(int *)user)++;
    dm_log(DM_NOTICE, NULL, "reload: [%s] %s changed: %s -> %s (%s)", c->row->section,
           c->row->key, c->old_value, c->new_value, en_config_reload_text(c->row->reload));
}

/* Every changed setting by name, from the settings table (src/config). */
static void log_changes(const en_config *old, const en_config *nw, const char *restart)
{
    int n = 0;

    en_config_diff(old, nw, log_change, &n);
    if (restart[0])
        dm_log(DM_WARN, NULL, "reload: changed, but applies only at the next start (the running "
               "value is kept until then): %s", restart);
    else if (n == 0)
        dm_log(DM_NOTICE, NULL, "reload: nothing changed");
}

static void reload(dm_daemon *d)
{
    en_config nw;
    en_err e;
    en_store *db = NULL;
    char restart[512] = "";
    int rc;

    en_service_notify("RELOADING=1");
    en_config_defaults(&nw);
    if ((rc = en_config_load(&nw, d->conf_path, &e)) == EN_OK &&
        (en_config_reload_check(&d->cfg, &nw, restart, sizeof restart) &
         EN_RELOAD_BIT(EN_RELOAD_CHECKED)))
        rc = validate(&nw, &e);
    if (rc != EN_OK) {
        dm_log(DM_ERR, NULL, "reload refused, keeping the running configuration: %s", e.msg);
        en_service_notify("READY=1");
        return;
    }
    if (strcmp(nw.database, d->cfg.database)) {
        if (en_store_open(nw.database, 0, &db, &e) != EN_OK) {
            dm_log(DM_ERR, NULL, "reload refused, keeping the running configuration: %s", e.msg);
            en_service_notify("READY=1");
            return;
        }
        en_store_close(d->db);
        d->db = db;
        d->counts_stale = 1;
    }
    log_changes(&d->cfg, &nw, restart);
    dm_intake_stop(d);
    d->cfg = nw;
    /* A new model host for the file as it is now (weights may have been
     * replaced under the same names); studies running on the old one
     * finish there, and until the new one is ready studies load their own. */
    dm_host_retire(d);
    d->concurrency = auto_concurrency(&d->cfg);
    dm_intake_start(d, &e);
    en_service_notify("READY=1");
    dm_jobs_pump(d);
    dm_studies_kick(d);     /* study_quiet_s may have changed */
}

static void on_signal(uv_signal_t *s, int signum)
{
    dm_daemon *d = s->data;
    if (signum == SIGHUP) {
        if (!d->stopping)
            reload(d);
    } else {
        stop(d, signum);
    }
}

static void on_watchdog(uv_timer_t *t)
{
    (void)t;
    en_service_notify("WATCHDOG=1");
}

static void on_status_tick(uv_timer_t *t)
{
    dm_daemon *d = t->data;
    /* Backpressure clears on its own (disk freed): look again. */
    if (d->paused) {
        dm_pressure(d);
        if (!d->paused)
            dm_intake_kick(d);
    }
    dm_jobs_pump(d);
}

int main(int argc, char **argv)
{
    static dm_daemon dd = { .lock_fd = -1 };
    dm_daemon *d = &dd;
    const char *conf = getenv("ECHONETD_CONF");
    const char *one = NULL, *job = "-", *finish = NULL;
    int host = 0;
    uv_loop_t *loop;
    uint64_t wd;
    size_t exelen = sizeof d->exe;
    en_err e;

    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc)
            conf = argv[++i];
        else if (!strcmp(argv[i], "--process-one") && i + 1 < argc)
            one = argv[++i];
        else if (!strcmp(argv[i], "--model-host"))
            host = 1;
        else if (!strcmp(argv[i], "--finish-study") && i + 1 < argc)
            finish = argv[++i];
        else if (!strcmp(argv[i], "--job") && i + 1 < argc)
            job = argv[++i];
        else if (!strcmp(argv[i], "-v") || !strcmp(argv[i], "--verbose"))
            d->verbose = 1;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    snprintf(d->conf_path, sizeof d->conf_path, "%s",
             conf && conf[0] ? conf : EN_SYSCONFDIR "/echonetd.conf");
    if (one)
        return dm_process_one(d->conf_path, one, job);
    if (finish)
        return dm_finish_one(d->conf_path, finish);
    if (host)
        return dm_model_host(d->conf_path);

    dm_log_init(d->verbose);
    /* A file-size limit fails a write instead of killing the daemon. */
    signal(SIGXFSZ, SIG_IGN);
    en_config_defaults(&d->cfg);
    if (en_config_load(&d->cfg, d->conf_path, &e) != EN_OK) {
        dm_log(DM_ERR, NULL, "%s", e.msg);
        return 3;
    }
    /* The lock first, so a second daemon says why at once.  Held until
     * we exit: the kernel releases it however we end. */
    if (dm_spool_check(&d->cfg, &e) != EN_OK ||
        dm_spool_lock(d->cfg.work_dir, &d->lock_fd, &e) != EN_OK ||
        validate(&d->cfg, &e) != EN_OK) {
        dm_log(DM_ERR, NULL, "cannot start: %s", e.msg);
        return 3;
    }
    if (en_store_open(d->cfg.database, 0, &d->db, &e) != EN_OK) {
        dm_log(DM_ERR, NULL, "cannot start: %s", e.msg);
        return 3;
    }
    if (uv_exepath(d->exe, &exelen) != 0) {
        dm_log(DM_ERR, NULL, "cannot find my own executable to run studies");
        return 3;
    }
    d->concurrency = auto_concurrency(&d->cfg);
    d->counts_stale = 1;
    d->idle = on_idle;
    d->clip_ended = dm_studies_kick;
    signal(SIGPIPE, SIG_IGN);

    loop = d->loop = uv_default_loop();
    loop->data = d;
    uv_timer_init(loop, &d->rescan);
    uv_timer_init(loop, &d->soon);
    uv_timer_init(loop, &d->grace);
    uv_timer_init(loop, &d->watchdog);
    uv_timer_init(loop, &d->status_tick);
    uv_fs_event_init(loop, &d->watch);
    d->grace.data = d->watchdog.data = d->status_tick.data = d;
    uv_signal_init(loop, &d->sigterm);
    uv_signal_init(loop, &d->sigint);
    uv_signal_init(loop, &d->sighup);
    d->sigterm.data = d->sigint.data = d->sighup.data = d;
    uv_signal_start(&d->sigterm, on_signal, SIGTERM);
    uv_signal_start(&d->sigint, on_signal, SIGINT);
    uv_signal_start(&d->sighup, on_signal, SIGHUP);

    d->host.fd = -1;
    dm_host_start(d);
    dm_jobs_resume(d);
    dm_studies_start(d);
    dm_intake_start(d, &e);
    uv_timer_start(&d->status_tick, on_status_tick, 1000, 1000);
    if ((wd = en_service_watchdog_ms()) >= 2)
        uv_timer_start(&d->watchdog, on_watchdog, 0, wd / 2);
    {
        dm_fields f = { .msgid = DM_MSGID_STARTED };
        dm_log(DM_NOTICE, &f, "started: watching %s, %d studies at once, %d resumed from work/",
               d->cfg.inbox_dir, d->concurrency, d->nqueued);
    }
    en_service_notify("READY=1");
    dm_jobs_pump(d);

    uv_run(loop, UV_RUN_DEFAULT);

    dm_log(DM_NOTICE, NULL, "stopped: %lld done, %lld failed in this run",
           (long long)d->done_session, (long long)d->failed_session);
    for (size_t i = 0; i < d->nseen; i++)
        free(d->seen[i].name);
    free(d->seen);
    dm_studies_free(d);
    en_store_close(d->db);
    uv_loop_close(loop);
    dm_spool_unlock(&d->lock_fd);
    return 0;
}
