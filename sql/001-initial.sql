-- 001-initial.sql - the first schema of the echonetd results database.
--
-- en_store_open() applies every migration the database has not seen, in
-- order, inside ONE transaction that also sets PRAGMA user_version; a failed
-- migration leaves the file exactly as it was.  Never edit a migration that
-- has been released: add sql/NNN-what.sql (next number) and list it in
-- src/store/Makefile.inc.  docs/schema.md explains every column.
--
-- No identifying value has a column here (docs/deidentification.md): a
-- study is its pseudonym, the duplicate key is a keyed hash, the times are
-- when echonetd saw and finished the file, never dates from the DICOM.
--
-- Checks on text that other modules own (stage names, sector methods, frame
-- rate sources, classes) are lexical, not lists of values, so a new value
-- there never needs a table rebuild; lists are used only for the states the
-- store itself defines.

-- 'ECND': lets en_store_open() refuse some other program's SQLite file.
PRAGMA application_id = 1162039876;

-- Small facts about the database itself (for example the fingerprint of
-- the installed views, so changed views are re-created on open).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- One row per migration applied, for operators: when was this file upgraded.
CREATE TABLE schema_migrations (
    version    INTEGER PRIMARY KEY NOT NULL CHECK (version > 0),
    name       TEXT NOT NULL,
    applied_at TEXT NOT NULL
);

-- Network weights, identified by content.  A study names the two models
-- that produced it, so a result can always be traced to exact weights.
CREATE TABLE models (
    sha256        TEXT PRIMARY KEY NOT NULL
                  CHECK (length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*'),
    architecture  TEXT NOT NULL
                  CHECK (architecture <> '' AND architecture NOT GLOB '*[^a-z0-9_.+-]*'),
    origin        TEXT NOT NULL DEFAULT '',
    file_name     TEXT NOT NULL DEFAULT '' CHECK (instr(file_name, '/') = 0),
    metadata_json TEXT CHECK (metadata_json IS NULL OR json_valid(metadata_json)),
    first_seen    TEXT NOT NULL,
    last_seen     TEXT NOT NULL
) WITHOUT ROWID;

-- One row per study (one echo clip), whatever its state.  The daemon
-- creates it when a file is queued and moves it through its states; a
-- complete result fills the result columns in the same transaction that
-- writes the study's beats and frames.
CREATE TABLE studies (
    id                INTEGER PRIMARY KEY,
    pseudonym         TEXT NOT NULL UNIQUE
                      CHECK (length(pseudonym) BETWEEN 8 AND 64
                             AND pseudonym NOT GLOB '*[^0-9a-f]*'),
    dedup_key         TEXT UNIQUE
                      CHECK (length(dedup_key) BETWEEN 16 AND 64
                             AND dedup_key NOT GLOB '*[^0-9a-f]*'),
    job               TEXT,
    status            TEXT NOT NULL DEFAULT 'queued'
                      CHECK (status IN ('queued', 'processing', 'done', 'failed')),
    stage             TEXT CHECK (stage <> '' AND stage NOT GLOB '*[^a-z0-9_]*'),
    attempts          INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    received_at       TEXT NOT NULL CHECK (received_at GLOB
        '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
    started_at        TEXT CHECK (started_at GLOB
        '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
    finished_at       TEXT CHECK (finished_at GLOB
        '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
    -- source facts (non-identifying, docs/deidentification.md "Kept")
    src_rows          INTEGER CHECK (src_rows > 0),
    src_cols          INTEGER CHECK (src_cols > 0),
    src_frames        INTEGER CHECK (src_frames > 0),
    fps               REAL CHECK (fps > 0),
    fps_source        TEXT CHECK (fps_source <> '' AND fps_source NOT GLOB '*[^A-Za-z0-9_-]*'),
    transfer_syntax   TEXT CHECK (transfer_syntax <> '' AND transfer_syntax NOT GLOB '*[^0-9.]*'),
    sector_method     TEXT CHECK (sector_method <> '' AND sector_method NOT GLOB '*[^a-z0-9_-]*'),
    sector_confidence REAL CHECK (sector_confidence BETWEEN 0 AND 1),
    -- the 112x112 video and the models that read it
    video_frames      INTEGER CHECK (video_frames > 0),
    seg_model         TEXT REFERENCES models (sha256) ON DELETE RESTRICT,
    ef_model          TEXT REFERENCES models (sha256) ON DELETE RESTRICT,
    -- the answer
    ef_mean           REAL,
    ef_sd             REAL CHECK (ef_sd >= 0),
    ef_class          TEXT CHECK (ef_class <> '' AND ef_class NOT GLOB '*[^a-z0-9_-]*'),
    threshold_reduced REAL,
    threshold_low     REAL,
    threshold_very_low REAL,
    flags             INTEGER NOT NULL DEFAULT 0 CHECK (flags >= 0),
    flags_text        TEXT NOT NULL DEFAULT '',
    -- wall-clock milliseconds per stage
    ms_read           REAL CHECK (ms_read >= 0),
    ms_sector         REAL CHECK (ms_sector >= 0),
    ms_video          REAL CHECK (ms_video >= 0),
    ms_segment        REAL CHECK (ms_segment >= 0),
    ms_ef             REAL CHECK (ms_ef >= 0),
    ms_analysis       REAL CHECK (ms_analysis >= 0),
    ms_total          REAL CHECK (ms_total >= 0),
    CHECK (status NOT IN ('done', 'failed') OR finished_at IS NOT NULL)
);

CREATE INDEX studies_received ON studies (received_at);
CREATE INDEX studies_finished ON studies (finished_at);
CREATE INDEX studies_status ON studies (status, received_at);
CREATE INDEX studies_class ON studies (ef_class, received_at);
CREATE INDEX studies_flagged ON studies (received_at) WHERE flags <> 0;
-- Foreign-key parents need these for ON DELETE RESTRICT to stay cheap.
CREATE INDEX studies_seg_model ON studies (seg_model);
CREATE INDEX studies_ef_model ON studies (ef_model);

-- One row per beat that has a clip: the systole found in the LV size
-- curve, the 32-frame clip (period 2) around it, and the clip's EF.
CREATE TABLE beats (
    study_id      INTEGER NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
    beat          INTEGER NOT NULL CHECK (beat >= 0),
    systole_frame INTEGER NOT NULL CHECK (systole_frame >= 0),
    clip_start    INTEGER NOT NULL CHECK (clip_start >= 0 AND clip_start <= systole_frame),
    shift         INTEGER NOT NULL DEFAULT 0 CHECK (shift >= 0),
    ef            REAL NOT NULL,
    ed_frame      INTEGER CHECK (ed_frame >= 0),
    lv_size_ed    INTEGER CHECK (lv_size_ed >= 0),
    lv_size_es    INTEGER CHECK (lv_size_es >= 0),
    PRIMARY KEY (study_id, beat)
) WITHOUT ROWID;

-- One row per frame of the 112x112 video: the segmented LV size in pixels
-- and whether the frame is a detected systole (upstream's ComputerSmall).
CREATE TABLE frames (
    study_id INTEGER NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
    frame    INTEGER NOT NULL CHECK (frame >= 0),
    lv_size  INTEGER NOT NULL CHECK (lv_size >= 0),
    systole  INTEGER NOT NULL DEFAULT 0 CHECK (systole IN (0, 1)),
    PRIMARY KEY (study_id, frame)
) WITHOUT ROWID;

-- Every state change, in order.  study_id is NULL for events that belong
-- to no study (daemon start, backpressure, a file that never parsed).
CREATE TABLE events (
    id       INTEGER PRIMARY KEY,
    study_id INTEGER REFERENCES studies (id) ON DELETE CASCADE,
    at       TEXT NOT NULL CHECK (at GLOB
        '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
    state    TEXT NOT NULL
             CHECK (state IN ('queued', 'processing', 'stage', 'done', 'failed',
                              'warning', 'info')),
    stage    TEXT CHECK (stage <> '' AND stage NOT GLOB '*[^a-z0-9_]*'),
    attempt  INTEGER CHECK (attempt >= 0),
    job      TEXT,
    code     TEXT CHECK (code <> '' AND code NOT GLOB '*[^A-Z0-9_]*'),
    message  TEXT NOT NULL DEFAULT ''
);

CREATE INDEX events_study ON events (study_id, id);
CREATE INDEX events_at ON events (at);
