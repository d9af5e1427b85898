-- Losing the fflow replica that holds an upload's bytes: since when the recorded replica has been
-- unreachable (cleared by the next call that reaches it), and how often the upload was moved to
-- another replica because the grace ran out, with the last reason.

ALTER TABLE upload_session
    ADD COLUMN fflow_unreachable_since timestamptz,
    ADD COLUMN fflow_reassignments integer NOT NULL DEFAULT 0 CHECK (fflow_reassignments >= 0),
    ADD COLUMN fflow_lost_reason text;
