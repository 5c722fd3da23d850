"""Turn botocore's ClientError into baton's errors, once, at the S3 boundary."""

from __future__ import annotations

from botocore.exceptions import ClientError

TRANSIENT_CODES = frozenset(
    {
        "500",
        "502",
        "503",
        "504",
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "RequestTimeout",
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
    }
)
NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchBucket"})
PRECONDITION_CODES = frozenset({"412", "PreconditionFailed", "ConditionalRequestConflict", "409"})


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_not_found(exc: ClientError) -> bool:
    return error_code(exc) in NOT_FOUND_CODES


def is_precondition_failed(exc: ClientError) -> bool:
    return error_code(exc) in PRECONDITION_CODES


def is_not_modified(exc: ClientError) -> bool:
    """A conditional GET that matched: botocore reports the 304 as an error with code "304"."""
    return error_code(exc) in {"304", "NotModified"}


def is_transient(exc: ClientError) -> bool:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return error_code(exc) in TRANSIENT_CODES or int(status) >= 500
