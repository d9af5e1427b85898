-- Who may watch a video: `public` plays from its plain URLs, `signed` only with a token signed
-- by one of its project's signing keys. Set at creation (`POST /v1/videos`, `playback_policy`
-- in `Upload-Metadata`, a direct upload's new video) and changed by `PATCH /v1/videos/{id}`.
ALTER TABLE video ADD COLUMN playback_policy text NOT NULL DEFAULT 'public'
    CHECK (playback_policy IN ('public', 'signed'));

-- A direct upload's new video may now be signed too.
ALTER TABLE direct_upload DROP CONSTRAINT direct_upload_playback_policy_check;
ALTER TABLE direct_upload ADD CONSTRAINT direct_upload_playback_policy_check
    CHECK (playback_policy IN ('public', 'signed'));
