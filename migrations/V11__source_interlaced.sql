-- Whether the flow's source picture was interlaced (and so deinterlaced by the encode).
ALTER TABLE flow ADD COLUMN source_interlaced boolean NOT NULL DEFAULT false;
