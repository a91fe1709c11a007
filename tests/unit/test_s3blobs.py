"""The object store's settings without a server: `BLOB_STORE_URL` parsing and refusal by name."""

from __future__ import annotations

import pytest

from roomserver.config import Settings, SettingsError
from roomserver.store.s3blobs import MIN_PART_SIZE, S3Credentials, S3Location


def test_locations_parse_to_a_bucket_and_a_slash_terminated_prefix() -> None:
    assert S3Location.parse("s3://roomserver-blobs") == S3Location("roomserver-blobs", "")
    assert S3Location.parse("s3://roomserver-blobs/") == S3Location("roomserver-blobs", "")
    assert S3Location.parse("s3://roomserver-blobs/prod/eu/") == S3Location("roomserver-blobs", "prod/eu/")


@pytest.mark.parametrize("bad", ["s3://rs/x", "http://bucket/x", "s3://Upper/x", "s3://-bad/x",
                                 "s3://" + "b" * 64, "bucket/x", ""])
def test_bad_urls_are_refused_by_the_parser_and_by_name_in_the_settings(bad: str) -> None:
    with pytest.raises(ValueError):
        S3Location.parse(bad)
    if bad:
        with pytest.raises(SettingsError) as caught:
            Settings.from_env({"BLOB_STORE_URL": bad})
        assert [var for var, _ in caught.value.problems] == ["BLOB_STORE_URL"]


def test_every_url_the_settings_accept_parses() -> None:
    for good in ("", "s3://roomserver-blobs", "s3://a.b-c/deploy/one"):
        assert Settings.from_env({"BLOB_STORE_URL": good}).blob_store_url == good
    with pytest.raises(SettingsError):
        Settings.from_env({"BLOB_PART_SIZE_BYTES": str(MIN_PART_SIZE - 1)})


def test_empty_credentials_are_left_to_botocore_and_the_secret_is_hidden() -> None:
    assert S3Credentials().client_args() == {}
    args = S3Credentials(endpoint_url="http://127.0.0.1:9000", access_key_id="k",
                         secret_access_key="s").client_args()
    assert args == {"endpoint_url": "http://127.0.0.1:9000", "aws_access_key_id": "k",
                    "aws_secret_access_key": "s"}
    settings = Settings.from_env({"AWS_SECRET_ACCESS_KEY": "very-secret", "AWS_ACCESS_KEY_ID": "AKIA1"})
    assert "very-secret" not in repr(settings) and "AKIA1" not in repr(settings)
