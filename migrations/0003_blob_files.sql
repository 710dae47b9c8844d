-- Blobs larger than the store's inline limit (64 KiB) live in content-addressed files under the
-- journal's blobs/ folder (<data_dir>/blobs/<first 2 hex>/<sha256>); their row keeps size and
-- created_at, with an empty `data`. Rows written before this migration stay inline and readable.
ALTER TABLE blobs ADD COLUMN stored TEXT NOT NULL DEFAULT 'inline' CHECK (stored IN ('inline', 'file'));
