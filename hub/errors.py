"""Answers for requests Django refuses before any view runs."""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.views.defaults import bad_request as django_bad_request


def too_large_message() -> str:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return (
        f"the request body is too large: this hub accepts at most {limit} bytes ({limit / 2**20:.1f} MB) "
        "here (files go through the Hugging Face upload API)"
    )


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django answers a body over DATA_UPLOAD_MAX_MEMORY_SIZE as a bare 400, whichever middleware
    or view first reads it; it is a 413 that says the limit."""
    if isinstance(exception, RequestDataTooBig):
        return HttpResponse(too_large_message(), status=413, content_type="text/plain; charset=utf-8")
    return django_bad_request(request, exception)
