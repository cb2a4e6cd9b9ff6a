"""Multipart upload with boto3 against `baobab dev`, checked against what AWS S3 answers: the
object is the concatenation of its parts, its ETag is the MD5 of the parts' MD5s with a "-N"
suffix, parts can be read back one by one (partNumber), re-uploaded, copied from other objects
(UploadPartCopy), listed with pagination, aborted; and each misuse gets S3's error code and
status."""

import base64
import hashlib
import os
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import MiB, empty_and_delete, unique_bucket

PART = 5 * MiB  # the smallest size S3 accepts for a part that is not the last


def error_code(exc_info):
    return exc_info.value.response["Error"]["Code"]


def status(exc_info):
    return exc_info.value.response["ResponseMetadata"]["HTTPStatusCode"]


def md5_etag(data):
    return '"' + hashlib.md5(data).hexdigest() + '"'


def multipart_etag(parts):
    digests = b"".join(hashlib.md5(p).digest() for p in parts)
    return f'"{hashlib.md5(digests).hexdigest()}-{len(parts)}"'


def abort_all(s3, bucket):
    try:
        for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
            for u in page.get("Uploads", []):
                try:
                    s3.abort_multipart_upload(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"])
                except ClientError:
                    pass
    except ClientError:
        pass


@pytest.fixture
def mp(dev_cluster):
    """(boto3 client, bucket) on the dev cluster; aborts leftover uploads and deletes the bucket."""
    s3 = dev_cluster.client()
    name = unique_bucket("mp")
    s3.create_bucket(Bucket=name)
    yield s3, name
    abort_all(s3, name)
    empty_and_delete(s3, name)


def start(s3, bucket, key, **kw):
    return s3.create_multipart_upload(Bucket=bucket, Key=key, **kw)["UploadId"]


def upload_parts(s3, bucket, key, upload_id, parts, first=1):
    """Uploads `parts` as part numbers first, first+1, ...; returns the CompleteMultipartUpload list."""
    done = []
    for n, data in enumerate(parts, start=first):
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=n, Body=data)
        assert r["ETag"] == md5_etag(data), n
        done.append({"PartNumber": n, "ETag": r["ETag"]})
    return done


def put_multipart(s3, bucket, key, parts, **create_kw):
    upload_id = start(s3, bucket, key, **create_kw)
    done = upload_parts(s3, bucket, key, upload_id, parts)
    return s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                        MultipartUpload={"Parts": done})


def three_parts():
    return [os.urandom(PART), os.urandom(PART), os.urandom(MiB + 7)]


def test_complete_concatenates_the_parts(mp):
    s3, bucket = mp
    parts = three_parts()
    whole = b"".join(parts)
    upload_id = start(s3, bucket, "big/obj", ContentType="application/x-mp", Metadata={"origin": "parts"})
    assert upload_id
    done = upload_parts(s3, bucket, "big/obj", upload_id, parts)
    r = s3.complete_multipart_upload(Bucket=bucket, Key="big/obj", UploadId=upload_id, MultipartUpload={"Parts": done})
    assert r["ETag"] == multipart_etag(parts)
    assert r["Bucket"] == bucket and r["Key"] == "big/obj"

    got = s3.get_object(Bucket=bucket, Key="big/obj")
    assert got["Body"].read() == whole
    assert got["ETag"] == multipart_etag(parts)
    head = s3.head_object(Bucket=bucket, Key="big/obj")
    assert head["ContentLength"] == len(whole)
    assert head["ETag"] == multipart_etag(parts)
    # What CreateMultipartUpload said becomes the object's.
    assert head["ContentType"] == "application/x-mp"
    assert head["Metadata"] == {"origin": "parts"}

    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(o["Key"], o["Size"], o["ETag"]) for o in listed] == [("big/obj", len(whole), multipart_etag(parts))]
    # A completed upload is no longer in progress.
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_a_resent_completion_answers_as_the_first(mp):
    """A client whose CompleteMultipartUpload answer was lost resends it: it gets the same
    object back (as S3 does), not NoSuchUpload; another parts list or another upload id is
    still NoSuchUpload."""
    s3, bucket = mp
    parts = three_parts()
    upload_id = start(s3, bucket, "again")
    done = upload_parts(s3, bucket, "again", upload_id, parts)
    first = s3.complete_multipart_upload(Bucket=bucket, Key="again", UploadId=upload_id,
                                         MultipartUpload={"Parts": done})
    again = s3.complete_multipart_upload(Bucket=bucket, Key="again", UploadId=upload_id,
                                         MultipartUpload={"Parts": done})
    assert again["ETag"] == first["ETag"] == multipart_etag(parts)
    for other in ({"Parts": done[:2]}, {"Parts": [dict(done[0], ETag='"' + "0" * 32 + '"')] + done[1:]}):
        with pytest.raises(ClientError) as e:
            s3.complete_multipart_upload(Bucket=bucket, Key="again", UploadId=upload_id, MultipartUpload=other)
        assert error_code(e) == "NoSuchUpload"
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="again", UploadId="not-" + upload_id,
                                     MultipartUpload={"Parts": done})
    assert error_code(e) == "NoSuchUpload"
    assert s3.get_object(Bucket=bucket, Key="again")["Body"].read() == b"".join(parts)


def test_single_part_and_gaps_in_part_numbers(mp):
    s3, bucket = mp
    # One part, smaller than 5 MiB: the last part may be of any size.
    r = put_multipart(s3, bucket, "one", [b"just one small part"])
    assert r["ETag"] == multipart_etag([b"just one small part"])
    assert s3.get_object(Bucket=bucket, Key="one")["Body"].read() == b"just one small part"

    # Part numbers need not be consecutive, only ascending.
    a, b = os.urandom(PART), os.urandom(1234)
    upload_id = start(s3, bucket, "gaps")
    r1 = s3.upload_part(Bucket=bucket, Key="gaps", UploadId=upload_id, PartNumber=3, Body=a)
    r2 = s3.upload_part(Bucket=bucket, Key="gaps", UploadId=upload_id, PartNumber=7, Body=b)
    r = s3.complete_multipart_upload(Bucket=bucket, Key="gaps", UploadId=upload_id, MultipartUpload={"Parts": [
        {"PartNumber": 3, "ETag": r1["ETag"]}, {"PartNumber": 7, "ETag": r2["ETag"]}]})
    assert r["ETag"] == multipart_etag([a, b])
    assert s3.get_object(Bucket=bucket, Key="gaps")["Body"].read() == a + b


def test_get_and_head_by_part_number(mp):
    s3, bucket = mp
    parts = three_parts()
    total = sum(map(len, parts))
    put_multipart(s3, bucket, "p", parts)
    etag = multipart_etag(parts)
    # Without partNumber, S3 sends no parts count.
    assert "PartsCount" not in s3.head_object(Bucket=bucket, Key="p")

    offset = 0
    for n, data in enumerate(parts, start=1):
        got = s3.get_object(Bucket=bucket, Key="p", PartNumber=n)
        # S3 answers a partNumber GET as a range: 206 with the part's Content-Range.
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206, n
        assert got["Body"].read() == data, n
        assert got["ContentLength"] == len(data), n
        assert got["PartsCount"] == 3, n  # x-amz-mp-parts-count
        assert got["ResponseMetadata"]["HTTPHeaders"]["x-amz-mp-parts-count"] == "3"
        assert got["ContentRange"] == f"bytes {offset}-{offset + len(data) - 1}/{total}", n
        assert got["ETag"] == etag, "the ETag is the whole object's"
        offset += len(data)

    head = s3.head_object(Bucket=bucket, Key="p", PartNumber=1)
    assert head["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert head["ContentLength"] == PART
    assert head["PartsCount"] == 3
    assert head["ETag"] == etag
    head = s3.head_object(Bucket=bucket, Key="p", PartNumber=2)
    assert head["ContentLength"] == PART and head["PartsCount"] == 3

    # A part number past the last one: S3's documented InvalidPartNumber, 416.
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="p", PartNumber=4)
    assert error_code(e) == "InvalidPartNumber"
    assert status(e) == 416


def test_ranges_across_part_boundaries(mp):
    s3, bucket = mp
    parts = three_parts()
    whole = b"".join(parts)
    put_multipart(s3, bucket, "r", parts)
    cases = [
        (PART - 100, PART + 99),            # part 1 -> part 2
        (2 * PART - 1, 2 * PART),           # the last byte of part 2, the first of part 3
        (10, len(whole) - 10),              # inside part 1 to inside part 3
        (2 * PART + 5, len(whole) - 1),     # inside the last part to the end
    ]
    for first, last in cases:
        got = s3.get_object(Bucket=bucket, Key="r", Range=f"bytes={first}-{last}")
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["Body"].read() == whole[first:last + 1], (first, last)
        assert got["ContentLength"] == last + 1 - first
    got = s3.get_object(Bucket=bucket, Key="r", Range="bytes=-20")
    assert got["Body"].read() == whole[-20:]


def test_reuploading_a_part_replaces_it(mp):
    s3, bucket = mp
    parts = three_parts()
    upload_id = start(s3, bucket, "re")
    upload_parts(s3, bucket, "re", upload_id, parts)
    new2 = os.urandom(PART + 3)
    r = s3.upload_part(Bucket=bucket, Key="re", UploadId=upload_id, PartNumber=2, Body=new2)
    assert r["ETag"] == md5_etag(new2)
    listed = s3.list_parts(Bucket=bucket, Key="re", UploadId=upload_id)["Parts"]
    assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in listed] == [
        (1, PART, md5_etag(parts[0])), (2, PART + 3, md5_etag(new2)), (3, len(parts[2]), md5_etag(parts[2]))]
    final = [parts[0], new2, parts[2]]
    r = s3.complete_multipart_upload(Bucket=bucket, Key="re", UploadId=upload_id, MultipartUpload={"Parts": [
        {"PartNumber": n, "ETag": md5_etag(d)} for n, d in enumerate(final, start=1)]})
    assert r["ETag"] == multipart_etag(final)
    assert s3.get_object(Bucket=bucket, Key="re")["Body"].read() == b"".join(final)


def test_complete_with_a_wrong_part_etag_is_invalid_part(mp):
    s3, bucket = mp
    parts = [os.urandom(PART), b"tail"]
    upload_id = start(s3, bucket, "ip")
    done = upload_parts(s3, bucket, "ip", upload_id, parts)

    wrong = [done[0], {"PartNumber": 2, "ETag": md5_etag(b"something else")}]
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="ip", UploadId=upload_id, MultipartUpload={"Parts": wrong})
    assert error_code(e) == "InvalidPart"
    assert status(e) == 400
    # A part that was never uploaded is InvalidPart too.
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="ip", UploadId=upload_id, MultipartUpload={"Parts": [
            *done, {"PartNumber": 3, "ETag": md5_etag(b"never")}]})
    assert error_code(e) == "InvalidPart"
    assert status(e) == 400
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="ip")
    assert error_code(e) == "NoSuchKey"

    # The upload survives a failed completion.
    s3.complete_multipart_upload(Bucket=bucket, Key="ip", UploadId=upload_id, MultipartUpload={"Parts": done})
    assert s3.get_object(Bucket=bucket, Key="ip")["Body"].read() == b"".join(parts)


def test_parts_out_of_order_is_invalid_part_order(mp):
    s3, bucket = mp
    upload_id = start(s3, bucket, "order")
    # Both parts at the minimum size, so that only the order is wrong.
    done = upload_parts(s3, bucket, "order", upload_id, [os.urandom(PART), os.urandom(PART)])
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="order", UploadId=upload_id,
                                     MultipartUpload={"Parts": [done[1], done[0]]})
    assert error_code(e) == "InvalidPartOrder"
    assert status(e) == 400


def test_small_part_that_is_not_last_is_entity_too_small(mp):
    s3, bucket = mp
    upload_id = start(s3, bucket, "small")
    small, tail = os.urandom(MiB), b"tail"
    done = upload_parts(s3, bucket, "small", upload_id, [small, tail])
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="small", UploadId=upload_id, MultipartUpload={"Parts": done})
    assert error_code(e) == "EntityTooSmall"
    assert status(e) == 400
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="small")
    assert status(e) == 404
    # Re-uploading part 1 at the minimum size fixes it.
    big = os.urandom(PART)
    r = s3.upload_part(Bucket=bucket, Key="small", UploadId=upload_id, PartNumber=1, Body=big)
    s3.complete_multipart_upload(Bucket=bucket, Key="small", UploadId=upload_id, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": r["ETag"]}, done[1]]})
    assert s3.get_object(Bucket=bucket, Key="small")["Body"].read() == big + tail


def test_unknown_upload_id_is_no_such_upload(mp):
    s3, bucket = mp
    s3.put_object(Bucket=bucket, Key="k", Body=b"exists")
    unknown = uuid.uuid4().hex + uuid.uuid4().hex
    calls = {
        "upload_part": lambda: s3.upload_part(Bucket=bucket, Key="k", UploadId=unknown, PartNumber=1, Body=b"x"),
        "complete": lambda: s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=unknown, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": md5_etag(b"x")}]}),
        "list_parts": lambda: s3.list_parts(Bucket=bucket, Key="k", UploadId=unknown),
        "abort": lambda: s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=unknown),
    }
    for name, call in calls.items():
        with pytest.raises(ClientError) as e:
            call()
        assert error_code(e) == "NoSuchUpload", name
        assert status(e) == 404, name
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"exists"

    # An upload id is bound to its key.
    upload_id = start(s3, bucket, "mine")
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="other", UploadId=upload_id, PartNumber=1, Body=b"x")
    assert error_code(e) == "NoSuchUpload"


def test_complete_with_no_parts_is_malformed_xml(mp):
    s3, bucket = mp
    upload_id = start(s3, bucket, "empty")
    upload_parts(s3, bucket, "empty", upload_id, [b"one part"])
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="empty", UploadId=upload_id, MultipartUpload={"Parts": []})
    assert error_code(e) == "MalformedXML"
    assert status(e) == 400


@pytest.mark.parametrize("number", [0, 10001])
def test_part_number_out_of_range_is_invalid_argument(mp, number):
    s3, bucket = mp
    upload_id = start(s3, bucket, "pn")
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="pn", UploadId=upload_id, PartNumber=number, Body=b"x")
    assert error_code(e) == "InvalidArgument"
    assert status(e) == 400
    assert not s3.list_parts(Bucket=bucket, Key="pn", UploadId=upload_id).get("Parts")
    # 1 and 10000 are the bounds, both allowed.
    for n in (1, 10000):
        s3.upload_part(Bucket=bucket, Key="pn", UploadId=upload_id, PartNumber=n, Body=b"x")


def test_abort(mp):
    s3, bucket = mp
    upload_id = start(s3, bucket, "ab")
    keep = start(s3, bucket, "kept")
    upload_parts(s3, bucket, "ab", upload_id, [os.urandom(PART), b"more"])
    assert {u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket)["Uploads"]} == {upload_id, keep}

    s3.abort_multipart_upload(Bucket=bucket, Key="ab", UploadId=upload_id)
    with pytest.raises(ClientError) as e:
        s3.list_parts(Bucket=bucket, Key="ab", UploadId=upload_id)
    assert error_code(e) == "NoSuchUpload"
    assert status(e) == 404
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="ab", UploadId=upload_id, PartNumber=3, Body=b"late")
    assert error_code(e) == "NoSuchUpload"
    uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [(u["Key"], u["UploadId"]) for u in uploads] == [("kept", keep)]
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="ab")
    assert error_code(e) == "NoSuchKey"


def test_list_parts_pagination(mp):
    s3, bucket = mp
    upload_id = start(s3, bucket, "lp")
    data = {n: os.urandom(1000 + n) for n in range(1, 6)}
    for n in (5, 3, 1, 2, 4):  # uploaded out of order, listed in order
        s3.upload_part(Bucket=bucket, Key="lp", UploadId=upload_id, PartNumber=n, Body=data[n])

    def described(parts):
        return [(p["PartNumber"], p["Size"], p["ETag"]) for p in parts]

    def want(numbers):
        return [(n, len(data[n]), md5_etag(data[n])) for n in numbers]

    everything = s3.list_parts(Bucket=bucket, Key="lp", UploadId=upload_id)
    assert described(everything["Parts"]) == want([1, 2, 3, 4, 5])
    assert not everything["IsTruncated"]
    assert everything["UploadId"] == upload_id and everything["Key"] == "lp" and everything["Bucket"] == bucket
    assert all("LastModified" in p for p in everything["Parts"])

    page = s3.list_parts(Bucket=bucket, Key="lp", UploadId=upload_id, MaxParts=2)
    assert described(page["Parts"]) == want([1, 2])
    assert page["IsTruncated"] and page["NextPartNumberMarker"] == 2 and page["MaxParts"] == 2
    page = s3.list_parts(Bucket=bucket, Key="lp", UploadId=upload_id, MaxParts=2, PartNumberMarker=2)
    assert described(page["Parts"]) == want([3, 4])
    assert page["IsTruncated"] and page["NextPartNumberMarker"] == 4
    assert page["PartNumberMarker"] == 2
    page = s3.list_parts(Bucket=bucket, Key="lp", UploadId=upload_id, MaxParts=2, PartNumberMarker=4)
    assert described(page["Parts"]) == want([5])
    assert not page["IsTruncated"]

    # boto3's paginator drives the same markers.
    seen = []
    for p in s3.get_paginator("list_parts").paginate(Bucket=bucket, Key="lp", UploadId=upload_id,
                                                     PaginationConfig={"PageSize": 2}):
        seen += described(p.get("Parts", []))
    assert seen == want([1, 2, 3, 4, 5])


def test_list_multipart_uploads(mp):
    s3, bucket = mp
    created = []
    for key in ("a/1", "a/2", "b", "a/1"):  # two uploads of one key
        created.append((key, start(s3, bucket, key)))

    def described(resp):
        return [(u["Key"], u["UploadId"]) for u in resp.get("Uploads", [])]

    everything = s3.list_multipart_uploads(Bucket=bucket)
    listed = described(everything)
    assert sorted(listed) == sorted(created)
    assert [k for k, _ in listed] == ["a/1", "a/1", "a/2", "b"]  # sorted by key
    assert not everything["IsTruncated"]
    assert all("Initiated" in u for u in everything["Uploads"])

    prefixed = s3.list_multipart_uploads(Bucket=bucket, Prefix="a/")
    assert [k for k, _ in described(prefixed)] == ["a/1", "a/1", "a/2"]

    top = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
    assert described(top) == [("b", created[2][1])]
    assert top["CommonPrefixes"] == [{"Prefix": "a/"}]

    # A key marker alone: only keys after it.
    after = s3.list_multipart_uploads(Bucket=bucket, KeyMarker="a/1")
    assert [k for k, _ in described(after)] == ["a/2", "b"]

    # One at a time, with the key and upload id markers.
    pages, seen, kw = 0, [], {}
    while True:
        page = s3.list_multipart_uploads(Bucket=bucket, MaxUploads=1, **kw)
        pages += 1
        got = described(page)
        assert len(got) == 1
        seen += got
        if not page["IsTruncated"]:
            break
        assert page["NextKeyMarker"] == got[0][0]
        assert page["NextUploadIdMarker"] == got[0][1]
        kw = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}
        assert pages < 10
    assert seen == listed
    assert pages == 4


def test_upload_part_copy(mp):
    s3, bucket = mp
    src = os.urandom(12 * MiB)
    s3.put_object(Bucket=bucket, Key="src", Body=src)
    upload_id = start(s3, bucket, "dst")
    source = {"Bucket": bucket, "Key": "src"}
    r1 = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=upload_id, PartNumber=1, CopySource=source,
                             CopySourceRange=f"bytes=0-{PART - 1}")
    assert r1["CopyPartResult"]["ETag"] == md5_etag(src[:PART])
    r2 = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=upload_id, PartNumber=2, CopySource=source,
                             CopySourceRange=f"bytes={6 * MiB}-{12 * MiB - 1}")
    assert r2["CopyPartResult"]["ETag"] == md5_etag(src[6 * MiB:])
    r3 = s3.upload_part(Bucket=bucket, Key="dst", UploadId=upload_id, PartNumber=3, Body=b"uploaded tail")
    s3.complete_multipart_upload(Bucket=bucket, Key="dst", UploadId=upload_id, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": r1["CopyPartResult"]["ETag"]},
        {"PartNumber": 2, "ETag": r2["CopyPartResult"]["ETag"]},
        {"PartNumber": 3, "ETag": r3["ETag"]},
    ]})
    got = s3.get_object(Bucket=bucket, Key="dst")["Body"].read()
    assert got == src[:PART] + src[6 * MiB:] + b"uploaded tail"
    assert s3.get_object(Bucket=bucket, Key="src")["Body"].read() == src


def test_multipart_object_overwritten_and_deleted(mp):
    s3, bucket = mp
    put_multipart(s3, bucket, "ow", three_parts())
    put_multipart(s3, bucket, "del", three_parts())

    s3.put_object(Bucket=bucket, Key="ow", Body=b"plain now")
    got = s3.get_object(Bucket=bucket, Key="ow")
    assert got["Body"].read() == b"plain now"
    assert got["ETag"] == md5_etag(b"plain now")
    assert "PartsCount" not in s3.head_object(Bucket=bucket, Key="ow")

    # A multipart object replacing a multipart object.
    again = [os.urandom(PART), b"second generation"]
    put_multipart(s3, bucket, "ow", again)
    assert s3.get_object(Bucket=bucket, Key="ow")["Body"].read() == b"".join(again)

    s3.delete_object(Bucket=bucket, Key="del")
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="del")
    assert error_code(e) == "NoSuchKey"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["ow"]


def complete_if_none_match(s3, **kw):
    """CompleteMultipartUpload with If-None-Match: * (a header botocore >= 1.35 models)."""
    model = s3.meta.service_model.operation_model("CompleteMultipartUpload")
    if "IfNoneMatch" in model.input_shape.members:
        return s3.complete_multipart_upload(IfNoneMatch="*", **kw)
    event = "before-sign.s3.CompleteMultipartUpload"

    def add(request, **_):
        request.headers["If-None-Match"] = "*"

    s3.meta.events.register(event, add)
    try:
        return s3.complete_multipart_upload(**kw)
    finally:
        s3.meta.events.unregister(event, add)


def test_complete_if_none_match(mp):
    s3, bucket = mp
    s3.put_object(Bucket=bucket, Key="taken", Body=b"first writer")
    upload_id = start(s3, bucket, "taken")
    done = upload_parts(s3, bucket, "taken", upload_id, [b"second writer"])
    with pytest.raises(ClientError) as e:
        complete_if_none_match(s3, Bucket=bucket, Key="taken", UploadId=upload_id, MultipartUpload={"Parts": done})
    assert error_code(e) == "PreconditionFailed"
    assert status(e) == 412
    assert s3.get_object(Bucket=bucket, Key="taken")["Body"].read() == b"first writer"

    upload_id = start(s3, bucket, "free")
    done = upload_parts(s3, bucket, "free", upload_id, [b"only writer"])
    complete_if_none_match(s3, Bucket=bucket, Key="free", UploadId=upload_id, MultipartUpload={"Parts": done})
    assert s3.get_object(Bucket=bucket, Key="free")["Body"].read() == b"only writer"


def b64(raw):
    return base64.b64encode(raw).decode()


def test_sha256_composite_checksum(mp):
    s3, bucket = mp
    parts = three_parts()
    upload_id = start(s3, bucket, "sum", ChecksumAlgorithm="SHA256")
    done = []
    for n, data in enumerate(parts, start=1):
        r = s3.upload_part(Bucket=bucket, Key="sum", UploadId=upload_id, PartNumber=n, Body=data,
                           ChecksumAlgorithm="SHA256")
        assert r["ChecksumSHA256"] == b64(hashlib.sha256(data).digest()), n
        done.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumSHA256": r["ChecksumSHA256"]})
    # S3 lists each part's checksum for an upload created with a checksum algorithm.
    listed = s3.list_parts(Bucket=bucket, Key="sum", UploadId=upload_id)["Parts"]
    assert [p.get("ChecksumSHA256") for p in listed] == [d["ChecksumSHA256"] for d in done]

    composite = b64(hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in parts)).digest()) + "-3"
    r = s3.complete_multipart_upload(Bucket=bucket, Key="sum", UploadId=upload_id, MultipartUpload={"Parts": done})
    assert r["ChecksumSHA256"] == composite
    head = s3.head_object(Bucket=bucket, Key="sum", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == composite
    assert head.get("ChecksumType", "COMPOSITE") == "COMPOSITE"
    # botocore does not validate composite checksums on GET; the bytes are compared here.
    got = s3.get_object(Bucket=bucket, Key="sum", ChecksumMode="ENABLED")
    assert got["Body"].read() == b"".join(parts)
    assert got["ChecksumSHA256"] == composite


def test_crc32_full_object_checksum(mp):
    """FULL_OBJECT: the object's CRC32 is the CRC of all its bytes, combined from the parts'
    CRCs (no byte is read again); a wrong whole-object value on Complete is BadDigest."""
    import zlib

    s3, bucket = mp
    parts = three_parts()
    upload_id = start(s3, bucket, "full", ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT")
    done = []
    for n, data in enumerate(parts, start=1):
        r = s3.upload_part(Bucket=bucket, Key="full", UploadId=upload_id, PartNumber=n, Body=data,
                           ChecksumAlgorithm="CRC32")
        done.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
    whole = b64(zlib.crc32(b"".join(parts)).to_bytes(4, "big"))
    wrong = b64((zlib.crc32(b"".join(parts)) ^ 1).to_bytes(4, "big"))
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="full", UploadId=upload_id,
                                     MultipartUpload={"Parts": done}, ChecksumCRC32=wrong, ChecksumType="FULL_OBJECT")
    assert (error_code(e), status(e)) == ("BadDigest", 400)
    r = s3.complete_multipart_upload(Bucket=bucket, Key="full", UploadId=upload_id,
                                     MultipartUpload={"Parts": done}, ChecksumCRC32=whole, ChecksumType="FULL_OBJECT")
    assert r["ChecksumCRC32"] == whole
    head = s3.head_object(Bucket=bucket, Key="full", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == whole
    assert head["ChecksumType"] == "FULL_OBJECT"
    # botocore validates a full-object CRC32 on GET: a wrong value would fail the read.
    got = s3.get_object(Bucket=bucket, Key="full", ChecksumMode="ENABLED")
    assert got["Body"].read() == b"".join(parts)
