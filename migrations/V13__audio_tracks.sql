-- Every sound track of a flow's source (language, channels, codec) and the audio renditions
-- made of them (one stereo AAC rendition per track), as JSON like `renditions`.
ALTER TABLE flow ADD COLUMN source_audio_tracks jsonb;
ALTER TABLE flow ADD COLUMN audio_renditions jsonb;
