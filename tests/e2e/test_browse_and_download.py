"""Sign in through the form, filter the catalog, open a model page and download a file whose
sha256 matches the one recorded."""

import hashlib

from playwright.sync_api import expect


def test_it_signs_in_filters_the_catalog_and_downloads_a_file(page, catalog, alice, tmp_path):
    page.goto("/")
    page.get_by_role("link", name="Sign in").click()
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("alice-password-1")
    page.shots("login")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out alice")).to_be_visible()
    expect(page.locator('li.base[data-name="alice/secret-model"]')).to_be_visible()  # her private model
    page.shots("catalog")

    # filters apply in place (htmx) and land in the address bar
    page.locator("#id_scheme").select_option("FP8_DYNAMIC")
    expect(page.locator('li.variant[data-name="org/llama-1b-w4a16-gptq"]')).to_have_count(0)
    expect(page.locator('li.variant[data-name="org/llama-1b-fp8-dynamic"]')).to_be_visible()
    assert "scheme=FP8_DYNAMIC" in page.url
    page.locator("#id_scheme").select_option("")
    page.locator("#id_gpu").select_option("8.0")
    expect(page.locator('li.variant[data-name="org/llama-1b-fp8-dynamic"]')).to_have_count(0)
    page.locator("#id_validated").check()
    expect(page.locator("li.base")).to_have_count(1)
    page.shots("filtered")

    page.get_by_role("link", name="org/llama-1b-w4a16-gptq").click()
    expect(page.get_by_role("heading", name="Accuracy recovery")).to_be_visible()
    expect(page.locator("table.recovery tbody tr")).to_have_count(2)
    page.shots("variant-page")

    entry = next(f for f in catalog.w4.files if f["path"] == "model.safetensors")
    row = page.locator("table.files tr", has_text="model.safetensors")
    expect(row).to_contain_text(entry["sha256"])
    with page.expect_download() as info:
        row.get_by_role("link", name="download").click()
    saved = tmp_path / "downloaded.safetensors"
    info.value.save_as(saved)
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == entry["sha256"]
