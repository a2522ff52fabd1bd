-- views.sql - ready-made answers for operators and researchers working
-- directly in sqlite3 (`sqlite3 -header -column results.db 'SELECT ...'`).
--
-- Views hold no data, so they are not migrations: en_store_open() drops
-- every view whose name starts with v_ and re-creates these whenever this
-- file differs from the one last installed (a fingerprint is kept in the
-- meta table).  Do not give views of your own the v_ prefix.
-- docs/schema.md describes each view's columns.

-- The result of every finished study, one row each (re-processing
-- replaces a study's result, so there is never an older one to hide).
CREATE VIEW v_results AS
SELECT s.pseudonym,
       s.received_at,
       s.finished_at,
       round(s.ef_mean, 1) AS ef,
       round(s.ef_sd, 1) AS ef_sd,
       (SELECT count(*) FROM beats b WHERE b.study_id = s.id) AS beats,
       s.ef_class,
       s.ef_mean < 50 AS below_50,
       s.ef_mean < 40 AS below_40,
       s.ef_mean < 35 AS below_35,
       s.flags,
       s.flags_text,
       s.video_frames,
       s.fps,
       s.fps_source,
       substr(s.seg_model, 1, 12) AS seg_model,
       substr(s.ef_model, 1, 12) AS ef_model,
       round(s.ms_total / 1000.0, 1) AS seconds
FROM studies s
WHERE s.status = 'done';

-- Reduced ejection fraction: mean EF below the study's reduced threshold
-- (upstream's 50 % unless configured otherwise), with upstream's stricter
-- 40 and 35 % cuts and the number of beats beside it.
CREATE VIEW v_reduced_ef AS
SELECT s.pseudonym,
       s.finished_at,
       round(s.ef_mean, 1) AS ef,
       round(s.ef_sd, 1) AS ef_sd,
       s.ef_class,
       s.ef_mean < 40 AS below_40,
       s.ef_mean < 35 AS below_35,
       (SELECT count(*) FROM beats b WHERE b.study_id = s.id) AS beats,
       s.flags,
       s.flags_text
FROM studies s
WHERE s.status = 'done' AND s.ef_mean < coalesce(s.threshold_reduced, 50);

-- Studies with any quality flag: check these before trusting the number.
CREATE VIEW v_flagged AS
SELECT s.pseudonym,
       s.finished_at,
       round(s.ef_mean, 1) AS ef,
       s.flags,
       s.flags_text
FROM studies s
WHERE s.status = 'done' AND s.flags <> 0;

-- Failed studies with the stage they reached and their last error.
CREATE VIEW v_failures AS
SELECT s.pseudonym,
       s.finished_at AS failed_at,
       s.stage,
       s.attempts,
       e.code,
       e.message AS error,
       s.job
FROM studies s
LEFT JOIN events e
       ON e.id = (SELECT max(x.id) FROM events x
                  WHERE x.study_id = s.id AND x.state = 'failed')
WHERE s.status = 'failed';

-- Work not finished: what the daemon has queued or is processing (after a
-- crash, what it will resume), with the attempts counted so far.
CREATE VIEW v_queue AS
SELECT s.pseudonym,
       s.status,
       s.stage,
       s.attempts,
       s.received_at,
       s.started_at,
       s.job,
       (SELECT max(x.at) FROM events x WHERE x.study_id = s.id) AS last_event_at
FROM studies s
WHERE s.status IN ('queued', 'processing');

-- How many studies are in each state.
CREATE VIEW v_status_counts AS
SELECT status, count(*) AS studies
FROM studies
GROUP BY status;

-- Throughput per day (UTC) of finishing: done, failed, how many were
-- reduced or flagged, mean processing time and mean EF of that day.
CREATE VIEW v_daily AS
SELECT substr(finished_at, 1, 10) AS day,
       sum(status = 'done') AS done,
       sum(status = 'failed') AS failed,
       sum(status = 'done' AND ef_mean < coalesce(threshold_reduced, 50)) AS reduced_ef,
       sum(status = 'done' AND flags <> 0) AS flagged,
       round(avg(CASE WHEN status = 'done' THEN ms_total END) / 1000.0, 1) AS mean_seconds,
       round(avg(CASE WHEN status = 'done' THEN ef_mean END), 1) AS mean_ef
FROM studies
WHERE finished_at IS NOT NULL
GROUP BY day;

-- How much the beats of one study disagree.
CREATE VIEW v_beat_spread AS
SELECT s.pseudonym,
       count(b.beat) AS beats,
       coalesce(sum(b.shift > 0), 0) AS shifted_beats,
       round(min(b.ef), 1) AS min_ef,
       round(max(b.ef), 1) AS max_ef,
       round(max(b.ef) - min(b.ef), 1) AS range_ef,
       round(s.ef_mean, 1) AS ef,
       round(s.ef_sd, 1) AS ef_sd
FROM studies s
LEFT JOIN beats b ON b.study_id = s.id
WHERE s.status = 'done'
GROUP BY s.id;

-- The event log with pseudonyms, newest last.
CREATE VIEW v_events AS
SELECT e.id,
       e.at,
       s.pseudonym,
       e.state,
       e.stage,
       e.attempt,
       e.job,
       e.code,
       e.message
FROM events e
LEFT JOIN studies s ON s.id = e.study_id;

-- Registered weights and how many studies used each.
CREATE VIEW v_models AS
SELECT m.sha256,
       m.architecture,
       m.origin,
       m.file_name,
       m.first_seen,
       m.last_seen,
       (SELECT count(*) FROM studies s
        WHERE s.seg_model = m.sha256 OR s.ef_model = m.sha256) AS studies
FROM models m;
