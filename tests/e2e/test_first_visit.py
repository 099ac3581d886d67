"""The first pages a newcomer sees, in a real browser: an empty catalog that says how to add a
model, a sign-in form whose fields line up, and no request that answers 404."""

from playwright.sync_api import expect


def test_it_greets_a_newcomer_without_a_broken_request(page):
    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    page.goto("/")
    expect(page.locator(".empty-catalog")).to_contain_text("The catalog is empty. To add a model")
    page.shots("empty-catalog")
    page.get_by_role("link", name="Sign in").click()
    username, password = page.get_by_label("Username"), page.get_by_label("Password")
    assert username.bounding_box()["x"] == password.bounding_box()["x"]
    assert username.bounding_box()["width"] == password.bounding_box()["width"]
    page.shots("sign-in")
    page.goto("/favicon.ico")
    assert not missing, missing
