#!/bin/sh
# Makes compose's Garage node hold holder's bucket, through Garage's admin API: the node's role
# in the layout (once), holder's key (imported, so compose gives it to holder), the bucket, and
# the key's read and write access to it. Safe to run again.
set -eu
api=http://garage:3903
auth="Authorization: Bearer $GARAGE_ADMIN_TOKEN"

call() { curl -fsS -H "$auth" -H 'Content-Type: application/json' "$@" | tr -d ' \n'; }
# The first `"name":value` of a JSON text, value unquoted.
first() { grep -o "\"$1\":\"*[0-9A-Za-z]*" | head -n 1 | sed 's/.*:"*//'; }

tries=0
until call "$api/v1/status" >/dev/null 2>&1; do
  tries=$((tries + 1))
  [ "$tries" -lt 60 ] || { echo "garage's admin API does not answer" >&2; exit 1; }
  sleep 1
done

node=$(call "$api/v1/status" | first node)
if ! call "$api/v1/layout" | grep -q "\"id\":\"$node\""; then
  call -X POST "$api/v1/layout" \
    -d "[{\"id\":\"$node\",\"zone\":\"dc1\",\"capacity\":$GARAGE_CAPACITY_BYTES,\"tags\":[]}]" >/dev/null
  version=$(call "$api/v1/layout" | first version)
  call -X POST "$api/v1/layout/apply" -d "{\"version\":$((version + 1))}" >/dev/null
fi

if ! call "$api/v1/key?id=$S3_ACCESS_KEY_ID" >/dev/null 2>&1; then
  call -X POST "$api/v1/key/import" \
    -d "{\"accessKeyId\":\"$S3_ACCESS_KEY_ID\",\"secretAccessKey\":\"$S3_SECRET_ACCESS_KEY\",\"name\":\"holder\"}" >/dev/null
fi

bucket=$(call "$api/v1/bucket?globalAlias=$S3_BUCKET" 2>/dev/null | first id || true)
if [ -z "$bucket" ]; then
  bucket=$(call -X POST "$api/v1/bucket" -d "{\"globalAlias\":\"$S3_BUCKET\"}" | first id)
fi
call -X POST "$api/v1/bucket/allow" \
  -d "{\"bucketId\":\"$bucket\",\"accessKeyId\":\"$S3_ACCESS_KEY_ID\",\"permissions\":{\"read\":true,\"write\":true,\"owner\":false}}" >/dev/null
echo "bucket $S3_BUCKET ready"
