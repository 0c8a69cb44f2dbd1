"""What a failed Hub call means: whether another attempt can help, after how long, and what to tell the person.

Judged by what happened on the wire (an HTTP answer, or a connection that failed), never by the
wrapper huggingface_hub put around it. Its error types are imported on first use, as the Hub
client imports huggingface_hub itself.
"""

from __future__ import annotations

import time

from modal_jobs.errors import ModelFailed
from modal_jobs.model_list import ModelEntry

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRY_BASE_SECONDS = 1.0
RETRY_MAX_SECONDS = 30.0
# A Hub that answers (429, 5xx) is asked this many times at most, deadline or not: it is up, and saying no.
ANSWERED_ATTEMPTS = 6


class HubError(ModelFailed):
    """The Hub would not give what a model needs; the message says what to do."""


class AccessDenied(HubError):
    """The repo is gated or private, and the token (if any) does not open it."""


def answered(exc: Exception) -> bool:
    from huggingface_hub.errors import HfHubHTTPError

    return isinstance(exc, HfHubHTTPError)


def is_unreachable(exc: Exception) -> bool:
    import httpx2

    return isinstance(exc, httpx2.ConnectError | httpx2.ConnectTimeout)


def is_access_denied(exc: Exception) -> bool:
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    status = getattr(getattr(exc, "response", None), "status_code", None)
    return isinstance(exc, GatedRepoError) or (status in (401, 403) and not isinstance(exc, RepositoryNotFoundError))


def wire_error(exc: Exception) -> Exception:
    """The HTTP answer or transport failure behind `exc` (huggingface_hub wraps a failed HEAD), else `exc`."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, HfHubHTTPError | httpx2.TransportError):
            return cause
        cause = cause.__cause__
    return exc


def retry_wait(exc: Exception, attempt: int) -> float | None:
    """Seconds to wait before the next attempt, or None when retrying cannot help."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    backoff = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2.0 ** (attempt - 1))
    if isinstance(exc, HfHubHTTPError):
        response = exc.response
        if response is None or response.status_code not in RETRY_STATUSES:
            return None
        header: str | None = response.headers.get("Retry-After")
        retry_after = _parse_retry_after(header)
        return backoff if retry_after is None else min(retry_after, RETRY_MAX_SECONDS)
    if isinstance(exc, httpx2.TransportError):
        return backoff
    return None


def _parse_retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime  # rarely needed, and slow to import

    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def describe(exc: BaseException, entry: ModelEntry) -> str:
    """One line for a Hub failure: what happened and what to do. Never includes a token."""
    import httpx2
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, GatedRepoError) or (status in (401, 403) and not isinstance(exc, RepositoryNotFoundError)):
        return (
            f"access denied (HTTP {status}): the repo may be gated or private; accept its terms on the Hub "
            "and set HF_TOKEN to a token with read access"
        )
    if isinstance(exc, RepositoryNotFoundError):
        return (
            f"repository {entry.repo_id} not found (HTTP {status}); check repo_id in the model list, "
            "or set HF_TOKEN if it is private or gated"
        )
    if isinstance(exc, RevisionNotFoundError):
        return f"revision {entry.revision!r} not found in {entry.repo_id}; check revision in the model list"
    if isinstance(exc, RemoteEntryNotFoundError):
        return f"file not found at this commit (HTTP {status}); the listing changed mid-run: run again"
    if isinstance(exc, HfHubHTTPError):
        if status in RETRY_STATUSES:
            return f"the Hub answered HTTP {status}; it is busy or down: try again later"
        return f"the Hub answered HTTP {status}"
    if isinstance(exc, httpx2.ConnectError | httpx2.ConnectTimeout):
        return f"cannot reach the Hub ({type(exc).__name__}: {exc}); check the network or HF_ENDPOINT"
    if isinstance(exc, httpx2.TimeoutException):
        return f"the transfer stalled: the Hub stopped sending ({type(exc).__name__}: {exc})"
    if isinstance(exc, httpx2.TransportError):
        return f"the connection to the Hub broke ({type(exc).__name__}: {exc}); check the network or HF_ENDPOINT"
    return f"{type(exc).__name__}: {exc}"
