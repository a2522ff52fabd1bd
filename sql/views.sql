-- views.sql - ready-made answers for operators and researchers working
-- directly in sqlite3 (`sqlite3 -header -column results.db 'SELECT ...'`).
--
-- Views hold no data, so they are not migrations: en_store_open() drops
-- every view whose name starts with v_ and re-creates these whenever this
-- file differs from the one last installed (a fingerprint is kept in the
-- meta table).  Do not give views of your own the v_ prefix.
-- docs/schema.md describes each view's columns.
--
-- A study is all the instances (clips) of one StudyInstanceUID; its result
-- is the mean over the beats of its usable clips (en_study.h).

-- The current result of every study that has one, one row each.
CREATE VIEW v_results AS
SELECT s.pseudonym,
       s.first_received_at AS received_at,
       s.result_at,
       s.result_version AS version,
       round(s.ef_mean, 1) AS ef,
       round(s.ef_sd, 1) AS ef_sd,
       s.beats,
       s.clips_usable,
       s.clips_total,
       s.ef_class,
       s.ef_mean < 50 AS below_50,
       s.ef_mean < 40 AS below_40,
       s.ef_mean < 35 AS below_35,
       s.flags,
       s.flags_text,
       s.no_ef_reason,
       s.result_stale AS stale
FROM studies s
WHERE s.result_version > 0;

-- Reduced ejection fraction: study EF below the study's reduced threshold
-- (upstream's 50 % unless configured otherwise), with upstream's stricter
-- 40 and 35 % cuts.
CREATE VIEW v_reduced_ef AS
SELECT s.pseudonym,
       s.result_at,
       round(s.ef_mean, 1) AS ef,
       round(s.ef_sd, 1) AS ef_sd,
       s.ef_class,
       s.ef_mean < 40 AS below_40,
       s.ef_mean < 35 AS below_35,
       s.beats,
       s.clips_usable,
       s.flags,
       s.flags_text
FROM studies s
WHERE s.result_version > 0 AND s.ef_mean < coalesce(s.threshold_reduced, 50);

-- Studies whose result carries a flag: check these before trusting it.
CREATE VIEW v_flagged AS
SELECT s.pseudonym,
       s.result_at,
       round(s.ef_mean, 1) AS ef,
       s.flags,
       s.flags_text,
       s.no_ef_reason
FROM studies s
WHERE s.result_version > 0 AND s.flags <> 0;

-- Every clip with what became of it: its verdict and why.
CREATE VIEW v_clips AS
SELECT s.pseudonym,
       c.id AS clip_id,
       c.video_file,
       c.status,
       c.received_at,
       c.view_dicom,
       c.regions,
       c.src_frames,
       round(c.ef_mean, 1) AS ef,
       (SELECT count(*) FROM beats b WHERE b.clip_id = c.id) AS beats,
       c.flags_text,
       c.verdict,
       c.verdict_codes,
       c.verdict_text
FROM clips c
JOIN studies s ON s.id = c.study_id;

-- Clips that were analysed or looked at and left out of their study's EF.
CREATE VIEW v_clips_left_out AS
SELECT s.pseudonym,
       c.id AS clip_id,
       c.video_file,
       c.verdict,
       c.verdict_codes,
       c.verdict_text
FROM clips c
JOIN studies s ON s.id = c.study_id
WHERE c.status = 'done' AND coalesce(c.verdict, '') <> 'usable';

-- Failed clips, the stage they reached and their last error.
CREATE VIEW v_failures AS
SELECT s.pseudonym,
       c.id AS clip_id,
       c.finished_at AS failed_at,
       c.stage,
       c.attempts,
       e.code,
       e.message AS error,
       c.job
FROM clips c
JOIN studies s ON s.id = c.study_id
LEFT JOIN events e
       ON e.id = (SELECT max(x.id) FROM events x
                  WHERE x.clip_id = c.id AND x.state = 'failed')
WHERE c.status = 'failed';

-- Work not finished: clips the daemon has queued or is processing (after a
-- crash, what it will resume), with the attempts counted so far.
CREATE VIEW v_queue AS
SELECT s.pseudonym,
       c.id AS clip_id,
       c.status,
       c.stage,
       c.attempts,
       c.received_at,
       c.started_at,
       c.job,
       (SELECT max(x.at) FROM events x WHERE x.clip_id = c.id) AS last_event_at
FROM clips c
JOIN studies s ON s.id = c.study_id
WHERE c.status IN ('queued', 'processing');

-- Studies whose result must be computed again (a clip changed since).
CREATE VIEW v_stale AS
SELECT s.pseudonym,
       s.last_received_at,
       s.result_version AS version,
       (SELECT count(*) FROM clips c WHERE c.study_id = s.id
          AND c.status IN ('queued', 'processing')) AS clips_unfinished
FROM studies s
WHERE s.result_stale = 1;

-- How many clips are in each state.
CREATE VIEW v_status_counts AS
SELECT status, count(*) AS clips
FROM clips
GROUP BY status;

-- Throughput per day (UTC) of finishing: clips done and failed, and the
-- mean processing time of a clip that day.
CREATE VIEW v_daily AS
SELECT substr(finished_at, 1, 10) AS day,
       sum(status = 'done') AS clips_done,
       sum(status = 'failed') AS clips_failed,
       sum(status = 'done' AND verdict = 'usable') AS clips_usable,
       round(avg(CASE WHEN status = 'done' THEN ms_total END) / 1000.0, 1) AS mean_seconds
FROM clips
WHERE finished_at IS NOT NULL
GROUP BY day;

-- How much the beats and the usable clips of a study disagree.
CREATE VIEW v_beat_spread AS
SELECT s.pseudonym,
       count(b.beat) AS beats,
       coalesce(sum(b.shift > 0), 0) AS shifted_beats,
       round(min(b.ef), 1) AS min_ef,
       round(max(b.ef), 1) AS max_ef,
       round(max(b.ef) - min(b.ef), 1) AS range_ef,
       round(s.clip_ef_max - s.clip_ef_min, 1) AS clip_range_ef,
       round(s.ef_mean, 1) AS ef,
       round(s.ef_sd, 1) AS ef_sd
FROM studies s
LEFT JOIN clips c ON c.study_id = s.id AND c.verdict = 'usable' AND c.status = 'done'
LEFT JOIN beats b ON b.clip_id = c.id
WHERE s.result_version > 0
GROUP BY s.id;

-- The event log with pseudonyms and clips, newest last.
CREATE VIEW v_events AS
SELECT e.id,
       e.at,
       s.pseudonym,
       e.clip_id,
       e.state,
       e.stage,
       e.attempt,
       e.result_version,
       e.job,
       e.code,
       e.message
FROM events e
LEFT JOIN studies s ON s.id = e.study_id;

-- Registered weights and how many clips used each.
CREATE VIEW v_models AS
SELECT m.sha256,
       m.architecture,
       m.origin,
       m.file_name,
       m.first_seen,
       m.last_seen,
       (SELECT count(*) FROM clips c
        WHERE c.seg_model = m.sha256 OR c.ef_model = m.sha256) AS clips
FROM models m;
