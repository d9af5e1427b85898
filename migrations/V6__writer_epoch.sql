-- A fencing token for an upload's write lock: it goes up each time the lock passes to another
-- request. Every chunk is written to fflow with the token it was checked under, and moves the
-- offset only if the token has not changed since; fflow refuses a write whose token is lower
-- than one it has seen. So no row lock is held while a chunk travels to fflow, and a request
-- that lost the lock mid-chunk can neither overwrite nor count bytes.

ALTER TABLE upload_session
    ADD COLUMN writer_epoch bigint NOT NULL DEFAULT 0 CHECK (writer_epoch >= 0);
