-- What an encode tells about a flow beyond V1's single rendition: the source as uploaded, the
-- ladder of renditions, the poster, how far the encode is, and whether it started while the
-- upload was still arriving.

ALTER TABLE flow
    ADD COLUMN source_width       integer CHECK (source_width > 0),
    ADD COLUMN source_height      integer CHECK (source_height > 0),
    ADD COLUMN source_video_codec text,
    ADD COLUMN source_audio_codec text,
    ADD COLUMN source_frame_rate  double precision CHECK (source_frame_rate > 0),
    -- [{"width", "height", "bandwidth", "average_bandwidth", "codecs", "playlist_path"}, ...],
    -- tallest first; [] for an audio-only presentation.
    ADD COLUMN renditions         jsonb CHECK (renditions IS NULL OR jsonb_typeof(renditions) = 'array'),
    ADD COLUMN poster_path        text,
    ADD COLUMN progress_percent   smallint CHECK (progress_percent BETWEEN 0 AND 100),
    ADD COLUMN encode_path        text CHECK (encode_path IN ('STREAMING', 'AFTER_UPLOAD')),
    -- Bytes of the upload on the fflow replica when ffmpeg started.
    ADD COLUMN encode_started_at_byte bigint CHECK (encode_started_at_byte >= 0),
    ADD CHECK (encode_started_at_byte IS NULL OR encode_started_at_byte <= total_bytes),
    ADD CHECK ((encode_path IS NULL) = (encode_started_at_byte IS NULL));
