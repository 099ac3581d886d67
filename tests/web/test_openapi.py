"""The API's OpenAPI 3 schema validates, and its docs page works offline (no CDN)."""

import json
import re

from openapi_spec_validator import validate


def test_it_publishes_a_valid_openapi_schema(client, db):
    schema = client.get("/api/v1/openapi.json").json()
    validate(schema)
    assert schema["openapi"].startswith("3.")
    paths = set(schema["paths"])
    assert {
        "/api/v1/models",
        "/api/v1/variants",
        "/api/v1/results/evals",
        "/api/v1/results/benchmarks",
        "/api/v1/jobs",
        "/api/v1/jobs/{job_id}",
        "/api/v1/jobs/{job_id}/cancel",
        "/api/v1/jobs/{job_id}/retry",
    } <= paths
    assert schema["paths"]["/api/v1/jobs"]["post"]["security"] == [{"Bearer": []}]
    assert "ErrorOut" in schema["components"]["schemas"]


def test_it_serves_the_docs_from_local_files(client, db):
    html = client.get("/api/v1/docs").content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any("swagger-ui-bundle" in a for a in assets)
    assert all(a.startswith("/") for a in assets), assets  # nothing from another host
    for asset in assets:
        assert client.get(asset).status_code == 200, asset


def test_it_links_the_docs_back_to_the_hub(client, db):
    """Swagger renders the schema's description, Markdown, under the page's title."""
    html = client.get("/api/v1/docs").content.decode()
    swagger = json.loads(re.search(r'id="swagger-settings">(.*?)</script>', html, re.S).group(1))
    assert "[Back to the hub](/)" in client.get(swagger["url"]).json()["info"]["description"]
