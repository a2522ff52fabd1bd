/*
 * test-store-common.h - what the store tests share: a throw-away folder,
 * a deterministic synthetic study result, and a dump of every row in the
 * database (read through a separate sqlite3 connection) so a test can say
 * "nothing changed" exactly.
 */
#ifndef TEST_STORE_COMMON_H
#define TEST_STORE_COMMON_H

#include "en_store.h"

#include <ftw.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char ts_dir[512];

__attribute__((unused)) static int ts_rm(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

__attribute__((unused)) static void ts_cleanup(void)
{
    if (ts_dir[0])
        nftw(ts_dir, ts_rm, 16, FTW_DEPTH | FTW_PHYS);
}

/* Creates the folder (removed at exit). */
__attribute__((unused)) static void ts_init(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(ts_dir, sizeof ts_dir, "%s/en-store-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(ts_dir)) {
        perror("mkdtemp");
        exit(99);
    }
    atexit(ts_cleanup);
}

__attribute__((unused)) static const char *ts_path(const char *name)
{
    static char buf[4][640];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, sizeof buf[0], "%s/%s", ts_dir, name);
    return p;
}

/* A 64-hex model identity made of one repeated digit. */
__attribute__((unused)) static void ts_model(en_store_model *m, char digit, const char *arch)
{
    memset(m, 0, sizeof *m);
    memset(m->sha256, digit, 64);
    m->sha256[64] = '\0';
    snprintf(m->architecture, sizeof m->architecture, "%s", arch);
    snprintf(m->origin, sizeof m->origin, "test weights %c", digit);
    snprintf(m->file_name, sizeof m->file_name, "%s.safetensors", arch);
    snprintf(m->metadata_json, sizeof m->metadata_json, "{\"mean\":[32.5,32.6,32.9]}");
}

/* A duplicate key (keyed-hash shaped, 16 hex digits) made from n. */
__attribute__((unused)) static void ts_key(en_store_result *r, unsigned n)
{
    snprintf(r->dedup_key, sizeof r->dedup_key, "%016x", n);
}

/* A clip whose frames and beats follow from (nframes, nbeats, ef0):
 * frame i has size 1000 + 7 * i, systoles at 32, 52, 72, ...; beat k has
 * EF ef0 + k.  beats/frames must hold nbeats/nframes entries. */
__attribute__((unused)) static void ts_result(en_store_result *r, const char *pseudonym, int nframes, int nbeats,
                      double ef0, en_store_beat *beats, en_store_frame *frames)
{
    double sum = 0, ss = 0;

    en_store_result_init(r);
    snprintf(r->pseudonym, sizeof r->pseudonym, "%s", pseudonym);
    r->received_ms = 1714521600000LL;   /* 2024-05-01T00:00:00Z */
    r->started_ms = r->received_ms + 1000;
    r->finished_ms = r->received_ms + 5000;
    r->src_rows = 600;
    r->src_cols = 800;
    r->src_frames = nframes;
    r->fps = 50;
    snprintf(r->fps_source, sizeof r->fps_source, "CineRate");
    snprintf(r->transfer_syntax, sizeof r->transfer_syntax, "1.2.840.10008.1.2.4.50");
    snprintf(r->sector_method, sizeof r->sector_method, "regions");
    r->sector_confidence = 0.9;
    r->video_frames = nframes;
    ts_model(&r->seg_model, 'a', "deeplabv3_resnet50");
    ts_model(&r->ef_model, 'b', "r2plus1d_18");
    for (int i = 0; i < nframes; i++) {
        frames[i].lv_size = 1000 + 7 * i;
        frames[i].systole = 0;
    }
    for (int k = 0; k < nbeats; k++) {
        int s = 32 + 20 * k;
        beats[k].systole_frame = s;
        beats[k].clip_start = s - 32;
        beats[k].shift = 0;
        beats[k].ef = ef0 + k;
        beats[k].ed_frame = s - 10;
        beats[k].lv_size_ed = 1000 + 7 * (s - 10);
        beats[k].lv_size_es = 1000 + 7 * s;
        if (s < nframes)
            frames[s].systole = 1;
        sum += beats[k].ef;
        ss += beats[k].ef * beats[k].ef;
    }
    r->beats = beats;
    r->nbeats = nbeats;
    r->frames = frames;
    r->nframes = nframes;
    if (nbeats) {
        r->ef_mean = sum / nbeats;
        r->ef_sd = nbeats > 1 ? sqrt((ss - nbeats * r->ef_mean * r->ef_mean) / (nbeats - 1)) : NAN;
    }
    snprintf(r->ef_class, sizeof r->ef_class, "%s",
             !nbeats ? "unknown" : r->ef_mean >= 50 ? "not_reduced" : "reduced");
    r->threshold_reduced = 50;
    r->threshold_low = 40;
    r->threshold_very_low = 35;
    snprintf(r->verdict, sizeof r->verdict, "usable");
    snprintf(r->verdict_codes, sizeof r->verdict_codes, "%s", "");
    snprintf(r->verdict_text, sizeof r->verdict_text, "usable: looks apical four-chamber");
    snprintf(r->sop_class, sizeof r->sop_class, "1.2.840.10008.5.1.4.1.1.3.1");
    snprintf(r->modality, sizeof r->modality, "US");
    snprintf(r->regions, sizeof r->regions, "2d");
    snprintf(r->video_file, sizeof r->video_file, "%s-clip.avi", pseudonym);
    r->ms.read = 10; r->ms.sector = 20; r->ms.video = 30; r->ms.segment = 400;
    r->ms.ef = 900; r->ms.analysis = 1; r->ms.total = 1361;
}

/* Every row of every table, as text, through its own connection: the
 * exact state of the file as another process would see it. */
__attribute__((unused)) static char *ts_dump(const char *db_path)
{
    static const char *const tables[] = {
        "SELECT * FROM models ORDER BY 1",
        "SELECT * FROM studies ORDER BY 1",
        "SELECT * FROM clips ORDER BY 1",
        "SELECT * FROM beats ORDER BY 1, 2",
        "SELECT * FROM frames ORDER BY 1, 2",
        "SELECT * FROM events ORDER BY 1",
    };
    sqlite3 *db;
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);

    if (!out || sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        fprintf(stderr, "ts_dump: cannot open %s\n", db_path);
        exit(99);
    }
    out[0] = '\0';
    for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++) {
        sqlite3_stmt *s;
        if (sqlite3_prepare_v2(db, tables[t], -1, &s, NULL) != SQLITE_OK) {
            fprintf(stderr, "ts_dump: %s\n", sqlite3_errmsg(db));
            exit(99);
        }
        while (sqlite3_step(s) == SQLITE_ROW) {
            for (int c = 0; c < sqlite3_column_count(s); c++) {
                const unsigned char *v = sqlite3_column_text(s, c);
                size_t need = (v ? strlen((const char *)v) : 4) + 2;
                if (len + need + 1 > cap) {
                    cap = 2 * (len + need + 1);
                    out = realloc(out, cap);
                    if (!out)
                        exit(99);
                }
                len += (size_t)sprintf(out + len, "%s%c", v ? (const char *)v : "NULL",
                                       c + 1 < sqlite3_column_count(s) ? '|' : '\n');
            }
        }
        sqlite3_finalize(s);
        if (len + 4 > cap) {
            cap = 2 * cap;
            out = realloc(out, cap);
            if (!out)
                exit(99);
        }
        memcpy(out + len, "--\n", 4);
        len += 3;
    }
    sqlite3_close(db);
    return out;
}

/* One integer from SQL, through a separate connection. */
__attribute__((unused)) static long long ts_sql_int(const char *db_path, const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *s;
    long long v = -999;

    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
        fprintf(stderr, "ts_sql_int: %s: %s\n", sql, sqlite3_errmsg(db));
        exit(99);
    }
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

/* Reads a whole FILE* written by an export back into a string. */
__attribute__((unused)) static char *ts_slurp(FILE *f)
{
    long n;
    char *buf;

    fflush(f);
    n = ftell(f);
    rewind(f);
    buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n)
        exit(99);
    buf[n] = '\0';
    return buf;
}

#endif
