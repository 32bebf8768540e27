"""Request parsing and validation for the work item API: pure functions, no I/O.

Everything a client sends is checked here and turned into typed values, or refused with
`BadRequest` (400), `PayloadTooLarge` (413) or `UnsupportedMediaType` (415), each saying
what is wrong and naming the parameter or field.

The entry point: the names below, from the modules that hold them: url_params.py (path ids,
the query string, listing filters, the CI search), continuation.py (continuation tokens),
patch_request.py (a PATCH's body, ETags and If-Match) and request_errors.py (the refusals).
"""

from __future__ import annotations

from shared.api.continuation import MAX_TOKEN_CHARS, TOKEN_VERSION, continuation, make_token
from shared.api.patch_request import (
    ANY,
    JSON_MEDIA_TYPES,
    MAX_BODY_BYTES,
    MAX_NOTE,
    MAX_TEXT,
    PATCH_FIELDS,
    UNSET,
    ItemChange,
    etag_header,
    if_match,
    item_change,
    json_body,
    media_type,
)
from shared.api.request_errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from shared.api.url_params import (
    CI_DEFAULT_TOP,
    CI_SEARCH_PARAMS,
    DEFAULT_TOP,
    LIST_PARAMS,
    MAX_PARAM_CHARS,
    MAX_QUERY_PARAMS,
    MAX_TOP,
    CiSearch,
    ListRequest,
    boolean,
    ci_id,
    ci_reference,
    ci_search,
    item_id,
    list_request,
    priorities,
    query_params,
    severities,
    states,
    tenant_filter,
    timestamp,
    top,
)

__all__ = [
    "ANY",
    "CI_DEFAULT_TOP",
    "CI_SEARCH_PARAMS",
    "DEFAULT_TOP",
    "JSON_MEDIA_TYPES",
    "LIST_PARAMS",
    "MAX_BODY_BYTES",
    "MAX_NOTE",
    "MAX_PARAM_CHARS",
    "MAX_QUERY_PARAMS",
    "MAX_TEXT",
    "MAX_TOKEN_CHARS",
    "MAX_TOP",
    "PATCH_FIELDS",
    "TOKEN_VERSION",
    "UNSET",
    "BadRequest",
    "CiSearch",
    "ItemChange",
    "ListRequest",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "boolean",
    "ci_id",
    "ci_reference",
    "ci_search",
    "continuation",
    "etag_header",
    "if_match",
    "item_change",
    "item_id",
    "json_body",
    "list_request",
    "make_token",
    "media_type",
    "priorities",
    "query_params",
    "severities",
    "states",
    "tenant_filter",
    "timestamp",
    "top",
]
