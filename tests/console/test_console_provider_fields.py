"""The console's form for a provider key of several fields (SPEC.md §11): Azure OpenAI's
key, endpoint and deployments, connected from the page and shown with the key masked."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.console.conftest import new_email, shot, sign_up
from tests.support.system import System

API_KEY = "4f1c0d2e9b8a7c6d5e4f3a2b1c0d9a7e"


def test_an_azure_key_is_connected_from_its_three_fields(system: System, page: Page) -> None:
    sign_up(page, new_email())
    key = page.get_by_label("Azure OpenAI API key", exact=True)
    endpoint = page.get_by_label("Azure OpenAI endpoint")
    deployments = page.get_by_label("Azure OpenAI deployments (model=deployment, one a line)")
    connect = page.get_by_role("button", name="Connect Azure OpenAI key")

    # Deployments the page cannot read are refused before anything is sent.
    key.fill(API_KEY)
    endpoint.fill("https://contoso.openai.azure.com")
    deployments.fill("gpt-4o my-gpt-4o")
    connect.click()
    expect(page.get_by_role("alert")).to_contain_text("Write each deployment as model=deployment")
    expect(deployments).to_have_attribute("aria-invalid", "true")

    # An endpoint that is not an Azure resource is StepBlend's 400, said plainly.
    endpoint.fill("https://contoso.example.com")
    deployments.fill("gpt-4o=my-gpt-4o\ngpt-4.1 = gpt-41")
    connect.click()
    expect(page.get_by_role("alert")).to_contain_text("must be your Azure resource's URL")
    expect(page.locator("#key-state-azure")).to_have_text("Not connected")

    endpoint.fill("https://contoso.openai.azure.com/")
    connect.click()
    state = page.locator("#key-state-azure")
    expect(state).to_contain_text("Connected …9a7e")
    expect(state).to_contain_text("https://contoso.openai.azure.com · gpt-4o→my-gpt-4o, gpt-4.1→gpt-41")
    expect(page.get_by_role("status")).to_contain_text("Azure OpenAI key saved")
    expect(page.get_by_label("New Azure OpenAI API key")).to_have_value("")
    assert API_KEY not in page.content()
    shot(page, "azure-key-connected")


def test_a_bedrock_key_is_connected_from_its_fields_without_the_optional_token(system: System, page: Page) -> None:
    access_key_id, secret = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    sign_up(page, new_email())
    page.get_by_label("AWS Bedrock access key ID", exact=True).fill(access_key_id)
    page.get_by_label("AWS Bedrock secret access key").fill(secret)
    region = page.get_by_label("AWS Bedrock region")
    connect = page.get_by_role("button", name="Connect AWS Bedrock key")

    # A region that is not one names another host: StepBlend's 400, said plainly.
    region.fill("evil.example.com/x")
    connect.click()
    expect(page.get_by_role("alert")).to_contain_text("must be an AWS region name")
    expect(page.locator("#key-state-bedrock")).to_have_text("Not connected")

    # The session token is optional: left empty, the key is saved without it.
    region.fill("eu-west-1")
    connect.click()
    state = page.locator("#key-state-bedrock")
    expect(state).to_contain_text("Connected …")
    expect(state).to_contain_text("eu-west-1")
    expect(page.get_by_role("status")).to_contain_text("AWS Bedrock key saved")
    assert secret not in page.content() and access_key_id not in page.content()
