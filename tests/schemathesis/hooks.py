"""What schemathesis needs to know of the gateway beyond its OpenAPI document.

OpenAPI describes each header alone; tus ties some together, as the document says in words.
A request generated as valid is made to follow those ties too, so that the gateway's answer to
it says whether the document and the gateway agree. Requests generated as invalid are left as
they are. Each failure dropped here is one the document cannot prevent, and the run counts it
as dropped.
"""

import base64
import hashlib
import json
import os

import requests

import schemathesis
from schemathesis import GenerationMode
from schemathesis.core import NotSet
from schemathesis.core.failures import AcceptedNegativeData
from schemathesis.core.parameters import ParameterLocation
from schemathesis.openapi.checks import RejectedPositiveData, UseAfterFree
from schemathesis.transport.serialization import Binary, serialize_binary

UPLOAD_BYTES = "application/offset+octet-stream"

# tus upload bytes are sent as they are, like any octet stream.
schemathesis.serializer.alias(UPLOAD_BYTES, "application/octet-stream")

DIGESTS = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "sha512": hashlib.sha512,
    "md5": hashlib.md5,
}

# What a `PATCH` valid by the document is refused for when it does not fit the upload it is
# sent to, which no document can know: a body past the upload's length, a length other than
# the one declared, an upload that expired. (An offset other than the upload's is a 409.)
REFUSALS_FOR_THE_STATE_OF_THE_UPLOAD = {"length_exceeded", "invalid_length", "upload_expired"}

# What a creation valid by the document is refused for when the project has reached a quota
# (its stored bytes, its open uploads, its uploads this hour), which depends on what was made
# before it, not on the request.
REFUSALS_FOR_THE_STATE_OF_THE_PROJECT = {"quota_exceeded", "too_many_open_uploads", "rate_limited"}


@schemathesis.hook
def before_load_schema(context, raw_schema):
    """The upload a creation made is where its `Location` points: `HEAD`, `PATCH` and `DELETE`
    follow it. OpenAPI links cannot take the id out of that URL; schemathesis's `#regex:` can,
    and it does not guess these links itself, as `/v1/uploads/{id}` has no `GET`."""
    created = raw_schema["paths"]["/v1/uploads"]["post"]["responses"]["201"]
    upload_id = "$response.header.Location#regex:/v1/uploads/([^/?#]+)$"
    created["links"] = {
        operation_id: {"operationId": operation_id, "parameters": {"path.id": upload_id}}
        for operation_id in ("get_upload_offset", "append_to_upload", "terminate_upload")
    }
    # The same for the upload made through a direct upload's URL, under that URL.
    created = raw_schema["paths"]["/v1/direct/{token}"]["post"]["responses"]["201"]
    made_upload_id = "$response.header.Location#regex:/v1/direct/[^/]+/([^/?#]+)$"
    created["links"] = {
        operation_id: {
            "operationId": operation_id,
            "parameters": {"path.token": "$request.path.token", "path.upload_id": made_upload_id},
        }
        for operation_id in (
            "get_direct_upload_offset",
            "append_to_direct_upload",
            "terminate_direct_upload",
        )
    }
    # The example URL names no machine: the examples phase sends `WEBHOOK_URL` instead.
    for name in ("CreateWebhookRequest", "UpdateWebhookRequest"):
        url = raw_schema["components"]["schemas"][name]["properties"]["url"]
        for key in ("example", "examples"):
            if key in url:
                url[key] = WEBHOOK_URL if key == "example" else [WEBHOOK_URL]


# Where a webhook URL valid by the document points: whether a URL is accepted depends on the
# addresses its name resolves to at that moment, which no document can say (and this machine
# may resolve no public name). The stack under test accepts local `http` targets; nothing
# listens there, so the deliveries fail and are retried, as they would for any receiver.
WEBHOOK_URL = "http://127.0.0.1:9/hooks/vod"


@schemathesis.hook
def map_case(context, case):
    _point_webhook_urls_here(case)
    if not _is_valid_by_the_document(case):
        return case
    operation = case.operation
    method = operation.method.upper()
    if operation.path in ("/v1/uploads", "/v1/direct/{token}") and method == "POST":
        headers = dict(case.headers or {})
        _make_creation_coherent(case, headers)
        _sign_body(case, headers)
        case.headers = headers
    elif operation.path in ("/v1/uploads/{id}", "/v1/direct/{token}/{upload_id}") and method == "PATCH":
        headers = dict(case.headers or {})
        _sign_body(case, headers)
        case.headers = headers
    if operation.path.startswith("/v1/direct/{token}"):
        _use_a_real_direct_upload_url(case, fresh=operation.path == "/v1/direct/{token}")
    return case


def _point_webhook_urls_here(case):
    """A webhook URL valid by the document (a string within its length) becomes
    `WEBHOOK_URL`, in requests generated as valid or invalid alike: an invalid one stays
    invalid through its other parts, or its URL is not such a string."""
    operation = case.operation
    if operation.path not in ("/v1/webhooks", "/v1/webhooks/{id}"):
        return
    if operation.method.upper() not in ("POST", "PATCH") or not isinstance(case.body, dict):
        return
    url = case.body.get("url")
    if isinstance(url, str) and len(url.encode()) <= 2048:
        case.body = {**case.body, "url": WEBHOOK_URL}


# The tokens of the direct upload URLs made for this run, which a link may carry on.
DIRECT_UPLOAD_TOKENS = set()


def _use_a_real_direct_upload_url(case, fresh):
    """A direct upload's URL is a secret of 256 bits that no generator finds: a request valid
    by the document goes to one made for it (each creation to a new one, as a URL takes one
    upload), or to the one a link took it from."""
    token = (case.path_parameters or {}).get("token")
    if not fresh and token in DIRECT_UPLOAD_TOKENS:
        return
    response = requests.post(
        os.environ["VOD_GATEWAY_URL"] + "/v1/direct-uploads",
        headers={"Authorization": "Bearer " + os.environ["VOD_API_KEY"]},
        json={},
        timeout=30,
    )
    response.raise_for_status()
    token = response.json()["url"].rsplit("/", 1)[-1]
    DIRECT_UPLOAD_TOKENS.add(token)
    case.path_parameters = {**(case.path_parameters or {}), "token": token}


# How many direct uploads the run made through `POST /v1/direct-uploads`.
DIRECT_UPLOADS_MADE = [0]


@schemathesis.hook
def after_call(context, case, response):
    """Every other direct upload the run makes is used at once, as a browser would, so that
    both a waiting one and one with its `video_id` are there for the operations that read
    them, and for the links to that video."""
    operation = case.operation
    if not (
        operation.path == "/v1/direct-uploads"
        and operation.method.upper() == "POST"
        and response.status_code == 201
    ):
        return
    DIRECT_UPLOADS_MADE[0] += 1
    if DIRECT_UPLOADS_MADE[0] % 2 == 0:
        return
    url = json.loads(response.content)["url"]
    requests.post(url, headers={"Tus-Resumable": "1.0.0", "Upload-Length": "10"}, timeout=30)


@schemathesis.hook
def filter_failure(context, failure, case, response):
    if isinstance(failure, UseAfterFree):
        # `DELETE /v1/direct-uploads/{id}` cancels: the direct upload stays readable, with the
        # status `cancelled`, as the document says.
        return not (
            case.operation.path == "/v1/direct-uploads/{id}"
            and _json_field(response, "status") == "cancelled"
        )
    if isinstance(failure, AcceptedNegativeData):
        return not _is_invalid_only_through_its_upload_body(case)
    if isinstance(failure, RejectedPositiveData):
        method = case.operation.method.upper()
        code = _error_code(response)
        refused_for_the_state_of_the_upload = (
            method == "PATCH" and code in REFUSALS_FOR_THE_STATE_OF_THE_UPLOAD
        )
        refused_for_the_state_of_the_project = (
            case.operation.path == "/v1/uploads"
            and method == "POST"
            and code in REFUSALS_FOR_THE_STATE_OF_THE_PROJECT
        )
        return not (refused_for_the_state_of_the_upload or refused_for_the_state_of_the_project)
    return True


def _is_valid_by_the_document(case):
    meta = case.meta
    return meta is not None and meta.generation.mode == GenerationMode.POSITIVE


def _is_invalid_only_through_its_upload_body(case):
    """Every byte sequence is an upload body, so a request invalid only through its body is
    sent as a valid one: schemathesis knows this of `application/octet-stream` alone."""
    meta = case.meta
    if meta is None or case.media_type != UPLOAD_BYTES:
        return False
    negative = [location for location in meta.components if meta.is_negative_at(location)]
    return negative == [ParameterLocation.BODY]


def _make_creation_coherent(case, headers):
    """Each metadata key once; one of `Upload-Length` and `Upload-Defer-Length`, none for a
    final upload, which names each partial upload once; a first body within the declared
    length."""
    metadata = _header(headers, "Upload-Metadata")
    if metadata is not None:
        headers[metadata] = _each_metadata_key_once(str(headers[metadata]))
    length = _header(headers, "Upload-Length")
    defer = _header(headers, "Upload-Defer-Length")
    concat = _header(headers, "Upload-Concat")
    if concat is not None and str(headers[concat]).startswith("final;"):
        for name in (length, defer):
            if name is not None:
                del headers[name]
        headers[concat] = _each_part_once(str(headers[concat]))
        return
    if length is not None and defer is not None:
        del headers[defer]
    if length is None and defer is None:
        headers["Upload-Length"] = str(len(_body_bytes(case)))
        length = "Upload-Length"
    if length is not None:
        declared = int(headers[length])
        body = _body_bytes(case)
        if len(body) > declared:
            case.body = Binary(body[:declared])


def _each_metadata_key_once(metadata):
    """`Upload-Metadata` without a pair whose key an earlier pair has: tus keys are unique."""
    seen = set()
    pairs = []
    for pair in metadata.split(","):
        key = pair.strip(" \t").split(" ", 1)[0].split("\t", 1)[0]
        if key in seen:
            continue
        seen.add(key)
        pairs.append(pair)
    return ",".join(pairs)


def _each_part_once(concat):
    """`final;` and its upload URLs, without those naming an upload already named."""
    seen = set()
    urls = []
    for url in concat[len("final;") :].split():
        upload_id = url.rsplit("/", 1)[-1].lower()
        if upload_id not in seen:
            seen.add(upload_id)
            urls.append(url)
    return "final;" + " ".join(urls)


def _sign_body(case, headers):
    """`Upload-Checksum` names an algorithm; its digest is the body's."""
    checksum = _header(headers, "Upload-Checksum")
    if checksum is None:
        return
    algorithm = str(headers[checksum]).split(" ", 1)[0]
    if algorithm not in DIGESTS:
        # Not of the header's grammar, which a generator may miss in its coverage phase.
        algorithm = "sha256"
    digest = DIGESTS[algorithm](_body_bytes(case)).digest()
    headers[checksum] = f"{algorithm} {base64.b64encode(digest).decode()}"


def _body_bytes(case):
    """The body as it will be sent."""
    if isinstance(case.body, NotSet) or not case.media_type:
        return b""
    return serialize_binary(case.body)


def _header(headers, name):
    for key in headers:
        if key.lower() == name.lower():
            return key
    return None


def _error_code(response):
    return _json_field(response, "code")


def _json_field(response, name):
    try:
        return json.loads(response.content).get(name)
    except (ValueError, AttributeError):
        return None
