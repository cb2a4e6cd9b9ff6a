"""Bucket settings clients set and read: CORS (with browser preflights and response headers),
bucket tagging, versioning (never enabled), ACLs (private only), ownership controls, and object
tagging — on baobab dev with boto3 and `requests` for the unsigned browser-side requests."""

import pytest
import requests
from botocore.exceptions import ClientError

from conftest import empty_and_delete, unique_bucket


@pytest.fixture
def b(dev_cluster):
    s3 = dev_cluster.client()
    name = unique_bucket("set")
    s3.create_bucket(Bucket=name)
    yield s3, name
    empty_and_delete(s3, name)


def code(e):
    return e.value.response["Error"]["Code"], e.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_cors_rules_preflight_and_response_headers(dev_cluster, b):
    s3, bucket = b
    with pytest.raises(ClientError) as e:
        s3.get_bucket_cors(Bucket=bucket)
    assert code(e) == ("NoSuchCORSConfiguration", 404)
    url = f"{dev_cluster.endpoint}/{bucket}/obj"
    # Without rules every preflight is refused.
    r = requests.options(url, headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "GET"}, timeout=10)
    assert r.status_code == 403

    rules = [
        {"AllowedOrigins": ["https://app.example.com"], "AllowedMethods": ["GET", "PUT"],
         "AllowedHeaders": ["content-type", "x-amz-*"], "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 600},
        {"AllowedOrigins": ["*"], "AllowedMethods": ["HEAD"]},
    ]
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": rules})
    got = s3.get_bucket_cors(Bucket=bucket)["CORSRules"]
    assert got[0]["AllowedOrigins"] == ["https://app.example.com"] and got[0]["MaxAgeSeconds"] == 600
    assert got[1]["AllowedMethods"] == ["HEAD"]

    r = requests.options(url, headers={
        "Origin": "https://app.example.com", "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "Content-Type, X-Amz-Date"}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "PUT" in r.headers["Access-Control-Allow-Methods"]
    assert r.headers["Access-Control-Allow-Headers"] == "content-type, x-amz-date"
    assert r.headers["Access-Control-Max-Age"] == "600"
    # A header no rule allows, a method no rule allows, an origin no rule allows.
    for headers in ({"Origin": "https://app.example.com", "Access-Control-Request-Method": "PUT",
                     "Access-Control-Request-Headers": "authorization-x"},
                    {"Origin": "https://app.example.com", "Access-Control-Request-Method": "DELETE"},
                    {"Origin": "https://evil.test", "Access-Control-Request-Method": "GET"}):
        r = requests.options(url, headers=headers, timeout=10)
        assert r.status_code == 403, headers
    r = requests.options(url, headers={"Origin": "https://evil.test", "Access-Control-Request-Method": "HEAD"}, timeout=10)
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == "*"

    # An actual (signed) request from an allowed origin gets the rule's headers.
    s3.put_object(Bucket=bucket, Key="obj", Body=b"x")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "obj"})
    r = requests.get(url, headers={"Origin": "https://app.example.com"}, timeout=10)
    assert r.status_code == 200 and r.content == b"x"
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert r.headers["Access-Control-Expose-Headers"] == "ETag"
    r = requests.get(url, headers={"Origin": "https://evil.test"}, timeout=10)
    assert r.status_code == 200 and "Access-Control-Allow-Origin" not in r.headers

    # Invalid configurations.
    with pytest.raises(ClientError) as e:
        s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [
            {"AllowedOrigins": ["*"], "AllowedMethods": ["PATCH"]}]})
    assert code(e) == ("InvalidArgument", 400)

    s3.delete_bucket_cors(Bucket=bucket)
    with pytest.raises(ClientError) as e:
        s3.get_bucket_cors(Bucket=bucket)
    assert code(e) == ("NoSuchCORSConfiguration", 404)


def test_bucket_tagging(b):
    s3, bucket = b
    with pytest.raises(ClientError) as e:
        s3.get_bucket_tagging(Bucket=bucket)
    assert code(e) == ("NoSuchTagSet", 404)
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "team", "Value": "geo"}, {"Key": "cost", "Value": "42"}]})
    tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]}
    assert tags == {"team": "geo", "cost": "42"}
    with pytest.raises(ClientError) as e:
        s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": f"k{i}", "Value": "v"} for i in range(51)]})
    assert code(e) == ("InvalidTag", 400)
    s3.delete_bucket_tagging(Bucket=bucket)
    with pytest.raises(ClientError) as e:
        s3.get_bucket_tagging(Bucket=bucket)
    assert code(e) == ("NoSuchTagSet", 404)


def test_object_tagging(b):
    s3, bucket = b
    s3.put_object(Bucket=bucket, Key="t", Body=b"x", Tagging="a=1&b%20c=d")
    got = s3.get_object(Bucket=bucket, Key="t")
    assert got["TagCount"] == 2
    tags = {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"]}
    assert tags == {"a": "1", "b c": "d"}
    s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": [{"Key": "only", "Value": "one"}]})
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == [{"Key": "only", "Value": "one"}]
    with pytest.raises(ClientError) as e:
        s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": [{"Key": f"k{i}", "Value": "v"} for i in range(11)]})
    assert code(e)[1] == 400
    s3.delete_object_tagging(Bucket=bucket, Key="t")
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == []
    assert "TagCount" not in s3.get_object(Bucket=bucket, Key="t")
    with pytest.raises(ClientError) as e:
        s3.get_object_tagging(Bucket=bucket, Key="missing")
    assert code(e) == ("NoSuchKey", 404)


def test_small_bucket_calls(b):
    s3, bucket = b
    v = s3.get_bucket_versioning(Bucket=bucket)
    assert "Status" not in v
    acl = s3.get_bucket_acl(Bucket=bucket)
    assert acl["Grants"][0]["Permission"] == "FULL_CONTROL"
    s3.put_bucket_acl(Bucket=bucket, ACL="private")
    with pytest.raises(ClientError) as e:
        s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    assert code(e)[1] in (400, 501)
    oc = s3.get_bucket_ownership_controls(Bucket=bucket)
    assert oc["OwnershipControls"]["Rules"][0]["ObjectOwnership"] == "BucketOwnerEnforced"
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] in (None, "")
    s3.put_object(Bucket=bucket, Key="o", Body=b"x")
    assert s3.get_object_acl(Bucket=bucket, Key="o")["Grants"][0]["Permission"] == "FULL_CONTROL"


def test_headers_and_response_overrides(b):
    s3, bucket = b
    s3.put_object(Bucket=bucket, Key="h", Body=b"hello", ContentType="text/plain", CacheControl="max-age=60",
                  ContentDisposition="inline", ContentEncoding="identity", ContentLanguage="fr",
                  WebsiteRedirectLocation="/elsewhere", Metadata={"spaced": "    a   b   c  "})
    h = s3.head_object(Bucket=bucket, Key="h")
    assert (h["ContentType"], h["CacheControl"], h["ContentDisposition"], h["ContentLanguage"]) == (
        "text/plain", "max-age=60", "inline", "fr")
    assert h["WebsiteRedirectLocation"] == "/elsewhere"
    # The SigV4 canonical form trims and collapses spaces; the signature verified.
    assert h["Metadata"]["spaced"].strip().split() == ["a", "b", "c"]
    g = s3.get_object(Bucket=bucket, Key="h", ResponseContentType="application/x-test",
                      ResponseContentDisposition="attachment; filename=h.txt", ResponseCacheControl="no-cache")
    assert g["ContentType"] == "application/x-test"
    assert g["ContentDisposition"] == "attachment; filename=h.txt"
    assert g["CacheControl"] == "no-cache"


def test_user_metadata_and_key_limits(b):
    s3, bucket = b
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="m", Body=b"x", Metadata={"big": "v" * 3000})
    assert code(e) == ("MetadataTooLarge", 400)
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k" * 1025, Body=b"x")
    assert code(e) == ("KeyTooLongError", 400)
    with pytest.raises(ClientError) as e:
        s3.create_multipart_upload(Bucket=bucket, Key="m", Metadata={"big": "v" * 3000})
    assert code(e) == ("MetadataTooLarge", 400)


def test_huge_header_section_gets_an_s3_error(b):
    """100 KB of headers: AWS's RequestHeaderSectionTooLarge (400, XML body), not a dropped
    connection; the server keeps serving."""
    s3, bucket = b
    meta = {f"m{i:03d}": "v" * 2000 for i in range(50)}
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="huge", Body=b"x", Metadata=meta)
    assert code(e) == ("RequestHeaderSectionTooLarge", 400)
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="huge")
    assert code(e)[1] == 404
    s3.put_object(Bucket=bucket, Key="fine", Body=b"y")
