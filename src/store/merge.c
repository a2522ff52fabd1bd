/*
 * merge.c - one results database from many (en_merge.h): the shards of a
 * back-fill, each written by one Slurm array task, merged into one.
 *
 * The merge is driven by the schema, read from SQLite's pragmas, so a new
 * migration needs no change here:
 *   - a table's own row id (an INTEGER PRIMARY KEY) means nothing outside
 *     its file: rows get new ids in the target, and every foreign key that
 *     points at such an id is translated through a map (temp.en_map_T);
 *   - a row is recognised by its natural keys: the UNIQUE constraints and
 *     primary keys that hold no such id (a study's pseudonym, a clip's
 *     duplicate key, a model's hash).  Found in the target: present, left
 *     as it is; else added;
 *   - a row with no key of its own (a beat, a frame, an event) belongs to
 *     the rows its foreign keys name, and comes with them: it is copied
 *     when one of them was added by this merge, not when they were already
 *     present (it came with them then).  One with no parent at all (an
 *     event of no study) is copied unless an identical row is there.
 * Parents go before children (tables are ordered by their foreign keys).
 * That makes merging twice a no-op, and keeps every study and clip once.
 *
 * What the schema cannot say is in `rules` below: which columns widen a
 * span when a row is present, which state replaces which (a clip a killed
 * task left processing is replaced by the same clip finished), and which
 * column marks a parent whose result must be computed again when children
 * came from several shards.  A rule naming a column the schema lacks does
 * nothing.
 *
 * The merge uses its own SQLite connection to the target (the store's
 * handle is opaque): one BEGIN IMMEDIATE transaction, the shard ATTACHed
 * read-only.
 */
#include "en_merge.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#define FP_KEY "site_fingerprint"
#define FP_LABEL "echonetd site fingerprint v1"
#define BUSY_MS 10000

/* ---- the rules the schema cannot state ------------------------------------- */

typedef enum rule_kind {
    RULE_MIN,    /* present row: keep the earliest of both values */
    RULE_MAX,    /* present row: keep the latest */
    RULE_RANK,   /* a shard row of a later state replaces the target's */
    RULE_STALE   /* set to 1 on a present row that got children from a shard */
} rule_kind;

static const struct rule {
    const char *table, *column;
    rule_kind kind;
    const char *ranking;    /* RULE_RANK: states, lowest first */
} rules[] = {
    { "studies", "first_received_at", RULE_MIN, NULL },
    { "studies", "last_received_at", RULE_MAX, NULL },
    { "models", "first_seen", RULE_MIN, NULL },
    { "models", "last_seen", RULE_MAX, NULL },
    { "clips", "status", RULE_RANK, "queued,processing,failed,done" },
    { "studies", "result_stale", RULE_STALE, NULL },
};

/* Per-file bookkeeping, never merged. */
static const char *const skipped_tables[] = { "meta", "schema_migrations" };

/* ---- the schema as read -------------------------------------------------- */

#define MAX_COLS 96
#define MAX_KEYS 8
#define MAX_KEY_COLS 8

typedef struct mkey {
    int n;
    int col[MAX_KEY_COLS];
} mkey;

typedef struct mtable {
    char name[64];
    int ncols;
    char col[MAX_COLS][64];
    int parent[MAX_COLS];   /* table index when the column holds a parent's row id */
    int surrogate;          /* column of the table's own row id, or -1 */
    int rowid_table;        /* 0 for WITHOUT ROWID */
    int nkeys;
    mkey key[MAX_KEYS];     /* natural keys */
    int nfk_tables;
    int fk_table[MAX_COLS]; /* every table referenced (for the order) */
    int min_col[MAX_COLS], nmin;
    int max_col[MAX_COLS], nmax;
    int rank_col;
    const char *ranking;
    int stale_col;
    int done;
} mtable;

typedef struct merge {
    sqlite3 *db;
    const char *into, *shard;
    mtable *t;
    int nt;
    int *order;
    en_merge_stats *stats;
    en_err *err;
} merge;

/* ---- small helpers --------------------------------------------------------- */

typedef struct sbuf {
    char *s;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (b->oom)
        return;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap ? b->cap * 2 : 256) + (size_t)n;
        char *grown = realloc(b->s, cap);
        if (!grown) {
            b->oom = 1;
            return;
        }
        b->s = grown;
        b->cap = cap;
    }
}

/* An identifier from the schema, quoted for SQL. */
static void sb_id(sbuf *b, const char *name)
{
    sb_add(b, "\"");
    for (const char *c = name; *c; c++)
        sb_add(b, *c == '"' ? "\"\"" : "%c", *c);
    sb_add(b, "\"");
}

static int db_fail(merge *m, const char *what)
{
    return en_err_set(m->err, EN_EIO, "merge of %s into %s: %s: %s", m->shard, m->into, what,
                      sqlite3_errmsg(m->db));
}

static int exec(merge *m, const char *sql, const char *what)
{
    return sqlite3_exec(m->db, sql, NULL, NULL, NULL) == SQLITE_OK ? EN_OK : db_fail(m, what);
}

static int exec_sb(merge *m, sbuf *b, const char *what)
{
    if (b->oom)
        return en_err_set(m->err, EN_ENOMEM, "merge of %s: out of memory", m->shard);
    return exec(m, b->s, what);
}

static int prepare(merge *m, const char *sql, sqlite3_stmt **st, const char *what)
{
    return sqlite3_prepare_v2(m->db, sql, -1, st, NULL) == SQLITE_OK ? EN_OK : db_fail(m, what);
}

/* One integer from a query; EN_ENOTFOUND when it returns no row. */
static int query_int(merge *m, const char *sql, int64_t *out, const char *what)
{
    sqlite3_stmt *st;
    int rc = prepare(m, sql, &st, what);

    if (rc != EN_OK)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (rc == SQLITE_ROW)
        return EN_OK;
    return rc == SQLITE_DONE ? EN_ENOTFOUND : db_fail(m, what);
}

/* The fingerprint recorded in schema's meta table ("" when none). */
static int read_fp(merge *m, const char *schema, char out[EN_MERGE_FP_LEN + 1])
{
    sqlite3_stmt *st;
    char sql[160];
    int rc;

    out[0] = '\0';
    snprintf(sql, sizeof sql, "SELECT value FROM %s.meta WHERE key = '" FP_KEY "'", schema);
    if ((rc = prepare(m, sql, &st, "reading the site fingerprint")) != EN_OK)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(out, EN_MERGE_FP_LEN + 1, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? EN_OK
                                                 : db_fail(m, "reading the site fingerprint");
}

static int open_db(const char *path, sqlite3 **db, en_err *err)
{
    struct stat sb;

    *db = NULL;
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
        return en_err_set(err, EN_ENOTFOUND, "database %s does not exist", path);
    if (sqlite3_open_v2(path, db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_URI, NULL) != SQLITE_OK) {
        en_err_set(err, EN_EIO, "cannot open database %s: %s", path,
                   *db ? sqlite3_errmsg(*db) : "out of memory");
        sqlite3_close(*db);
        *db = NULL;
        return EN_EIO;
    }
    sqlite3_busy_timeout(*db, BUSY_MS);
    sqlite3_exec(*db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL);
    return EN_OK;
}

/* ---- fingerprint ----------------------------------------------------------- */

int en_merge_fingerprint(const en_deid *d, char out[EN_MERGE_FP_LEN + 1], en_err *err)
{
    /* The label is no UID (a UID is digits and dots), so the fingerprint
     * can never equal a study's pseudonym. */
    return en_deid_pseudonym(d, FP_LABEL, out, err);
}

/* Records fp in schema's meta when absent; refuses another one. */
static int stamp(merge *m, const char *schema, const char *path, const char *fp)
{
    char have[EN_MERGE_FP_LEN + 1], sql[200];
    int rc;

    if ((rc = read_fp(m, schema, have)) != EN_OK)
        return rc;
    if (have[0] && strcmp(have, fp) != 0)
        return en_err_set(m->err, EN_EPERM,
                          "database %s was made with another site secret (site fingerprint %s, "
                          "this site's is %s): its pseudonyms would not match this site's; use "
                          "the [deid] secret_file it was made with", path, have, fp);
    if (have[0])
        return EN_OK;
    snprintf(sql, sizeof sql, "INSERT INTO %s.meta (key, value) VALUES ('" FP_KEY "', '%s')",
             schema, fp);
    return exec(m, sql, "recording the site fingerprint");
}

int en_merge_stamp(const char *path, const char *fp, en_err *err)
{
    merge m = { .into = path, .shard = path, .err = err };
    int rc;

    if ((rc = open_db(path, &m.db, err)) != EN_OK)
        return rc;
    rc = exec(&m, "BEGIN IMMEDIATE", "recording the site fingerprint");
    if (rc == EN_OK)
        rc = stamp(&m, "main", path, fp);
    if (rc == EN_OK)
        rc = exec(&m, "COMMIT", "recording the site fingerprint");
    else
        sqlite3_exec(m.db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(m.db);
    return rc;
}

/* ---- reading the schema ---------------------------------------------------- */

static int table_index(const merge *m, const char *name)
{
    for (int i = 0; i < m->nt; i++)
        if (!strcmp(m->t[i].name, name))
            return i;
    return -1;
}

static int col_index(const mtable *t, const char *name)
{
    for (int i = 0; i < t->ncols; i++)
        if (!strcmp(t->col[i], name))
            return i;
    return -1;
}

static int read_tables(merge *m)
{
    sqlite3_stmt *st;
    int rc = prepare(m, "SELECT name FROM main.sqlite_schema WHERE type = 'table' AND name NOT "
                        "LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name", &st, "reading the schema");

    while (rc == EN_OK && sqlite3_step(st) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        int skip = 0;
        for (size_t i = 0; i < sizeof skipped_tables / sizeof *skipped_tables; i++)
            skip |= !strcmp(name, skipped_tables[i]);
        if (skip)
            continue;
        if (m->nt >= EN_MERGE_MAX_TABLES || strlen(name) >= sizeof m->t->name) {
            rc = en_err_set(m->err, EN_EUNSUPPORTED, "merge: too many tables or a table name "
                            "too long in %s (%s)", m->into, name);
            break;
        }
        mtable *grown = realloc(m->t, (size_t)(m->nt + 1) * sizeof *m->t);
        if (!grown) {
            rc = en_err_set(m->err, EN_ENOMEM, "merge: out of memory");
            break;
        }
        m->t = grown;
        memset(&m->t[m->nt], 0, sizeof *m->t);
        snprintf(m->t[m->nt].name, sizeof m->t->name, "%s", name);
        m->nt++;
    }
    if (st)
        sqlite3_finalize(st);
    return rc;
}

/* Columns of schema.table, with pk and declared type; fills t when fill. */
static int read_columns(merge *m, mtable *t, const char *schema, int fill)
{
    sqlite3_stmt *st;
    sbuf q = { 0 };
    int rc, n = 0, pk = 0, pk_col = -1, int_pk = 0;

    sb_add(&q, "PRAGMA %s.table_info(", schema);
    sb_id(&q, t->name);
    sb_add(&q, ")");
    rc = q.oom ? en_err_set(m->err, EN_ENOMEM, "merge: out of memory")
               : prepare(m, q.s, &st, "reading the schema");
    free(q.s);
    if (rc != EN_OK)
        return rc;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 1);
        const char *type = (const char *)sqlite3_column_text(st, 2);
        if (n >= MAX_COLS || strlen(name) >= sizeof t->col[0]) {
            rc = en_err_set(m->err, EN_EUNSUPPORTED, "merge: table %s has too many columns",
                            t->name);
            break;
        }
        if (fill) {
            snprintf(t->col[n], sizeof t->col[n], "%s", name);
        } else if (n >= t->ncols || strcmp(t->col[n], name) != 0) {
            rc = EN_EFORMAT;
            break;
        }
        if (sqlite3_column_int(st, 5) > 0) {
            pk++;
            pk_col = n;
            int_pk = type && !sqlite3_stricmp(type, "INTEGER");
        }
        n++;
    }
    sqlite3_finalize(st);
    if (rc == EN_OK && n == 0)
        return en_err_set(m->err, EN_EFORMAT, "%s has no table %s, which %s has",
                          fill ? m->into : m->shard, t->name, fill ? m->shard : m->into);
    if (rc == EN_OK && !fill && n != t->ncols)
        rc = EN_EFORMAT;
    if (rc == EN_EFORMAT)
        return en_err_set(m->err, EN_EFORMAT, "shard %s: table %s has other columns than in %s "
                          "although both say the same schema version: was one made by a "
                          "modified echonetd?", m->shard, t->name, m->into);
    if (rc != EN_OK || !fill)
        return rc;
    t->ncols = n;
    t->surrogate = pk == 1 && int_pk && t->rowid_table ? pk_col : -1;
    return EN_OK;
}

static int is_rowid_table(merge *m, const mtable *t)
{
    sqlite3_stmt *st = NULL;
    sbuf q = { 0 };
    int ok;

    sb_add(&q, "SELECT _rowid_ FROM main.");
    sb_id(&q, t->name);
    sb_add(&q, " LIMIT 0");
    ok = !q.oom && sqlite3_prepare_v2(m->db, q.s, -1, &st, NULL) == SQLITE_OK;
    sqlite3_finalize(st);
    free(q.s);
    return ok;
}

static int read_foreign_keys(merge *m, mtable *t)
{
    sqlite3_stmt *st;
    sbuf q = { 0 };
    int rc;

    for (int i = 0; i < MAX_COLS; i++)
        t->parent[i] = -1;
    sb_add(&q, "PRAGMA main.foreign_key_list(");
    sb_id(&q, t->name);
    sb_add(&q, ")");
    rc = q.oom ? en_err_set(m->err, EN_ENOMEM, "merge: out of memory")
               : prepare(m, q.s, &st, "reading the schema");
    free(q.s);
    if (rc != EN_OK)
        return rc;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *ptable = (const char *)sqlite3_column_text(st, 2);
        const char *from = (const char *)sqlite3_column_text(st, 3);
        const char *to = (const char *)sqlite3_column_text(st, 4);
        int p = table_index(m, ptable), c = col_index(t, from);
        if (p < 0 || c < 0)
            continue;   /* a per-file table, or a column we cannot see */
        int known = 0;
        for (int i = 0; i < t->nfk_tables; i++)
            known |= t->fk_table[i] == p;
        if (!known && p != (int)(t - m->t))
            t->fk_table[t->nfk_tables++] = p;
        const mtable *pt = &m->t[p];
        if (pt->surrogate >= 0 && (!to || !strcmp(to, pt->col[pt->surrogate])))
            t->parent[c] = p;
    }
    sqlite3_finalize(st);
    return EN_OK;
}

/* Unique keys holding no row id: what recognises a row in another file. */
static int read_keys(merge *m, mtable *t)
{
    sqlite3_stmt *st, *cols = NULL;
    sbuf q = { 0 };
    int rc;

    sb_add(&q, "PRAGMA main.index_list(");
    sb_id(&q, t->name);
    sb_add(&q, ")");
    rc = q.oom ? en_err_set(m->err, EN_ENOMEM, "merge: out of memory")
               : prepare(m, q.s, &st, "reading the schema");
    free(q.s);
    if (rc != EN_OK)
        return rc;
    while (rc == EN_OK && sqlite3_step(st) == SQLITE_ROW) {
        const char *index = (const char *)sqlite3_column_text(st, 1);
        if (!sqlite3_column_int(st, 2) || sqlite3_column_int(st, 4) || t->nkeys >= MAX_KEYS)
            continue;   /* not unique, or partial */
        mkey k = { 0 };
        int usable = 1;
        q = (sbuf){ 0 };
        sb_add(&q, "PRAGMA main.index_info(");
        sb_id(&q, index);
        sb_add(&q, ")");
        if (q.oom || sqlite3_prepare_v2(m->db, q.s, -1, &cols, NULL) != SQLITE_OK) {
            rc = db_fail(m, "reading the schema");
            free(q.s);
            break;
        }
        free(q.s);
        while (sqlite3_step(cols) == SQLITE_ROW) {
            const char *name = (const char *)sqlite3_column_text(cols, 2);
            int c = name ? col_index(t, name) : -1;
            if (c < 0 || c == t->surrogate || t->parent[c] >= 0 || k.n >= MAX_KEY_COLS)
                usable = 0;
            else
                k.col[k.n++] = c;
        }
        sqlite3_finalize(cols);
        if (usable && k.n > 0)
            t->key[t->nkeys++] = k;
    }
    sqlite3_finalize(st);
    return rc;
}

static void apply_rules(mtable *t)
{
    t->rank_col = t->stale_col = -1;
    for (size_t i = 0; i < sizeof rules / sizeof *rules; i++) {
        int c;
        if (strcmp(rules[i].table, t->name) != 0 || (c = col_index(t, rules[i].column)) < 0)
            continue;
        switch (rules[i].kind) {
        case RULE_MIN: t->min_col[t->nmin++] = c; break;
        case RULE_MAX: t->max_col[t->nmax++] = c; break;
        case RULE_RANK: t->rank_col = c; t->ranking = rules[i].ranking; break;
        case RULE_STALE: t->stale_col = c; break;
        }
    }
}

/* Parents before children. */
static int order_tables(merge *m)
{
    m->order = calloc((size_t)m->nt, sizeof *m->order);
    if (!m->order)
        return en_err_set(m->err, EN_ENOMEM, "merge: out of memory");
    for (int n = 0; n < m->nt; n++) {
        int pick = -1;
        for (int i = 0; i < m->nt && pick < 0; i++) {
            int ready = !m->t[i].done;
            for (int j = 0; ready && j < m->t[i].nfk_tables; j++)
                ready = m->t[m->t[i].fk_table[j]].done;
            if (ready)
                pick = i;
        }
        if (pick < 0)
            return en_err_set(m->err, EN_EUNSUPPORTED, "merge: the foreign keys of %s form a "
                              "cycle; this merge cannot order its tables", m->into);
        m->t[pick].done = 1;
        m->order[n] = pick;
    }
    return EN_OK;
}

static int read_schema(merge *m)
{
    int rc = read_tables(m);

    for (int i = 0; rc == EN_OK && i < m->nt; i++) {
        m->t[i].rowid_table = is_rowid_table(m, &m->t[i]);
        rc = read_columns(m, &m->t[i], "main", 1);
    }
    for (int i = 0; rc == EN_OK && i < m->nt; i++)
        rc = read_columns(m, &m->t[i], "shard", 0);
    for (int i = 0; rc == EN_OK && i < m->nt; i++)
        rc = read_foreign_keys(m, &m->t[i]);
    for (int i = 0; rc == EN_OK && i < m->nt; i++) {
        rc = read_keys(m, &m->t[i]);
        apply_rules(&m->t[i]);
    }
    return rc == EN_OK ? order_tables(m) : rc;
}

/* ---- the maps of row ids ----------------------------------------------------- */

enum { FATE_PRESENT = 0, FATE_ADDED = 1, FATE_REPLACED = 2 };

static void sb_map(sbuf *b, const mtable *t);

static int make_map(merge *m, const mtable *t)
{
    sbuf q = { 0 };
    int rc;

    sb_add(&q, "DROP TABLE IF EXISTS ");
    sb_map(&q, t);
    sb_add(&q, "; CREATE TABLE ");
    sb_map(&q, t);
    sb_add(&q, " (old INTEGER PRIMARY KEY, new INTEGER NOT NULL, fate INTEGER NOT NULL)");
    rc = exec_sb(m, &q, "making a map of row ids");
    free(q.s);
    return rc;
}

static void drop_maps(merge *m)
{
    for (int i = 0; i < m->nt; i++) {
        if (m->t[i].surrogate < 0)
            continue;
        sbuf q = { 0 };
        sb_add(&q, "DROP TABLE IF EXISTS ");
        sb_map(&q, &m->t[i]);
        if (!q.oom)
            sqlite3_exec(m->db, q.s, NULL, NULL, NULL);
        free(q.s);
    }
}

/* The map of table t's row ids: temp."en_map_<t>", a name no schema uses,
 * so it shadows no table of main. */
static void sb_map(sbuf *b, const mtable *t)
{
    sbuf name = { 0 };

    sb_add(&name, "en_map_%s", t->name);
    sb_add(b, "temp.");
    if (name.oom)
        b->oom = 1;
    else
        sb_id(b, name.s);
    free(name.s);
}

/* ---- rows with keys, one by one -------------------------------------------- */

typedef struct keyed {
    sqlite3_stmt *read;      /* the shard's rows */
    sqlite3_stmt *find[MAX_KEYS];
    sqlite3_stmt *insert;    /* every column but the row id */
    sqlite3_stmt *remove;
    sqlite3_stmt *same;      /* an identical row (for rows no key recognises) */
    sqlite3_stmt *map_get[MAX_COLS];
    sqlite3_stmt *map_put;
    sqlite3_stmt *widen;     /* min/max rules */
    sqlite3_stmt *stale[MAX_COLS];
} keyed;

static void keyed_free(keyed *k)
{
    sqlite3_finalize(k->read);
    sqlite3_finalize(k->insert);
    sqlite3_finalize(k->remove);
    sqlite3_finalize(k->same);
    sqlite3_finalize(k->map_put);
    sqlite3_finalize(k->widen);
    for (int i = 0; i < MAX_KEYS; i++)
        sqlite3_finalize(k->find[i]);
    for (int i = 0; i < MAX_COLS; i++) {
        sqlite3_finalize(k->map_get[i]);
        sqlite3_finalize(k->stale[i]);
    }
}

static int prepare_sb(merge *m, sbuf *q, sqlite3_stmt **st)
{
    int rc = q->oom ? en_err_set(m->err, EN_ENOMEM, "merge: out of memory")
                    : prepare(m, q->s, st, "preparing a statement");
    free(q->s);
    *q = (sbuf){ 0 };
    return rc;
}

static int keyed_prepare(merge *m, const mtable *t, keyed *k)
{
    sbuf q = { 0 };
    int rc;

    sb_add(&q, "SELECT ");
    for (int c = 0; c < t->ncols; c++) {
        sb_add(&q, c ? ", " : "");
        sb_id(&q, t->col[c]);
    }
    sb_add(&q, " FROM shard.");
    sb_id(&q, t->name);
    if (t->rowid_table)
        sb_add(&q, " ORDER BY _rowid_");
    if ((rc = prepare_sb(m, &q, &k->read)) != EN_OK)
        return rc;

    for (int i = 0; i < t->nkeys; i++) {
        sb_add(&q, "SELECT %s", t->rowid_table ? "_rowid_" : "0");
        for (int c = 0; c < t->ncols; c++) {
            sb_add(&q, ", ");
            sb_id(&q, t->col[c]);
        }
        sb_add(&q, " FROM main.");
        sb_id(&q, t->name);
        for (int j = 0; j < t->key[i].n; j++) {
            sb_add(&q, j ? " AND " : " WHERE ");
            sb_id(&q, t->col[t->key[i].col[j]]);
            sb_add(&q, " = ?%d", j + 1);
        }
        if ((rc = prepare_sb(m, &q, &k->find[i])) != EN_OK)
            return rc;
    }

    sb_add(&q, "INSERT INTO main.");
    sb_id(&q, t->name);
    sb_add(&q, " (");
    for (int c = 0, n = 0; c < t->ncols; c++) {
        if (c == t->surrogate)
            continue;
        sb_add(&q, n++ ? ", " : "");
        sb_id(&q, t->col[c]);
    }
    sb_add(&q, ") VALUES (");
    for (int c = 0, n = 0; c < t->ncols; c++)
        if (c != t->surrogate)
            sb_add(&q, n++ ? ", ?%d" : "?%d", c + 1);
    sb_add(&q, ")");
    if ((rc = prepare_sb(m, &q, &k->insert)) != EN_OK)
        return rc;

    if (t->rowid_table) {
        sb_add(&q, "DELETE FROM main.");
        sb_id(&q, t->name);
        sb_add(&q, " WHERE _rowid_ = ?1");
        if ((rc = prepare_sb(m, &q, &k->remove)) != EN_OK)
            return rc;
        sb_add(&q, "SELECT _rowid_ FROM main.");
        sb_id(&q, t->name);
        sb_add(&q, " WHERE 1");
        for (int c = 0; c < t->ncols; c++) {
            if (c == t->surrogate)
                continue;
            sb_add(&q, " AND ");
            sb_id(&q, t->col[c]);
            sb_add(&q, " IS ?%d", c + 1);
        }
        if ((rc = prepare_sb(m, &q, &k->same)) != EN_OK)
            return rc;
    }

    if (t->surrogate >= 0) {
        sb_add(&q, "INSERT INTO ");
        sb_map(&q, t);
        sb_add(&q, " (old, new, fate) VALUES (?1, ?2, ?3)");
        if ((rc = prepare_sb(m, &q, &k->map_put)) != EN_OK)
            return rc;
    }
    for (int c = 0; c < t->ncols; c++) {
        if (t->parent[c] < 0)
            continue;
        const mtable *p = &m->t[t->parent[c]];
        sb_add(&q, "SELECT new, fate FROM ");
        sb_map(&q, p);
        sb_add(&q, " WHERE old = ?1");
        if ((rc = prepare_sb(m, &q, &k->map_get[c])) != EN_OK)
            return rc;
        if (p->stale_col >= 0) {
            sb_add(&q, "UPDATE main.");
            sb_id(&q, p->name);
            sb_add(&q, " SET ");
            sb_id(&q, p->col[p->stale_col]);
            sb_add(&q, " = 1 WHERE _rowid_ = ?1");
            if ((rc = prepare_sb(m, &q, &k->stale[c])) != EN_OK)
                return rc;
        }
    }
    if (t->nmin + t->nmax > 0 && t->rowid_table) {
        sb_add(&q, "UPDATE main.");
        sb_id(&q, t->name);
        for (int i = 0; i < t->nmin + t->nmax; i++) {
            int c = i < t->nmin ? t->min_col[i] : t->max_col[i - t->nmin];
            sb_add(&q, i ? ", " : " SET ");
            sb_id(&q, t->col[c]);
            sb_add(&q, " = CASE WHEN ?%d IS NOT NULL AND (", c + 2);
            sb_id(&q, t->col[c]);
            sb_add(&q, " IS NULL OR ?%d %s ", c + 2, i < t->nmin ? "<" : ">");
            sb_id(&q, t->col[c]);
            sb_add(&q, ") THEN ?%d ELSE ", c + 2);
            sb_id(&q, t->col[c]);
            sb_add(&q, " END");
        }
        sb_add(&q, " WHERE _rowid_ = ?1");
        if ((rc = prepare_sb(m, &q, &k->widen)) != EN_OK)
            return rc;
    }
    return EN_OK;
}

static int rank_of(const char *ranking, const unsigned char *value)
{
    size_t n;
    int r = 0;

    if (!ranking || !value)
        return -1;
    n = strlen((const char *)value);
    for (const char *s = ranking; *s; r++) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (len == n && !strncmp(s, (const char *)value, n))
            return r;
        if (!e)
            break;
        s = e + 1;
    }
    return -1;
}

/* The parents' new ids for one shard row.  *missing: a parent that was left
 * out; *fresh: a parent added or replaced by this merge; *present_parent
 * gets, per column, whether the parent was already there. */
typedef struct parents {
    sqlite3_int64 id[MAX_COLS];
    int has[MAX_COLS];
    int present[MAX_COLS];
    int missing, fresh, any;
} parents;

static int map_parents(merge *m, const mtable *t, keyed *k, sqlite3_stmt *row, parents *pa)
{
    memset(pa, 0, sizeof *pa);
    for (int c = 0; c < t->ncols; c++) {
        if (t->parent[c] < 0 || sqlite3_column_type(row, c) == SQLITE_NULL)
            continue;
        sqlite3_stmt *g = k->map_get[c];
        int rc;
        pa->any = 1;
        sqlite3_bind_int64(g, 1, sqlite3_column_int64(row, c));
        rc = sqlite3_step(g);
        if (rc == SQLITE_ROW) {
            pa->has[c] = 1;
            pa->id[c] = sqlite3_column_int64(g, 0);
            pa->present[c] = sqlite3_column_int(g, 1) == FATE_PRESENT;
            pa->fresh |= !pa->present[c];
        } else if (rc == SQLITE_DONE) {
            pa->missing = 1;
        }
        sqlite3_reset(g);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            return db_fail(m, "reading a map of row ids");
    }
    return EN_OK;
}

static int step_done(merge *m, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? EN_OK : db_fail(m, what);
}

static int insert_row(merge *m, const mtable *t, keyed *k, sqlite3_stmt *row, const parents *pa,
                      sqlite3_int64 *id)
{
    int rc;

    sqlite3_clear_bindings(k->insert);
    for (int c = 0; c < t->ncols; c++) {
        if (c == t->surrogate)
            continue;
        if (pa->has[c])
            sqlite3_bind_int64(k->insert, c + 1, pa->id[c]);
        else
            sqlite3_bind_value(k->insert, c + 1, sqlite3_column_value(row, c));
    }
    if (step_done(m, k->insert, "adding a row") != EN_OK)
        return en_err_prefix(m->err, "table %s", t->name);
    *id = sqlite3_last_insert_rowid(m->db);
    /* Children came from here into a parent that was there already: its
     * result, made from the children it had, must be made again. */
    for (int c = 0; c < t->ncols; c++) {
        if (!pa->has[c] || !pa->present[c] || !k->stale[c])
            continue;
        sqlite3_bind_int64(k->stale[c], 1, pa->id[c]);
        if ((rc = step_done(m, k->stale[c], "marking a result stale")) != EN_OK)
            return rc;
    }
    return EN_OK;
}

/* The target's row matching one of the shard row's keys: *found 1 and
 * k->find[*which] positioned on it (reset by the caller). */
static int find_row(merge *m, const mtable *t, keyed *k, sqlite3_stmt *row, int *found,
                    int *which, int *keyless)
{
    *found = 0;
    *keyless = 1;
    for (int i = 0; i < t->nkeys; i++) {
        sqlite3_stmt *f = k->find[i];
        int null = 0, rc;
        for (int j = 0; j < t->key[i].n; j++) {
            int c = t->key[i].col[j];
            null |= sqlite3_column_type(row, c) == SQLITE_NULL;
            sqlite3_bind_value(f, j + 1, sqlite3_column_value(row, c));
        }
        if (null) {
            sqlite3_reset(f);
            continue;
        }
        *keyless = 0;
        rc = sqlite3_step(f);
        if (rc == SQLITE_ROW) {
            *found = 1;
            *which = i;
            return EN_OK;
        }
        sqlite3_reset(f);
        if (rc != SQLITE_DONE)
            return db_fail(m, "looking a row up");
    }
    return EN_OK;
}

/* A row equal to the shard's in every column but the row id. */
static int find_same(merge *m, const mtable *t, keyed *k, sqlite3_stmt *row, const parents *pa,
                     int *found, sqlite3_int64 *id)
{
    int rc;

    sqlite3_clear_bindings(k->same);
    for (int c = 0; c < t->ncols; c++) {
        if (c == t->surrogate)
            continue;
        if (pa->has[c])
            sqlite3_bind_int64(k->same, c + 1, pa->id[c]);
        else
            sqlite3_bind_value(k->same, c + 1, sqlite3_column_value(row, c));
    }
    rc = sqlite3_step(k->same);
    *found = rc == SQLITE_ROW;
    if (*found)
        *id = sqlite3_column_int64(k->same, 0);
    sqlite3_reset(k->same);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? EN_OK : db_fail(m, "looking a row up");
}

static int map_put(merge *m, keyed *k, sqlite3_int64 old, sqlite3_int64 new, int fate)
{
    if (!k->map_put)
        return EN_OK;
    sqlite3_bind_int64(k->map_put, 1, old);
    sqlite3_bind_int64(k->map_put, 2, new);
    sqlite3_bind_int(k->map_put, 3, fate);
    return step_done(m, k->map_put, "recording a map of row ids");
}

/* A row the target has already: it must belong to the same parents, and
 * is either kept (spans widened) or, when the shard's is further along,
 * replaced. */
static int merge_present(merge *m, const mtable *t, keyed *k, sqlite3_stmt *row,
                         sqlite3_stmt *hit, const parents *pa, en_merge_count *cnt,
                         sqlite3_int64 *id, int *fate)
{
    sqlite3_int64 there = sqlite3_column_int64(hit, 0);
    int rc;

    for (int c = 0; c < t->ncols; c++)
        if (pa->has[c] && sqlite3_column_int64(hit, c + 1) != pa->id[c])
            return en_err_set(m->err, EN_EINVAL,
                              "shard %s: a row of %s is already in %s under another %s (%s "
                              "differs): the databases contradict each other; were they made "
                              "with different site secrets or by a modified echonetd?",
                              m->shard, t->name, m->into, m->t[t->parent[c]].name, t->col[c]);
    if (t->rank_col >= 0 && t->rowid_table &&
        rank_of(t->ranking, sqlite3_column_text(row, t->rank_col)) >
            rank_of(t->ranking, sqlite3_column_text(hit, t->rank_col + 1))) {
        sqlite3_bind_int64(k->remove, 1, there);
        if ((rc = step_done(m, k->remove, "replacing an unfinished row")) != EN_OK)
            return rc;
        if ((rc = insert_row(m, t, k, row, pa, id)) != EN_OK)
            return rc;
        cnt->replaced++;
        *fate = FATE_REPLACED;
        return EN_OK;
    }
    if (k->widen) {
        sqlite3_bind_int64(k->widen, 1, there);
        for (int c = 0; c < t->ncols; c++)
            sqlite3_bind_value(k->widen, c + 2, sqlite3_column_value(row, c));
        if ((rc = step_done(m, k->widen, "widening a span")) != EN_OK)
            return rc;
    }
    cnt->present++;
    *id = there;
    *fate = FATE_PRESENT;
    return EN_OK;
}

static int merge_keyed(merge *m, const mtable *t, en_merge_count *cnt)
{
    keyed k;
    int rc, step = SQLITE_DONE;

    memset(&k, 0, sizeof k);
    if ((rc = keyed_prepare(m, t, &k)) != EN_OK) {
        keyed_free(&k);
        return rc;
    }
    while (rc == EN_OK && (step = sqlite3_step(k.read)) == SQLITE_ROW) {
        sqlite3_int64 old = t->surrogate >= 0 ? sqlite3_column_int64(k.read, t->surrogate) : 0;
        sqlite3_int64 id = 0;
        int found, which = 0, keyless, fate = FATE_ADDED;
        parents pa;

        if ((rc = map_parents(m, t, &k, k.read, &pa)) != EN_OK)
            break;
        if (pa.missing) {
            cnt->left_out++;
            continue;
        }
        if ((rc = find_row(m, t, &k, k.read, &found, &which, &keyless)) != EN_OK)
            break;
        if (found) {
            rc = merge_present(m, t, &k, k.read, k.find[which], &pa, cnt, &id, &fate);
            sqlite3_reset(k.find[which]);
        } else if (keyless && pa.any && !pa.fresh) {
            /* Nothing recognises it, and its parent was there already:
             * copying it again would make a second one on every merge. */
            cnt->left_out++;
            continue;
        } else if (keyless && !pa.any && k.same) {
            rc = find_same(m, t, &k, k.read, &pa, &found, &id);
            if (rc == EN_OK && found) {
                cnt->present++;
                fate = FATE_PRESENT;
            } else if (rc == EN_OK) {
                rc = insert_row(m, t, &k, k.read, &pa, &id);
                cnt->added += rc == EN_OK;
            }
        } else {
            rc = insert_row(m, t, &k, k.read, &pa, &id);
            cnt->added += rc == EN_OK;
        }
        if (rc == EN_OK)
            rc = map_put(m, &k, old, id, fate);
    }
    if (rc == EN_OK && step != SQLITE_DONE)
        rc = db_fail(m, "reading the shard");
    keyed_free(&k);
    return rc;
}

/* ---- rows without keys, all at once ------------------------------------------ */

/* The copy condition: some parent is new here and none was left out; or,
 * for a row without parents, no identical row is there. */
static void sb_follow_condition(sbuf *q, const merge *m, const mtable *t)
{
    int nparents = 0;

    sb_add(q, "(");
    for (int c = 0; c < t->ncols; c++) {
        if (t->parent[c] < 0)
            continue;
        const mtable *p = &m->t[t->parent[c]];
        sb_add(q, nparents++ ? " AND " : "(");
        sb_add(q, "(s.");
        sb_id(q, t->col[c]);
        sb_add(q, " IS NULL OR s.");
        sb_id(q, t->col[c]);
        sb_add(q, " IN (SELECT old FROM ");
        sb_map(q, p);
        sb_add(q, "))");
    }
    if (nparents) {
        sb_add(q, " AND (");
        for (int c = 0, n = 0; c < t->ncols; c++) {
            if (t->parent[c] < 0)
                continue;
            sb_add(q, n++ ? " OR " : "");
            sb_add(q, "s.");
            sb_id(q, t->col[c]);
            sb_add(q, " IN (SELECT old FROM ");
            sb_map(q, &m->t[t->parent[c]]);
            sb_add(q, " WHERE fate <> %d)", FATE_PRESENT);
        }
        sb_add(q, ")) OR (");
        for (int c = 0, n = 0; c < t->ncols; c++) {
            if (t->parent[c] < 0)
                continue;
            sb_add(q, n++ ? " AND " : "");
            sb_add(q, "s.");
            sb_id(q, t->col[c]);
            sb_add(q, " IS NULL");
        }
        sb_add(q, " AND ");
    }
    sb_add(q, "NOT EXISTS (SELECT 1 FROM main.");
    sb_id(q, t->name);
    sb_add(q, " x WHERE 1");
    for (int c = 0; c < t->ncols; c++) {
        if (c == t->surrogate)
            continue;
        sb_add(q, " AND x.");
        sb_id(q, t->col[c]);
        sb_add(q, " IS s.");
        sb_id(q, t->col[c]);
    }
    sb_add(q, ")%s)", nparents ? ")" : "");
}

/* A column's value in the target: a parent's row id goes through its map. */
static void sb_value(sbuf *q, const merge *m, const mtable *t, int c)
{
    if (t->parent[c] < 0) {
        sb_add(q, "s.");
        sb_id(q, t->col[c]);
        return;
    }
    sb_add(q, "(SELECT new FROM ");
    sb_map(q, &m->t[t->parent[c]]);
    sb_add(q, " WHERE old = s.");
    sb_id(q, t->col[c]);
    sb_add(q, ")");
}

static int merge_following(merge *m, const mtable *t, en_merge_count *cnt)
{
    sbuf q = { 0 };
    int64_t total = 0, offset = 0;
    int rc;

    sb_add(&q, "SELECT count(*) FROM shard.");
    sb_id(&q, t->name);
    rc = q.oom ? EN_ENOMEM : query_int(m, q.s, &total, "counting the shard's rows");
    free(q.s);
    q = (sbuf){ 0 };
    if (rc != EN_OK)
        return rc;

    if (t->surrogate >= 0) {
        /* New row ids follow the target's, in the shard's order, so the
         * map is one subtraction. */
        sb_add(&q, "SELECT coalesce((SELECT max(");
        sb_id(&q, t->col[t->surrogate]);
        sb_add(&q, ") FROM main.");
        sb_id(&q, t->name);
        sb_add(&q, "), 0) - coalesce((SELECT min(");
        sb_id(&q, t->col[t->surrogate]);
        sb_add(&q, ") FROM shard.");
        sb_id(&q, t->name);
        sb_add(&q, "), 0) + 1");
        rc = q.oom ? EN_ENOMEM : query_int(m, q.s, &offset, "numbering new rows");
        free(q.s);
        q = (sbuf){ 0 };
        if (rc != EN_OK)
            return rc;
        sb_add(&q, "INSERT INTO ");
        sb_map(&q, t);
        sb_add(&q, " (old, new, fate) SELECT s.");
        sb_id(&q, t->col[t->surrogate]);
        sb_add(&q, ", s.");
        sb_id(&q, t->col[t->surrogate]);
        sb_add(&q, " + %lld, %d FROM shard.", (long long)offset, FATE_ADDED);
        sb_id(&q, t->name);
        sb_add(&q, " s WHERE ");
        sb_follow_condition(&q, m, t);
        if ((rc = exec_sb(m, &q, "choosing the rows to copy")) != EN_OK) {
            free(q.s);
            return rc;
        }
        free(q.s);
        q = (sbuf){ 0 };
    }

    sb_add(&q, "INSERT INTO main.");
    sb_id(&q, t->name);
    sb_add(&q, " (");
    for (int c = 0; c < t->ncols; c++) {
        sb_add(&q, c ? ", " : "");
        sb_id(&q, t->col[c]);
    }
    sb_add(&q, ") SELECT ");
    for (int c = 0; c < t->ncols; c++) {
        sb_add(&q, c ? ", " : "");
        if (c == t->surrogate)
            sb_add(&q, "map.new");
        else
            sb_value(&q, m, t, c);
    }
    sb_add(&q, " FROM shard.");
    sb_id(&q, t->name);
    sb_add(&q, " s");
    if (t->surrogate >= 0) {
        sb_add(&q, " JOIN ");
        sb_map(&q, t);
        sb_add(&q, " map ON map.old = s.");
        sb_id(&q, t->col[t->surrogate]);
        sb_add(&q, " ORDER BY s.");
        sb_id(&q, t->col[t->surrogate]);
    } else {
        sb_add(&q, " WHERE ");
        sb_follow_condition(&q, m, t);
    }
    rc = exec_sb(m, &q, "copying rows");
    free(q.s);
    if (rc != EN_OK)
        return en_err_prefix(m->err, "table %s", t->name);
    cnt->added = sqlite3_changes64(m->db);
    cnt->present = total - cnt->added;
    return EN_OK;
}

/* ---- after the rows ------------------------------------------------------------ */

static int add_stale(en_merge_stats *s, const char *key)
{
    for (int i = 0; i < s->nstale; i++)
        if (!strcmp(s->stale[i], key))
            return EN_OK;
    void *grown = realloc(s->stale, (size_t)(s->nstale + 1) * sizeof *s->stale);
    if (!grown)
        return EN_ENOMEM;
    s->stale = grown;
    snprintf(s->stale[s->nstale++], sizeof *s->stale, "%s", key);
    return EN_OK;
}

/* Rows this merge touched whose result is stale, by their first key. */
static int collect_stale(merge *m, const mtable *t)
{
    sqlite3_stmt *st;
    sbuf q = { 0 };
    int rc;

    if (t->stale_col < 0 || t->surrogate < 0 || t->nkeys == 0)
        return EN_OK;
    sb_add(&q, "SELECT x.");
    sb_id(&q, t->col[t->key[0].col[0]]);
    sb_add(&q, " FROM main.");
    sb_id(&q, t->name);
    sb_add(&q, " x JOIN ");
    sb_map(&q, t);
    sb_add(&q, " map ON map.new = x._rowid_ WHERE x.");
    sb_id(&q, t->col[t->stale_col]);
    sb_add(&q, " <> 0 ORDER BY x._rowid_");
    if ((rc = prepare_sb(m, &q, &st)) != EN_OK)
        return rc;
    while (rc == EN_OK && sqlite3_step(st) == SQLITE_ROW)
        if (sqlite3_column_text(st, 0) &&
            add_stale(m->stats, (const char *)sqlite3_column_text(st, 0)) != EN_OK)
            rc = en_err_set(m->err, EN_ENOMEM, "merge: out of memory");
    sqlite3_finalize(st);
    return rc;
}

/* ---- checks before merging ---------------------------------------------------- */

static void uri_encode(sbuf *b, const char *path)
{
    sb_add(b, "file:");
    for (const unsigned char *c = (const unsigned char *)path; *c; c++) {
        if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
            strchr("/-_.~", *c))
            sb_add(b, "%c", *c);
        else
            sb_add(b, "%%%02X", *c);
    }
    sb_add(b, "?mode=ro");
}

static int attach_shard(merge *m)
{
    sqlite3_stmt *st;
    sbuf uri = { 0 };
    int rc;

    uri_encode(&uri, m->shard);
    if (uri.oom)
        return en_err_set(m->err, EN_ENOMEM, "merge: out of memory");
    rc = prepare(m, "ATTACH DATABASE ?1 AS shard", &st, "attaching the shard");
    if (rc == EN_OK) {
        sqlite3_bind_text(st, 1, uri.s, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = en_err_set(m->err, EN_EIO, "cannot open shard %s: %s", m->shard,
                            sqlite3_errmsg(m->db));
        sqlite3_finalize(st);
    }
    free(uri.s);
    return rc;
}

static int check_shard(merge *m, const char *fp, int flags)
{
    int64_t app_main = 0, app_shard = 0, v_main = 0, v_shard = 0;
    char have[EN_MERGE_FP_LEN + 1];
    int rc;

    if ((rc = query_int(m, "PRAGMA shard.application_id", &app_shard,
                        "reading the shard's header")) != EN_OK)
        return rc == EN_ENOTFOUND || m->err->code == EN_EIO
                   ? en_err_set(m->err, EN_EFORMAT, "shard %s is not an SQLite database (%s)",
                                m->shard, sqlite3_errmsg(m->db))
                   : rc;
    if ((rc = query_int(m, "PRAGMA main.application_id", &app_main, "reading the header")) ||
        (rc = query_int(m, "PRAGMA main.user_version", &v_main, "reading the header")) ||
        (rc = query_int(m, "PRAGMA shard.user_version", &v_shard, "reading the shard's header")))
        return rc;
    if (app_shard != app_main)
        return en_err_set(m->err, EN_EFORMAT, "shard %s is not an echonetd results database "
                          "(SQLite application_id %lld): refused", m->shard,
                          (long long)app_shard);
    if (v_shard != v_main)
        return en_err_set(m->err, EN_EUNSUPPORTED,
                          "shard %s has schema version %lld, %s has %lld: refused; every shard "
                          "of a back-fill must be made by the same echonetd version (process "
                          "that shard's files again with this one)", m->shard,
                          (long long)v_shard, m->into, (long long)v_main);
    if ((rc = read_fp(m, "shard", have)) != EN_OK)
        return rc;
    if (!have[0] && !(flags & EN_MERGE_ASSUME_SITE))
        return en_err_set(m->err, EN_EPERM,
                          "shard %s carries no site fingerprint, so nothing shows it was made "
                          "with this site's secret: refused; if you know it was (a database of "
                          "the daemon, or of an older echonetctl), merge it with "
                          "--assume-same-site", m->shard);
    if (have[0] && strcmp(have, fp) != 0)
        return en_err_set(m->err, EN_EPERM,
                          "shard %s was made with another site secret (site fingerprint %s, "
                          "this site's is %s): refused, its pseudonyms would not match; process "
                          "its files again with this site's [deid] secret_file", m->shard, have,
                          fp);
    return EN_OK;
}

static int same_file(const char *a, const char *b)
{
    struct stat sa, sb;

    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

/* ---- the merge ------------------------------------------------------------------ */

static int merge_all(merge *m, const char *fp, int flags)
{
    int rc;

    if ((rc = check_shard(m, fp, flags)) != EN_OK)
        return rc;
    if ((rc = exec(m, "BEGIN IMMEDIATE", "starting the transaction")) != EN_OK)
        return rc;
    rc = stamp(m, "main", m->into, fp);
    if (rc == EN_OK)
        rc = read_schema(m);
    for (int i = 0; rc == EN_OK && i < m->nt; i++)
        if (m->t[i].surrogate >= 0)
            rc = make_map(m, &m->t[i]);
    for (int n = 0; rc == EN_OK && n < m->nt; n++) {
        const mtable *t = &m->t[m->order[n]];
        en_merge_count *cnt = &m->stats->t[m->stats->ntables++];
        snprintf(cnt->table, sizeof cnt->table, "%s", t->name);
        rc = t->nkeys > 0 ? merge_keyed(m, t, cnt) : merge_following(m, t, cnt);
    }
    for (int i = 0; rc == EN_OK && i < m->nt; i++)
        rc = collect_stale(m, &m->t[i]);
    if (rc == EN_OK)
        rc = exec(m, "COMMIT", "committing");
    if (rc != EN_OK)
        sqlite3_exec(m->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

int en_merge_shard(const char *into, const char *shard, const char *fp, int flags,
                   en_merge_stats *stats, en_err *err)
{
    merge m = { .into = into, .shard = shard, .stats = stats, .err = err };
    struct stat sb;
    int rc;

    stats->ntables = 0;
    memset(stats->t, 0, sizeof stats->t);
    if (stat(shard, &sb) != 0 || !S_ISREG(sb.st_mode))
        return en_err_set(err, EN_ENOTFOUND, "shard %s does not exist or is not a file", shard);
    if (same_file(into, shard))
        return en_err_set(err, EN_EINVAL, "shard %s is the database merged into", shard);
    if ((rc = open_db(into, &m.db, err)) != EN_OK)
        return rc;
    rc = attach_shard(&m);
    if (rc == EN_OK) {
        rc = merge_all(&m, fp, flags);
        drop_maps(&m);
        sqlite3_exec(m.db, "DETACH DATABASE shard", NULL, NULL, NULL);
    }
    sqlite3_close(m.db);
    free(m.t);
    free(m.order);
    return rc;
}

void en_merge_stats_free(en_merge_stats *stats)
{
    if (!stats)
        return;
    free(stats->stale);
    stats->stale = NULL;
    stats->nstale = 0;
}
