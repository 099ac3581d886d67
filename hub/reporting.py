"""Django's error report (the DEBUG page, and the mail to ADMINS in production) shows every
frame's local variables, and with DEBUG on it ignores @sensitive_variables. A request's bearer
token is a local of the frames that check it, and the Hub tokens of the stages are locals of
huggingface_hub's: mask any value that holds one, whatever its variable is called."""

import re

from django.conf import settings
from django.views.debug import SafeExceptionReporterFilter

from hub.api.models import TOKEN_PREFIX

HUB_TOKEN = re.compile(re.escape(TOKEN_PREFIX) + r"[A-Za-z0-9_-]{16,}")


class SecretsFilter(SafeExceptionReporterFilter):
    def cleanse_special_types(self, request, value):
        value = super().cleanse_special_types(request, value)
        secrets = [s for s in (settings.HF_TOKEN, settings.PUBLISH_HF_TOKEN) if s]
        # containers too: huggingface_hub keeps the token in a headers dict
        text = value if isinstance(value, str) else repr(value) if isinstance(value, (dict, list, tuple)) else ""
        if HUB_TOKEN.search(text) or any(s in text for s in secrets):
            return self.cleansed_substitute
        return value
