-- Events: what happened to a project's videos and direct uploads, written by the uploader in
-- the transaction of the change each one reports (a transactional outbox), so that a change
-- committed has its event and a change rolled back has none.
--
-- Order. `seq` is taken when a row is inserted, not when its transaction commits: a
-- transaction that took seq 10 may commit after one that took seq 11, so a reader that had
-- read up to 11 would skip 10 for good. Each event therefore records the id of the
-- transaction that wrote it (`xact`, `pg_current_xact_id()`), events are ordered by
-- (xact, seq), and a reader is shown only the events whose `xact` is below the `xmin` of its
-- snapshot: every transaction below it has ended, so no event can ever appear before one
-- already shown. A transaction's events commit together and keep their `seq` order.
CREATE TABLE event (
    seq         bigserial PRIMARY KEY,
    -- Public id: `evt_` and 32 hex digits.
    id          text NOT NULL UNIQUE CHECK (id ~ '^evt_[0-9a-f]{32}$'),
    project_id  uuid NOT NULL REFERENCES project (id) ON DELETE CASCADE,
    xact        xid8 NOT NULL DEFAULT pg_current_xact_id(),
    type        text NOT NULL CHECK (type IN (
                    'video.created', 'video.upload.created', 'video.upload.completed',
                    'video.upload.expired', 'video.upload.cancelled', 'video.processing',
                    'video.ready', 'video.failed', 'video.updated', 'video.deleted',
                    'direct_upload.created', 'direct_upload.asset_created',
                    'direct_upload.cancelled')),
    -- What the event is about: a video or a direct upload (no foreign key: an event outlives
    -- the video it reports deleted).
    object_type text NOT NULL CHECK (object_type IN ('video', 'direct_upload')),
    object_id   uuid NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- The object as the API showed it at that moment, plus what the type adds.
    data        jsonb NOT NULL
);

-- `GET /v1/events?after=`: a project's events in order.
CREATE INDEX event_project_order_idx ON event (project_id, xact, seq);
-- Retention: the oldest go first.
CREATE INDEX event_created_at_idx ON event (created_at);
