-- Projects are namespaces that never see each other: every video and every upload session
-- belongs to one, and an API key belongs to one and reaches only its rows. Rows made before
-- projects existed move to the project named `default`.

CREATE TABLE project (
    id         uuid PRIMARY KEY,
    name       text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 100),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The id of the project every earlier row moves to; a fixed value, so that every database
-- migrated from an older schema has the same one.
INSERT INTO project (id, name) VALUES ('00000000-0000-7000-8000-000000000001', 'default');

ALTER TABLE video ADD COLUMN project_id uuid REFERENCES project (id) ON DELETE RESTRICT;
UPDATE video SET project_id = '00000000-0000-7000-8000-000000000001';
ALTER TABLE video ALTER COLUMN project_id SET NOT NULL;
CREATE INDEX video_project_created_at_idx ON video (project_id, created_at DESC, id DESC);

-- A session names its project itself: a partial upload has no flow and so no video.
ALTER TABLE upload_session ADD COLUMN project_id uuid REFERENCES project (id) ON DELETE RESTRICT;
UPDATE upload_session s SET project_id = '00000000-0000-7000-8000-000000000001';
ALTER TABLE upload_session ALTER COLUMN project_id SET NOT NULL;

-- A session's project is its video's: checked whenever either could change.
CREATE FUNCTION check_session_project_is_video_project() RETURNS trigger AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM upload_session s
        JOIN flow f ON f.id = s.flow_id
        JOIN video v ON v.id = f.video_id
        WHERE s.id = NEW.id AND s.project_id <> v.project_id
    ) THEN
        RAISE EXCEPTION 'upload session % belongs to another project than its video', NEW.id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE CONSTRAINT TRIGGER session_project_is_video_project
    AFTER INSERT OR UPDATE OF project_id, flow_id ON upload_session
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION check_session_project_is_video_project();

-- A key is `vod_<id as 32 hex digits>_<secret>`; only the SHA-256 of the secret is kept, and
-- the secret is shown once, when the key is made.
CREATE TABLE api_key (
    id            uuid PRIMARY KEY,
    project_id    uuid NOT NULL REFERENCES project (id) ON DELETE CASCADE,
    name          text NOT NULL DEFAULT '' CHECK (length(name) <= 100),
    scopes        text[] NOT NULL
                  CHECK (cardinality(scopes) > 0 AND scopes <@ ARRAY['read', 'write']::text[]),
    secret_sha256 bytea NOT NULL CHECK (length(secret_sha256) = 32),
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- Recorded when the gateway verifies the key against the database, not on every request.
    last_used_at  timestamptz,
    revoked_at    timestamptz
);

CREATE INDEX api_key_project_idx ON api_key (project_id, created_at DESC);
