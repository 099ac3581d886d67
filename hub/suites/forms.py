from django import forms


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files in one input (Django's documented pattern); none is fine."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None) -> list:
        items = data if isinstance(data, list | tuple) else [data]
        return [f for f in (super(MultipleFileField, self).clean(d, initial) for d in items) if f]


class SuiteUploadForm(forms.Form):
    suite = forms.FileField(label="Suite YAML")
    files = MultipleFileField(required=False, label="Its task YAML files and data files (select them all at once)")
    private = forms.BooleanField(required=False, label="private (only you and staff see and use it)")
    replace = forms.BooleanField(
        required=False, label="replace the newest version (only if no job used it) instead of adding a version"
    )
