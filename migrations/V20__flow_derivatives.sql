-- Derivatives of a ready flow's presentation, as fflow reported them: its storyboard
-- (`{"image_path", "vtt_path", "width", "height", "interval_ms"}`, NULL without a picture or
-- from an encode older than storyboards) and its MP4 downloads (`[{"name", "path", "bytes",
-- "width", "height"}]`, empty unless the flow asked for them). Paths are relative to holder's
-- root, like `hls_path`.
ALTER TABLE flow
    ADD COLUMN storyboard jsonb CHECK (storyboard IS NULL OR jsonb_typeof(storyboard) = 'object'),
    ADD COLUMN downloads jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(downloads) = 'array');
