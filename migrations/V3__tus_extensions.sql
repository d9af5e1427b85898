-- What the tus extensions need: deferred lengths, expiry, concatenation, a write lock per
-- upload, and the checksum of the stitched source.

-- creation-defer-length: a flow may upload before its length is known, never process so.
ALTER TABLE flow ALTER COLUMN total_bytes DROP NOT NULL;
ALTER TABLE flow ADD CONSTRAINT flow_length_known_past_uploading
    CHECK (status IN ('UPLOADING', 'CANCELLED', 'FAILED') OR total_bytes IS NOT NULL);

-- Lowercase hex SHA-256 of the source fflow stitched, reported with the encode outcome.
ALTER TABLE flow ADD COLUMN source_sha256 text CHECK (source_sha256 ~ '^[0-9a-f]{64}$');

-- A SINGLE session feeds its flow. A PARTIAL one (concatenation) has no flow and counts its
-- bytes itself until a FINAL session joins it; a FINAL session lists its parts in order and
-- feeds a flow whose source is their joined bytes.
ALTER TABLE upload_session
    ADD COLUMN kind text NOT NULL DEFAULT 'SINGLE' CHECK (kind IN ('SINGLE', 'PARTIAL', 'FINAL')),
    ALTER COLUMN flow_id DROP NOT NULL,
    ADD COLUMN uploaded_bytes bigint CHECK (uploaded_bytes >= 0),
    ADD COLUMN total_bytes bigint CHECK (total_bytes >= 0),
    ADD COLUMN parts uuid[],
    ADD COLUMN final_session_id uuid REFERENCES upload_session (id) ON DELETE SET NULL,
    -- An open session takes no more bytes after this (expiration); set on every chunk.
    ADD COLUMN expires_at timestamptz,
    -- The request holding the write lock, until `writer_expires_at`.
    ADD COLUMN writer uuid,
    ADD COLUMN writer_expires_at timestamptz,
    ADD CONSTRAINT session_flow_unless_partial CHECK ((kind = 'PARTIAL') = (flow_id IS NULL)),
    ADD CONSTRAINT session_counts_bytes_only_when_partial
        CHECK ((kind = 'PARTIAL') = (uploaded_bytes IS NOT NULL)),
    ADD CONSTRAINT session_length_only_when_partial
        CHECK (kind = 'PARTIAL' OR total_bytes IS NULL),
    ADD CONSTRAINT session_partial_within_length CHECK (uploaded_bytes <= total_bytes),
    ADD CONSTRAINT session_partial_complete_when_completed
        CHECK (kind <> 'PARTIAL' OR status <> 'COMPLETED' OR uploaded_bytes = total_bytes),
    ADD CONSTRAINT session_parts_only_when_final CHECK ((kind = 'FINAL') = (parts IS NOT NULL)),
    ADD CONSTRAINT session_writer_has_lease CHECK ((writer IS NULL) = (writer_expires_at IS NULL));

-- Sessions opened before expiry was recorded get the default time to live.
UPDATE upload_session SET expires_at = last_chunk_at + interval '24 hours' WHERE status = 'OPEN';

CREATE INDEX upload_session_expires_idx ON upload_session (expires_at)
    WHERE status = 'OPEN' OR (kind = 'PARTIAL' AND status = 'COMPLETED');
