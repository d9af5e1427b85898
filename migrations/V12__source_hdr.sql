-- Whether the flow's source picture was high dynamic range (and so tone-mapped by the encode).
ALTER TABLE flow ADD COLUMN source_hdr boolean NOT NULL DEFAULT false;
