"""redact_url keeps scheme, host and port; userinfo, path, query and fragment never survive."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from roomserver.api.http import ip_key
from roomserver.observe.redact import redact_text, redact_url


def test_credentials_paths_and_queries_are_hidden() -> None:
    assert redact_url("https://mainnet.helius-rpc.com/?api-key=abc") == "https://mainnet.helius-rpc.com/***"
    assert redact_url("redis://:pw@127.0.0.1:6379/0") == "redis://***@127.0.0.1:6379/***"
    assert redact_url("postgresql://postgres:s3cret@/db?host=/tmp/x") == "postgresql://***@/***"
    assert redact_url("http://127.0.0.1:8899") == "http://127.0.0.1:8899"
    assert redact_url("http://[::1]:80/x") == "http://[::1]:80/***"
    assert redact_url("not a url") == "***"
    assert redact_url("http://host:notaport/") == "***"


def test_urls_inside_text_are_redacted() -> None:
    text = "Client error '401' for url 'https://rpc.example/v2/KEY?api-key=SECRET' after 3 tries"
    assert redact_text(text) == "Client error '401' for url 'https://rpc.example/***' after 3 tries"


SECRET = st.text(alphabet="ABCDEFGHJKMNPQRSTUVWXYZ", min_size=8, max_size=20)


@given(SECRET, SECRET, SECRET, SECRET)
def test_no_secret_part_survives(user: str, password: str, path: str, query: str) -> None:
    url = f"https://{user}:{password}@rpc.example.com:8443/{path}?api-key={query}#{path}"
    shown = redact_url(url)
    assert shown == "https://***@rpc.example.com:8443/***"
    for secret in (user, password, path, query):
        assert secret not in shown and secret not in redact_text(f"error at {url} now")


def test_ip_keys() -> None:
    assert ip_key("203.0.113.9") == "203.0.113.9"
    assert ip_key("2001:db8:1:2::1") == ip_key("2001:db8:1:2:ffff:ffff:ffff:9") == "2001:db8:1:2::/64"
    assert ip_key("2001:db8:1:3::1") != ip_key("2001:db8:1:2::1")
    assert ip_key("::ffff:198.51.100.7") == "198.51.100.7"
    assert ip_key("unknown") == "unknown"
