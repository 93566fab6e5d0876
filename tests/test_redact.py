from llmpulse.core.catalog import Secret
from llmpulse.core.redact import MASK, redact, register_secret


def test_loaded_keys_are_masked_whatever_their_shape():
    register_secret("plain-looking-value-42")
    assert redact("key was plain-looking-value-42 oops") == f"key was {MASK} oops"


def test_key_shapes_are_masked_even_when_unknown():
    samples = [
        "Incorrect API key provided: sk-proj-abcdefghijklmnop.",
        "x-api-key sk-ant-api03-abcdefghijklmn",
        "AIzaSyA1234567890123456789012345",
        "gsk_abcdefghijklmnopqrstuv",
        "xai-abcdefghijklmnopqrstuv",
        "Authorization: Bearer eyJhbGciOi.abc.def",
        "GET /v1beta/models?key=abcdefgh12345",
    ]
    for text in samples:
        out = redact(text)
        assert MASK in out, text
        for secret in (
            "abcdefghijklmnop",
            "api03-abcdefghijklmn",
            "SyA1234567890",
            "abcdefghijklmnopqrstuv",
            "eyJhbGciOi",
            "abcdefgh12345",
        ):
            assert secret not in out


def test_ordinary_text_is_untouched():
    text = "429 Too Many Requests: rate limit reached for gpt-4o in organization org-123"
    assert redact(text) == text


def test_secret_never_formats_its_value():
    s = Secret("sk-live-verysecret")
    assert "verysecret" not in f"{s} {s!r} {s!s} {[s]}"
    assert s.reveal() == "sk-live-verysecret"
