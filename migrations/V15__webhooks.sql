-- Webhooks: a project's endpoints, which receive its events by HTTP POST, signed.
--
-- Deliveries are the outbox of the webhooks: the transaction that records an event inserts a
-- delivery for every enabled endpoint of the project that takes its type, not yet queued; a
-- relay in every uploader publishes unqueued deliveries to the broker and marks them queued
-- in one transaction; a consumer makes an attempt, records it, and marks a delivery that must
-- be tried again unqueued with its delay, which the relay publishes to the retry queue of that
-- delay. A delivery is never lost between a commit and a publish, and a delivery published
-- twice is attempted once per attempt number.
CREATE TABLE webhook_endpoint (
    id              uuid PRIMARY KEY,
    project_id      uuid NOT NULL REFERENCES project (id) ON DELETE CASCADE,
    url             text NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    -- The event types it takes; `{*}` is every type.
    events          text[] NOT NULL CHECK (cardinality(events) BETWEEN 1 AND 64),
    description     text NOT NULL DEFAULT '' CHECK (length(description) <= 500),
    enabled         boolean NOT NULL DEFAULT true,
    -- Why it was disabled by vod (`failing`), null when enabled or disabled by its project.
    disabled_reason text CHECK (disabled_reason IN ('failing')),
    -- When its deliveries started failing without a success since; null while they succeed.
    failing_since   timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX webhook_endpoint_project_idx ON webhook_endpoint (project_id, created_at DESC, id DESC);

-- An endpoint's signing secrets: the newest, and the ones it replaced until `expires_at` (a
-- rotation's overlap). Every secret not expired signs each delivery. Secrets are kept as they
-- are, since signing needs them; they are shown once, when made.
CREATE TABLE webhook_secret (
    endpoint_id uuid NOT NULL REFERENCES webhook_endpoint (id) ON DELETE CASCADE,
    secret      text NOT NULL CHECK (secret ~ '^whsec_[0-9a-f]{64}$'),
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at  timestamptz,
    PRIMARY KEY (endpoint_id, secret)
);

-- The gateway never signs: its read-only role (deploy/postgres/initdb/10-gateway-reader.sh)
-- does not read the secrets, whichever of this and that script runs first.
DO $$
BEGIN
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'vod_gateway') THEN
    REVOKE ALL ON webhook_secret FROM vod_gateway;
  END IF;
END
$$;

CREATE TABLE webhook_delivery (
    id              uuid PRIMARY KEY,
    endpoint_id     uuid NOT NULL REFERENCES webhook_endpoint (id) ON DELETE CASCADE,
    -- The event sent: its id is `Vod-Event-Id`, kept by every attempt.
    event_id        text NOT NULL CHECK (event_id ~ '^evt_[0-9a-f]{32}$'),
    event_type      text NOT NULL,
    -- The body sent, for an event that is not in the log (a `ping`); null: the event's.
    payload         jsonb,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    -- False until the relay published it (again, after an attempt that failed).
    queued          boolean NOT NULL DEFAULT false,
    -- The delay before the next attempt, for the relay to pick its retry queue; 0: now.
    retry_delay_ms  bigint NOT NULL DEFAULT 0,
    -- An attempt under way, by any replica, until then.
    claimed_until   timestamptz,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at     timestamptz,
    CHECK ((status = 'pending') = (finished_at IS NULL))
);

CREATE INDEX webhook_delivery_unqueued_idx ON webhook_delivery (created_at)
    WHERE status = 'pending' AND NOT queued;
CREATE INDEX webhook_delivery_endpoint_idx ON webhook_delivery (endpoint_id, created_at DESC);
CREATE INDEX webhook_delivery_event_idx ON webhook_delivery (event_id);
-- Retention: the oldest finished go first.
CREATE INDEX webhook_delivery_finished_idx ON webhook_delivery (finished_at) WHERE finished_at IS NOT NULL;

-- Every attempt of a delivery, as the delivery log shows it.
CREATE TABLE webhook_attempt (
    delivery_id  uuid NOT NULL REFERENCES webhook_delivery (id) ON DELETE CASCADE,
    number       integer NOT NULL CHECK (number >= 1),
    attempted_at timestamptz NOT NULL,
    -- The receiver's answer; null when none came (refused address, timeout, connection).
    status_code  integer,
    latency_ms   integer NOT NULL,
    error        text CHECK (length(error) <= 1000),
    PRIMARY KEY (delivery_id, number)
);

-- An endpoint disabled for failing records an event about it.
ALTER TABLE event DROP CONSTRAINT event_type_check;
ALTER TABLE event ADD CONSTRAINT event_type_check CHECK (type IN (
    'video.created', 'video.upload.created', 'video.upload.completed',
    'video.upload.expired', 'video.upload.cancelled', 'video.processing',
    'video.ready', 'video.failed', 'video.updated', 'video.deleted',
    'direct_upload.created', 'direct_upload.asset_created',
    'direct_upload.cancelled', 'webhook_endpoint.disabled'));
ALTER TABLE event DROP CONSTRAINT event_object_type_check;
ALTER TABLE event ADD CONSTRAINT event_object_type_check
    CHECK (object_type IN ('video', 'direct_upload', 'webhook_endpoint'));
