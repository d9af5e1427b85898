"""Drives tuspy, the tus project's own Python client, from the end-to-end tests: uploads a file
in chunks, each PATCH carrying an Upload-Checksum (sha1), and prints the upload URL as JSON.

    python checksum_upload.py ENDPOINT FILE CHUNK_SIZE

VOD_API_KEY, when set, is sent as the bearer credential.
"""
import json
import os
import sys

from tusclient import client


def main():
    endpoint, path, chunk_size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    key = os.environ.get("VOD_API_KEY")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    uploader = client.TusClient(endpoint, headers=headers).uploader(
        path,
        chunk_size=chunk_size,
        metadata={"filename": "checksummed.mp4"},
        upload_checksum=True,
    )
    uploader.upload()
    print(json.dumps({"event": "success", "url": uploader.url, "offset": uploader.offset}))


if __name__ == "__main__":
    main()
