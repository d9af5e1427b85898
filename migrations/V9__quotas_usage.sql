-- Quotas and usage counters per project.
--
-- A project's quotas are the configured defaults unless it has an override (NULL = the
-- default). The uploader checks them where an upload is created, with the project row locked.
-- The usage counters are kept by the triggers below in the transaction of the change they
-- count: a crash loses at most what was not committed, and a change is never counted twice.

ALTER TABLE project
    ADD COLUMN max_stored_bytes     bigint CHECK (max_stored_bytes >= 0),
    ADD COLUMN max_open_uploads     bigint CHECK (max_open_uploads >= 0),
    ADD COLUMN max_uploads_per_hour bigint CHECK (max_uploads_per_hour >= 0);

-- The defaults of the uploader's configuration, which it writes here when it starts, so that
-- whoever reads a project's quotas (the gateway) reads the ones the uploader enforces.
CREATE TABLE quota_default (
    singleton            boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    max_stored_bytes     bigint NOT NULL CHECK (max_stored_bytes >= 0),
    max_open_uploads     bigint NOT NULL CHECK (max_open_uploads >= 0),
    max_uploads_per_hour bigint NOT NULL CHECK (max_uploads_per_hour >= 0)
);

INSERT INTO quota_default (max_stored_bytes, max_open_uploads, max_uploads_per_hour)
VALUES (1099511627776, 1000, 10000);

-- Every project's quotas in force.
CREATE VIEW project_quotas AS
SELECT p.id AS project_id,
       COALESCE(p.max_stored_bytes, d.max_stored_bytes) AS max_stored_bytes,
       COALESCE(p.max_open_uploads, d.max_open_uploads) AS max_open_uploads,
       COALESCE(p.max_uploads_per_hour, d.max_uploads_per_hour) AS max_uploads_per_hour
FROM project p CROSS JOIN quota_default d;

-- Uploads created per project and hour (the window starts on the hour), for
-- `max_uploads_per_hour`. Windows before the current one are deleted as new ones start.
CREATE TABLE upload_creation (
    project_id   uuid NOT NULL REFERENCES project (id) ON DELETE CASCADE,
    window_start timestamptz NOT NULL,
    count        integer NOT NULL CHECK (count >= 0),
    PRIMARY KEY (project_id, window_start)
);

-- Monotonic counters since `since`, except `stored_bytes`, which is what the project's
-- presentations hold on holder now.
CREATE TABLE project_usage (
    project_id        uuid PRIMARY KEY REFERENCES project (id) ON DELETE CASCADE,
    since             timestamptz NOT NULL DEFAULT now(),
    -- Bytes of uploads that left OPEN (completed, terminated, expired); open uploads' bytes
    -- are added when read (`project_usage_now`).
    bytes_received    bigint NOT NULL DEFAULT 0 CHECK (bytes_received >= 0),
    uploads_completed bigint NOT NULL DEFAULT 0 CHECK (uploads_completed >= 0),
    -- Source duration x renditions (1 for an audio-only presentation) of every flow that
    -- became READY.
    encoded_seconds   double precision NOT NULL DEFAULT 0 CHECK (encoded_seconds >= 0),
    stored_bytes      bigint NOT NULL DEFAULT 0 CHECK (stored_bytes >= 0)
);

INSERT INTO project_usage (project_id) SELECT id FROM project;

CREATE FUNCTION create_project_usage() RETURNS trigger AS $$
BEGIN
    INSERT INTO project_usage (project_id) VALUES (NEW.id) ON CONFLICT DO NOTHING;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER project_has_usage AFTER INSERT ON project
    FOR EACH ROW EXECUTE FUNCTION create_project_usage();

-- Bytes a flow stored on holder, as fflow reported them when it became READY.
ALTER TABLE flow ADD COLUMN stored_bytes bigint CHECK (stored_bytes >= 0);

CREATE INDEX upload_session_project_open_idx ON upload_session (project_id) WHERE status = 'OPEN';

-- The bytes an upload session holds: a single upload counts them on its flow, a partial one
-- on itself; a final upload's bytes are its parts', already counted there.
CREATE FUNCTION session_bytes(s upload_session) RETURNS bigint AS $$
    SELECT CASE s.kind
        WHEN 'PARTIAL' THEN COALESCE(s.uploaded_bytes, 0)
        WHEN 'SINGLE' THEN COALESCE((SELECT f.uploaded_bytes FROM flow f WHERE f.id = s.flow_id), 0)
        ELSE 0
    END;
$$ LANGUAGE sql STABLE;

-- A session that leaves OPEN adds its bytes; a single or final upload that completes counts
-- as an upload completed.
CREATE FUNCTION count_session_usage() RETURNS trigger AS $$
DECLARE
    left_open boolean := NEW.status <> 'OPEN'
        AND (TG_OP = 'INSERT' OR OLD.status = 'OPEN');
    completed boolean := NEW.status = 'COMPLETED' AND NEW.kind <> 'PARTIAL'
        AND (TG_OP = 'INSERT' OR OLD.status = 'OPEN');
BEGIN
    IF left_open OR completed THEN
        UPDATE project_usage
        SET bytes_received = bytes_received
                + CASE WHEN left_open THEN session_bytes(NEW) ELSE 0 END,
            uploads_completed = uploads_completed + CASE WHEN completed THEN 1 ELSE 0 END
        WHERE project_id = NEW.project_id;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER session_usage AFTER INSERT OR UPDATE OF status ON upload_session
    FOR EACH ROW EXECUTE FUNCTION count_session_usage();

-- An open session deleted with its rows (its video deleted while an upload was open) adds the
-- bytes it had received.
CREATE FUNCTION count_deleted_session_usage() RETURNS trigger AS $$
BEGIN
    IF OLD.status = 'OPEN' THEN
        UPDATE project_usage SET bytes_received = bytes_received + session_bytes(OLD)
        WHERE project_id = OLD.project_id;
    END IF;
    RETURN OLD;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER session_deleted_usage BEFORE DELETE ON upload_session
    FOR EACH ROW EXECUTE FUNCTION count_deleted_session_usage();

-- A flow that becomes READY adds its encoded seconds, and its stored bytes unless its video is
-- deleted already (then its output goes with the video).
CREATE FUNCTION count_ready_flow_usage() RETURNS trigger AS $$
DECLARE
    owner uuid;
    deleted boolean;
BEGIN
    IF NEW.status = 'READY' AND OLD.status <> 'READY' THEN
        SELECT v.project_id, v.deleted_at IS NOT NULL INTO owner, deleted
        FROM video v WHERE v.id = NEW.video_id;
        UPDATE project_usage
        SET encoded_seconds = encoded_seconds + COALESCE(NEW.duration_seconds, 0)
                * GREATEST(1, COALESCE(jsonb_array_length(NEW.renditions), 0)),
            stored_bytes = stored_bytes
                + CASE WHEN deleted THEN 0 ELSE COALESCE(NEW.stored_bytes, 0) END
        WHERE project_id = owner;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER flow_ready_usage AFTER UPDATE OF status ON flow
    FOR EACH ROW EXECUTE FUNCTION count_ready_flow_usage();

-- A video's READY flows give their stored bytes back once, when the video is deleted
-- (`deleted_at` set), or when its rows go without that (the scheduler's unused videos).
CREATE FUNCTION video_stored_bytes(video uuid) RETURNS bigint AS $$
    SELECT COALESCE(sum(f.stored_bytes), 0)::bigint FROM flow f
    WHERE f.video_id = video AND f.status = 'READY';
$$ LANGUAGE sql STABLE;

CREATE FUNCTION release_deleted_video_storage() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL THEN
            UPDATE project_usage
            SET stored_bytes = GREATEST(0, stored_bytes - video_stored_bytes(NEW.id))
            WHERE project_id = NEW.project_id;
        END IF;
        RETURN NEW;
    END IF;
    IF OLD.deleted_at IS NULL THEN
        UPDATE project_usage
        SET stored_bytes = GREATEST(0, stored_bytes - video_stored_bytes(OLD.id))
        WHERE project_id = OLD.project_id;
    END IF;
    RETURN OLD;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER video_deleted_usage BEFORE UPDATE OF deleted_at OR DELETE ON video
    FOR EACH ROW EXECUTE FUNCTION release_deleted_video_storage();

-- The counters as they stand now: open uploads' bytes added, and how many are open.
CREATE VIEW project_usage_now AS
SELECT u.project_id,
       u.since,
       u.bytes_received + COALESCE(o.open_bytes, 0) AS bytes_received,
       u.uploads_completed,
       u.encoded_seconds,
       u.stored_bytes,
       COALESCE(o.open_uploads, 0) AS open_uploads
FROM project_usage u
LEFT JOIN LATERAL (
    SELECT sum(session_bytes(s))::bigint AS open_bytes, count(*) AS open_uploads
    FROM upload_session s
    WHERE s.project_id = u.project_id AND s.status = 'OPEN'
) o ON true;
