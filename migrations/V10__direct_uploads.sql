-- A direct upload is a single-use tus creation URL that needs no key (`POST
-- /v1/direct-uploads`): a browser or an app uploads one video into the project through it.
-- The URL carries a token of 256 random bits; only its SHA-256 is kept. The URL is claimed
-- atomically by the upload it creates (status `asset_created`, with that upload's video and
-- session); a waiting one past `expires_at` is shown as `timed_out` without being written.
CREATE TABLE direct_upload (
    id              uuid PRIMARY KEY,
    project_id      uuid NOT NULL REFERENCES project (id) ON DELETE CASCADE,
    token_sha256    bytea NOT NULL UNIQUE CHECK (length(token_sha256) = 32),
    -- What the new video gets (`new_video`); a null title takes the upload's own.
    title           text CHECK (length(title) BETWEEN 1 AND 200),
    description     text NOT NULL DEFAULT '' CHECK (length(description) <= 5000),
    playback_policy text NOT NULL DEFAULT 'public' CHECK (playback_policy IN ('public')),
    -- The only origin a browser may use the URL from; null: no browser at all.
    cors_origin     text CHECK (length(cors_origin) <= 2048),
    status          text NOT NULL DEFAULT 'waiting'
                    CHECK (status IN ('waiting', 'asset_created', 'cancelled')),
    expires_at      timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    video_id        uuid REFERENCES video (id) ON DELETE SET NULL,
    upload_id       uuid,
    claimed_at      timestamptz,
    cancelled_at    timestamptz,
    CHECK ((status = 'asset_created') = (claimed_at IS NOT NULL)),
    CHECK ((status = 'cancelled') = (cancelled_at IS NOT NULL))
);

CREATE INDEX direct_upload_project_created_at_idx
    ON direct_upload (project_id, created_at DESC, id DESC);
