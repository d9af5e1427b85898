#!/usr/bin/env bash
# Makes vod_gateway, the role the gateway logs in with: it may read every table the database
# owner (POSTGRES_USER, which the uploaders' migrations run as) has made or will make, and write
# none. The gateway reads video, flow and upload_session; it never writes (the uploaders own
# that state).
#
# PostgreSQL's image runs this once, when its data volume is first initialised. On an existing
# volume, or to rotate the password (it is set again on every run), run it by hand:
#   docker compose exec -e VOD_GATEWAY_POSTGRES_PASSWORD postgres \
#     bash /docker-entrypoint-initdb.d/10-gateway-reader.sh
# then restart the gateway with the new VOD_GATEWAY_POSTGRES_PASSWORD.
set -euo pipefail

: "${VOD_GATEWAY_POSTGRES_PASSWORD:?set VOD_GATEWAY_POSTGRES_PASSWORD}"
owner="${POSTGRES_USER:-postgres}"
database="${POSTGRES_DB:-$owner}"

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$owner" --dbname "$database" \
  -v owner="$owner" -v database="$database" -v password="$VOD_GATEWAY_POSTGRES_PASSWORD" <<'SQL'
-- Another run may make the role at the same moment; either one is fine.
DO $$
BEGIN
  CREATE ROLE vod_gateway;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
  NULL;
END
$$;
ALTER ROLE vod_gateway WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  PASSWORD :'password';
-- A second guard besides the grants: its sessions start read-only.
ALTER ROLE vod_gateway SET default_transaction_read_only = on;
GRANT CONNECT ON DATABASE :"database" TO vod_gateway;
GRANT USAGE ON SCHEMA public TO vod_gateway;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO vod_gateway;
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public GRANT SELECT ON TABLES TO vod_gateway;
-- Except webhook signing secrets: only the uploaders sign (a migration revokes them too when
-- it makes the table after this runs).
DO $$
BEGIN
  IF to_regclass('public.webhook_secret') IS NOT NULL THEN
    REVOKE ALL ON webhook_secret FROM vod_gateway;
  END IF;
END
$$;
SQL
