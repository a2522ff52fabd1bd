-- 002-studies-and-clips.sql - a study is many clips (issue 11).
--
-- Schema 1 kept one row per study, so a second DICOM instance of a study
-- replaced the first one's result.  From schema 2:
--   studies  one row per study (pseudonym of StudyInstanceUID) with its
--            study result: the mean over the beats of its usable clips,
--            versioned, recomputed when its clips change;
--   clips    one row per DICOM instance (known by the keyed hash of its
--            SOPInstanceUID), analysed or not, with everything schema 1
--            kept per study plus what the instance is (SOP class, regions,
--            the view the DICOM names) and its verdict: usable for EF or
--            not, with the reasons;
--   beats, frames   belong to a clip;
--   events   belong to a study and, when about one instance, to its clip;
--            study results are events too ('result', with their version).
--
-- Every schema-1 row is kept: each study becomes a study with one clip
-- holding its whole result (same ids, so ids seen in logs stay valid), its
-- beats, frames and events.  A schema-1 clip was never judged, so its
-- verdict is NULL; a study that was done keeps its schema-1 result as
-- result version 1 (what `echonetctl list` showed before the upgrade),
-- flagged unjudged_clips.  docs/schema.md describes every column.
--
-- SQLite cannot change constraints in place, so the tables are rebuilt:
-- the old ones are renamed, the new ones created under the final names,
-- the rows copied, the old tables dropped.  Foreign keys stay on during
-- migrations (en_store_open runs them in one transaction, where the pragma
-- cannot change), so children are dropped before their parents.

-- Views read the tables being renamed; sql/views.sql is installed again
-- after every migration.
DROP VIEW IF EXISTS v_results;
DROP VIEW IF EXISTS v_reduced_ef;
DROP VIEW IF EXISTS v_flagged;
DROP VIEW IF EXISTS v_failures;
DROP VIEW IF EXISTS v_queue;
DROP VIEW IF EXISTS v_status_counts;
DROP VIEW IF EXISTS v_daily;
DROP VIEW IF EXISTS v_beat_spread;
DROP VIEW IF EXISTS v_events;
DROP VIEW IF EXISTS v_models;

ALTER TABLE events RENAME TO v1_events;
ALTER TABLE frames RENAME TO v1_frames;
ALTER TABLE beats RENAME TO v1_beats;
ALTER TABLE studies RENAME TO v1_studies;

-- One row per study.  result_stale is set in the same transaction as any
-- change to one of its clips and cleared by the transaction that stores a
-- new study result, so a crash can neither lose a needed recomputation nor
-- make a needless one.
CREATE TABLE studies (
    id                  INTEGER PRIMARY KEY,
    pseudonym           TEXT NOT NULL UNIQUE
                        CHECK (length(pseudonym) BETWEEN 8 AND 64
                               AND pseudonym NOT GLOB '*[^0-9a-f]*'),
    first_received_at   TEXT NOT NULL CHECK (first_received_at GLOB
        '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
    last_received_at    TEXT NOT NULL CHECK (last_received_at GLOB
        '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
    result_stale        INTEGER NOT NULL DEFAULT 1 CHECK (result_stale IN (0, 1)),
    -- the current study result (version 0: none yet)
    result_version      INTEGER NOT NULL DEFAULT 0 CHECK (result_version >= 0),
    result_at           TEXT CHECK (result_at GLOB
        '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
    clips_total         INTEGER CHECK (clips_total >= 0),
    clips_usable        INTEGER CHECK (clips_usable >= 0),
    beats               INTEGER CHECK (beats >= 0),
    ef_mean             REAL,
    ef_sd               REAL CHECK (ef_sd >= 0),
    clip_ef_min         REAL,
    clip_ef_max         REAL,
    ef_class            TEXT CHECK (ef_class <> '' AND ef_class NOT GLOB '*[^a-z0-9_-]*'),
    threshold_reduced   REAL,
    threshold_low       REAL,
    threshold_very_low  REAL,
    disagreement_points REAL CHECK (disagreement_points >= 0),
    flags               INTEGER NOT NULL DEFAULT 0 CHECK (flags >= 0),
    flags_text          TEXT NOT NULL DEFAULT '',
    no_ef_reason        TEXT,
    CHECK (result_version = 0 OR result_at IS NOT NULL)
);

-- One row per DICOM instance, whatever became of it.
CREATE TABLE clips (
    id                INTEGER PRIMARY KEY,
    study_id          INTEGER NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
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
    -- what the instance is (non-identifying, docs/deidentification.md "Kept")
    sop_class         TEXT CHECK (sop_class <> '' AND sop_class NOT GLOB '*[^0-9.]*'),
    modality          TEXT CHECK (modality <> '' AND modality NOT GLOB '*[^A-Z0-9_]*'),
    regions           TEXT CHECK (regions <> '' AND regions NOT GLOB '*[^a-z0-9_,]*'),
    view_dicom        TEXT CHECK (view_dicom <> '' AND view_dicom NOT GLOB '*[^a-z0-9_]*'),
    view_code         TEXT CHECK (view_code <> '' AND view_code NOT GLOB '*[^A-Za-z0-9:._-]*'),
    video_file        TEXT CHECK (video_file <> '' AND instr(video_file, '/') = 0),
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
    -- this clip's own answer: the mean of its beats
    ef_mean           REAL,
    ef_sd             REAL CHECK (ef_sd >= 0),
    ef_class          TEXT CHECK (ef_class <> '' AND ef_class NOT GLOB '*[^a-z0-9_-]*'),
    threshold_reduced REAL,
    threshold_low     REAL,
    threshold_very_low REAL,
    flags             INTEGER NOT NULL DEFAULT 0 CHECK (flags >= 0),
    flags_text        TEXT NOT NULL DEFAULT '',
    -- does it count for the study's EF, and why (NULL: not judged)
    verdict           TEXT CHECK (verdict <> '' AND verdict NOT GLOB '*[^a-z0-9_]*'),
    verdict_codes     TEXT NOT NULL DEFAULT '' CHECK (verdict_codes NOT GLOB '*[^a-z0-9_,]*'),
    verdict_text      TEXT NOT NULL DEFAULT '',
    evidence_json     TEXT CHECK (evidence_json IS NULL OR json_valid(evidence_json)),
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

CREATE TABLE beats (
    clip_id       INTEGER NOT NULL REFERENCES clips (id) ON DELETE CASCADE,
    beat          INTEGER NOT NULL CHECK (beat >= 0),
    systole_frame INTEGER NOT NULL CHECK (systole_frame >= 0),
    clip_start    INTEGER NOT NULL CHECK (clip_start >= 0 AND clip_start <= systole_frame),
    shift         INTEGER NOT NULL DEFAULT 0 CHECK (shift >= 0),
    ef            REAL NOT NULL,
    ed_frame      INTEGER CHECK (ed_frame >= 0),
    lv_size_ed    INTEGER CHECK (lv_size_ed >= 0),
    lv_size_es    INTEGER CHECK (lv_size_es >= 0),
    PRIMARY KEY (clip_id, beat)
) WITHOUT ROWID;

CREATE TABLE frames (
    clip_id  INTEGER NOT NULL REFERENCES clips (id) ON DELETE CASCADE,
    frame    INTEGER NOT NULL CHECK (frame >= 0),
    lv_size  INTEGER NOT NULL CHECK (lv_size >= 0),
    systole  INTEGER NOT NULL DEFAULT 0 CHECK (systole IN (0, 1)),
    PRIMARY KEY (clip_id, frame)
) WITHOUT ROWID;

-- study_id NULL: an event of no study (daemon start, a file that never
-- parsed).  clip_id NULL: an event of the study as a whole (its results).
CREATE TABLE events (
    id             INTEGER PRIMARY KEY,
    study_id       INTEGER REFERENCES studies (id) ON DELETE CASCADE,
    clip_id        INTEGER REFERENCES clips (id) ON DELETE CASCADE,
    at             TEXT NOT NULL CHECK (at GLOB
        '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
    state          TEXT NOT NULL
                   CHECK (state IN ('queued', 'processing', 'stage', 'done', 'failed',
                                    'warning', 'info', 'result')),
    stage          TEXT CHECK (stage <> '' AND stage NOT GLOB '*[^a-z0-9_]*'),
    attempt        INTEGER CHECK (attempt >= 0),
    job            TEXT,
    code           TEXT CHECK (code <> '' AND code NOT GLOB '*[^A-Z0-9_]*'),
    result_version INTEGER CHECK (result_version > 0),
    message        TEXT NOT NULL DEFAULT '',
    CHECK (clip_id IS NULL OR study_id IS NOT NULL),
    CHECK ((state = 'result') = (result_version IS NOT NULL))
);

-- ---- the schema-1 rows -------------------------------------------------

-- A schema-1 study that was done keeps its result as result version 1;
-- any other one waits for a first study result (stale).
INSERT INTO studies (id, pseudonym, first_received_at, last_received_at, result_stale,
                     result_version, result_at, clips_total, clips_usable, beats,
                     ef_mean, ef_sd, clip_ef_min, clip_ef_max, ef_class,
                     threshold_reduced, threshold_low, threshold_very_low,
                     flags, flags_text, no_ef_reason)
SELECT s.id, s.pseudonym, s.received_at, s.received_at,
       s.status <> 'done',
       CASE WHEN s.status = 'done' THEN 1 ELSE 0 END,
       CASE WHEN s.status = 'done' THEN s.finished_at END,
       CASE WHEN s.status = 'done' THEN 1 END,
       CASE WHEN s.status = 'done' THEN 0 END,
       CASE WHEN s.status = 'done' THEN (SELECT count(*) FROM v1_beats b WHERE b.study_id = s.id) END,
       CASE WHEN s.status = 'done' THEN s.ef_mean END,
       CASE WHEN s.status = 'done' THEN s.ef_sd END,
       CASE WHEN s.status = 'done' THEN s.ef_mean END,
       CASE WHEN s.status = 'done' THEN s.ef_mean END,
       CASE WHEN s.status = 'done' THEN s.ef_class END,
       CASE WHEN s.status = 'done' THEN s.threshold_reduced END,
       CASE WHEN s.status = 'done' THEN s.threshold_low END,
       CASE WHEN s.status = 'done' THEN s.threshold_very_low END,
       -- 4 = unjudged_clips (en_study.h): the EF is schema 1's, from one
       -- clip whose view was never checked
       CASE WHEN s.status = 'done' THEN 4 ELSE 0 END,
       CASE WHEN s.status = 'done' THEN 'unjudged_clips' ELSE '' END,
       CASE WHEN s.status = 'done' AND s.ef_mean IS NULL
            THEN 'no beat with a complete clip was found' END
FROM v1_studies s;

INSERT INTO clips (id, study_id, dedup_key, job, status, stage, attempts, received_at,
                   started_at, finished_at, video_file, src_rows, src_cols, src_frames, fps,
                   fps_source, transfer_syntax, sector_method, sector_confidence, video_frames,
                   seg_model, ef_model, ef_mean, ef_sd, ef_class, threshold_reduced,
                   threshold_low, threshold_very_low, flags, flags_text, verdict,
                   verdict_codes, verdict_text, ms_read, ms_sector, ms_video, ms_segment,
                   ms_ef, ms_analysis, ms_total)
SELECT s.id, s.id, s.dedup_key, s.job, s.status, s.stage, s.attempts, s.received_at,
       s.started_at, s.finished_at,
       -- schema 1 named the AVI after the study
       CASE WHEN s.video_frames IS NOT NULL THEN s.pseudonym || '.avi' END,
       s.src_rows, s.src_cols, s.src_frames, s.fps, s.fps_source, s.transfer_syntax, s.sector_method, s.sector_confidence, s.video_frames,
       s.seg_model, s.ef_model, s.ef_mean, s.ef_sd, s.ef_class, s.threshold_reduced,
       s.threshold_low, s.threshold_very_low, s.flags, s.flags_text, NULL,
       CASE WHEN s.status = 'done' THEN 'schema1' ELSE '' END,
       CASE WHEN s.status = 'done'
            THEN 'analysed by echonetd before clip verdicts (schema 1): its view was never ' ||
                 'checked; process the file again to judge it' ELSE '' END,
       s.ms_read, s.ms_sector, s.ms_video, s.ms_segment, s.ms_ef, s.ms_analysis, s.ms_total
FROM v1_studies s;

INSERT INTO beats (clip_id, beat, systole_frame, clip_start, shift, ef, ed_frame,
                   lv_size_ed, lv_size_es)
SELECT study_id, beat, systole_frame, clip_start, shift, ef, ed_frame, lv_size_ed, lv_size_es
FROM v1_beats;

INSERT INTO frames (clip_id, frame, lv_size, systole)
SELECT study_id, frame, lv_size, systole FROM v1_frames;

INSERT INTO events (id, study_id, clip_id, at, state, stage, attempt, job, code, message)
SELECT id, study_id, study_id, at, state, stage, attempt, job, code, message FROM v1_events;

-- The schema-1 result of a done study, as the first study result.
INSERT INTO events (study_id, at, state, result_version, message)
SELECT s.id, s.finished_at, 'result', 1,
       'study result v1 kept from schema 1: ' ||
       CASE WHEN s.ef_mean IS NULL THEN 'no EF'
            ELSE printf('EF %.1f %%', s.ef_mean) END ||
       ' from its one clip (never judged)'
FROM v1_studies s
WHERE s.status = 'done';

DROP TABLE v1_events;
DROP TABLE v1_frames;
DROP TABLE v1_beats;
DROP TABLE v1_studies;

CREATE INDEX studies_first_received ON studies (first_received_at);
CREATE INDEX studies_last_received ON studies (last_received_at);
CREATE INDEX studies_stale ON studies (last_received_at) WHERE result_stale = 1;
CREATE INDEX studies_class ON studies (ef_class, first_received_at);
CREATE INDEX studies_flagged ON studies (first_received_at) WHERE flags <> 0;
CREATE INDEX clips_study ON clips (study_id, received_at);
CREATE INDEX clips_received ON clips (received_at);
CREATE INDEX clips_finished ON clips (finished_at);
CREATE INDEX clips_status ON clips (status, received_at);
CREATE INDEX clips_seg_model ON clips (seg_model);
CREATE INDEX clips_ef_model ON clips (ef_model);
CREATE INDEX events_study ON events (study_id, id);
CREATE INDEX events_clip ON events (clip_id, id);
CREATE INDEX events_at ON events (at);
