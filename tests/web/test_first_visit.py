"""What a newcomer's browser asks for on the first pages: nothing it asks for is missing."""


def test_it_serves_the_icon_pages_name_and_the_one_browsers_guess(client, db):
    page = client.get("/").content.decode()
    assert '<link rel="icon" href="/static/hub/favicon.svg"' in page
    guessed = client.get("/favicon.ico")
    assert guessed.status_code == 301 and guessed["Location"] == "/static/hub/favicon.svg"
    icon = client.get(guessed["Location"])
    assert icon.status_code == 200 and b"<svg" in b"".join(icon.streaming_content)


def test_it_tells_a_newcomer_how_to_add_a_model_to_an_empty_catalog(client, db):
    page = client.get("/").content.decode()
    assert "The catalog is empty. To add a model" in page and 'href="/jobs/new/"' in page
    assert "manage.py import_model PATH" in page
    assert "No model matches." in client.get("/?q=llama").content.decode()
