-- Video / Flow / UploadSession. Statuses are text with CHECK constraints; the uploader is the
-- only writer, and every status change goes through its `transitions` module.

CREATE TABLE video (
    id          uuid PRIMARY KEY,
    title       text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    description text NOT NULL DEFAULT '' CHECK (length(description) <= 5000),
    status      text NOT NULL DEFAULT 'CREATED'
                CHECK (status IN ('CREATED', 'UPLOADING', 'PROCESSING', 'READY', 'FAILED')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX video_created_at_idx ON video (created_at DESC, id DESC);

CREATE TABLE flow (
    id               uuid PRIMARY KEY,
    video_id         uuid NOT NULL REFERENCES video (id) ON DELETE CASCADE,
    status           text NOT NULL
                     CHECK (status IN ('UPLOADING', 'PROCESSING', 'READY', 'FAILED', 'CANCELLED')),
    filename         text,
    uploaded_bytes   bigint NOT NULL DEFAULT 0 CHECK (uploaded_bytes >= 0),
    total_bytes      bigint NOT NULL CHECK (total_bytes >= 0),
    error            text,
    duration_seconds double precision,
    width            integer,
    height           integer,
    video_codec      text,
    audio_codec      text,
    hls_path         text,
    dash_path        text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (uploaded_bytes <= total_bytes),
    -- Processing starts only once every byte is in.
    CHECK (status IN ('UPLOADING', 'CANCELLED', 'FAILED') OR uploaded_bytes = total_bytes),
    CHECK (status <> 'READY' OR (hls_path IS NOT NULL AND dash_path IS NOT NULL
                                 AND duration_seconds IS NOT NULL)),
    CHECK (status <> 'FAILED' OR error IS NOT NULL)
);

CREATE INDEX flow_video_id_idx ON flow (video_id, created_at DESC);

CREATE TABLE upload_session (
    id            uuid PRIMARY KEY,
    flow_id       uuid NOT NULL UNIQUE REFERENCES flow (id) ON DELETE CASCADE,
    status        text NOT NULL DEFAULT 'OPEN'
                  CHECK (status IN ('OPEN', 'COMPLETED', 'TERMINATED', 'EXPIRED', 'FAILED')),
    -- Address of the fflow replica that owns this session's ffmpeg process; Redis caches it.
    fflow_address text,
    -- The raw tus Upload-Metadata header, echoed on HEAD.
    metadata      text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_chunk_at timestamptz NOT NULL DEFAULT now(),
    closed_at     timestamptz,
    CHECK ((status = 'OPEN') = (closed_at IS NULL))
);

CREATE INDEX upload_session_open_idx ON upload_session (last_chunk_at) WHERE status = 'OPEN';

-- A flow that is UPLOADING always has an OPEN upload session. Checked at commit, so a
-- transaction may create the flow and its session in either order.
CREATE FUNCTION check_uploading_flow_has_open_session() RETURNS trigger AS $$
DECLARE
    checked_flow uuid;
BEGIN
    IF TG_TABLE_NAME = 'flow' THEN
        checked_flow := NEW.id;
    ELSIF TG_OP = 'DELETE' THEN
        checked_flow := OLD.flow_id;
    ELSE
        checked_flow := NEW.flow_id;
    END IF;
    IF EXISTS (
        SELECT 1 FROM flow f
        WHERE f.id = checked_flow AND f.status = 'UPLOADING'
          AND NOT EXISTS (
              SELECT 1 FROM upload_session s WHERE s.flow_id = f.id AND s.status = 'OPEN')
    ) THEN
        RAISE EXCEPTION 'flow % is UPLOADING without an OPEN upload session', checked_flow
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE CONSTRAINT TRIGGER flow_uploading_has_open_session
    AFTER INSERT OR UPDATE OF status ON flow
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION check_uploading_flow_has_open_session();

CREATE CONSTRAINT TRIGGER session_close_leaves_no_uploading_flow
    AFTER UPDATE OF status OR DELETE ON upload_session
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION check_uploading_flow_has_open_session();
