-- A video's `passthrough` is the operator's own reference (`PATCH /v1/videos/{id}`); vod never
-- reads it.
ALTER TABLE video ADD COLUMN passthrough text CHECK (length(passthrough) <= 255);

-- When `DELETE /v1/videos/{id}` deleted the video. From then on the API never shows it and no
-- upload attaches to it; its rows and its output on holder go once no flow of it is uploading
-- or processing (an encode running at the deletion ends first, so nothing it publishes stays).
ALTER TABLE video ADD COLUMN deleted_at timestamptz;
CREATE INDEX video_deleted_idx ON video (deleted_at) WHERE deleted_at IS NOT NULL;
