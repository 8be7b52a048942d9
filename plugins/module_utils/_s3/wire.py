# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What S3 answers, read as botocore reads it: ListObjectsV2 and ListObjectVersions pages, the
bucket list, a bucket's versioning, error bodies, ETags, a GET's body and Last-Modified."""

from __future__ import annotations

import functools
import html
import http.client
import re
import urllib.parse
from xml.etree import ElementTree

from ansible_collections.rat.backup.plugins.module_utils._s3.errors import parse_timestamp

try:
    import botocore.exceptions
except ImportError:
    # s3.HAS_BOTO3 tells the module; nothing here runs without botocore.
    pass

_CONTENTS = re.compile(r"<Contents>(.*?)</Contents>", re.S)
_FIELDS = re.compile(r"<(Key|Size|ETag|LastModified)>([^<]*)</\1>")
_KEY_COUNT = re.compile(r"<KeyCount>(\d+)</KeyCount>")
_TRUNCATED = re.compile(r"<IsTruncated>true</IsTruncated>")
_TOKEN = re.compile(r"<NextContinuationToken>([^<]*)</NextContinuationToken>")
_ENCODING_URL = re.compile(r"<EncodingType>url</EncodingType>")


def listing_items(text):
    """[(key, size, etag, last_modified)] of one ListObjectsV2 page.

    Regular expressions over the page: an element tree of a 1,000-key page costs four times more,
    a quarter of an unchanged backup's CPU. A page they do not account for whole (fewer objects
    than its KeyCount, an object without Key or Size, a Contents element they did not read: one
    written otherwise, as ``<Contents >`` or ``<s3:Contents>``, on a page without KeyCount) is read
    with the element tree instead: never taken for a page with fewer objects.
    """
    items = []
    for block in _CONTENTS.findall(text):
        fields = dict(_FIELDS.findall(block))
        if "Key" not in fields or "Size" not in fields:
            return _listing_items_tree(text)
        items.append((_xml_text(fields["Key"]), int(fields["Size"]), _xml_text(fields.get("ETag")),
                      fields.get("LastModified")))
    count = _KEY_COUNT.search(text)
    if count is not None and int(count.group(1)) != len(items) or text.count("Contents>") != 2 * len(items):
        # "Contents>" ends each Contents tag however it is written (a key holding it, sent unescaped
        # by a server that ignores encoding-type, only costs that page the element tree).
        return _listing_items_tree(text)
    if _ENCODING_URL.search(text):
        items = [(unquote_key(key), size, etag, modified) for key, size, etag, modified in items]
    return items


def _listing_items_tree(text):
    decode, contents = _tree_elements(text, "Contents")
    return [(decode(fields.get("Key")), int(fields.get("Size")), fields.get("ETag"), fields.get("LastModified"))
            for fields in contents]


def _tree_elements(text, tag):
    """(how its keys are decoded, the _fields of each ``tag`` element) of a listing page read with the
    element tree. Elements by name without their namespace, as botocore reads them: a server that
    sends none must not have its page read as one without objects."""
    root = ElementTree.fromstring(text)
    decode = unquote_key if _fields(root).get("EncodingType") == "url" else _as_sent
    return decode, [_fields(element) for element in root.iter() if _tag(element) == tag]


def _as_sent(value):
    return value


def _fields(element):
    """{name without namespace: text ("" when empty)} of ``element``'s children."""
    return {_tag(child): child.text or "" for child in element}


def listing_continuation(text):
    """(is_truncated, continuation token) of one ListObjectsV2 page, read apart from its objects:
    the next page is asked for with it while this one's objects are parsed (Transport.list_objects).
    A page without a plain IsTruncated element, or truncated without a plain token (in CDATA, an
    element written otherwise), is read with the element tree, its elements without namespace."""
    if "<IsTruncated>" in text:
        token = _TOKEN.search(text)
        truncated = _TRUNCATED.search(text) is not None
        if token or not truncated:
            return truncated, _xml_text(token.group(1)) if token else None
    fields = _fields(ElementTree.fromstring(text))
    return fields.get("IsTruncated") == "true", fields.get("NextContinuationToken") or None


def listing_prefixes(text):
    """The CommonPrefixes of one ListObjectsV2 page asked for with a delimiter, decoded as its keys are."""
    decode, prefixes = _tree_elements(text, "CommonPrefixes")
    return [decode(fields.get("Prefix", "")) for fields in prefixes]


def unquote_key(key):
    """A key of an ``encoding-type=url`` listing, decoded as botocore decodes it: AWS, MinIO and
    rclone write a space as "+" (and a "+" as %2B), so "+" is a space (moto writes %20 for it)."""
    return urllib.parse.unquote_plus(key)


def _xml_text(value):
    return html.unescape(value) if value and "&" in value else value


def _tag(element):
    """An element's name without its namespace (botocore reads S3's XML without them: some servers
    send none)."""
    return element.tag.rpartition("}")[2]


def parse_bucket_names(body):
    """The bucket names of a ListBuckets answer, in its order."""
    return [child.text or "" for bucket in ElementTree.fromstring(body).iter() if _tag(bucket) == "Bucket"
            for child in bucket if _tag(child) == "Name"]


def parse_versioning(body):
    """The Status of a GetBucketVersioning answer (Enabled, Suspended), None for a bucket never versioned."""
    return next((child.text or "" for child in ElementTree.fromstring(body) if _tag(child) == "Status"), None)


# ListObjectVersions as botocore's model types it; every other field is text ("" when empty).
_INTEGERS = frozenset(("Size", "MaxKeys"))
_BOOLEANS = frozenset(("IsLatest", "IsTruncated", "IsRestoreInProgress"))
_TIMES = frozenset(("LastModified", "RestoreExpiryDate"))
_ITEM_LISTS = {"Version": "Versions", "DeleteMarker": "DeleteMarkers", "CommonPrefixes": "CommonPrefixes"}
# Flattened lists inside an item (ObjectVersion's ChecksumAlgorithm).
_FIELD_LISTS = frozenset(("ChecksumAlgorithm",))
# What botocore decodes of an encoding-type=url answer (handlers.decode_list_object_versions).
_QUOTED_TOP = ("KeyMarker", "NextKeyMarker", "Prefix", "Delimiter")
_QUOTED_ITEMS = (("Versions", "Key"), ("DeleteMarkers", "Key"), ("CommonPrefixes", "Prefix"))


def _value(element):
    name = _tag(element)
    if len(element):
        return {_tag(child): _value(child) for child in element}
    text = element.text or ""
    if name in _INTEGERS:
        return int(text)
    if name in _BOOLEANS:
        return text == "true"
    if name in _TIMES:
        return parse_timestamp(text)
    return text


def _item(element):
    item = {}
    for child in element:
        name = _tag(child)
        if name in _FIELD_LISTS:
            item.setdefault(name, []).append(_value(child))
        else:
            item[name] = _value(child)
    return item


def parse_version_page(body):
    """One ListObjectVersions page as botocore's ``list_object_versions`` returns it (without
    ResponseMetadata): Versions and DeleteMarkers (each only when the page has some) in the page's
    order, typed fields (Size, IsLatest, LastModified, ...), keys and markers of an
    ``encoding-type=url`` answer decoded."""
    page = {}
    for child in ElementTree.fromstring(body):
        name = _tag(child)
        if name in _ITEM_LISTS:
            page.setdefault(_ITEM_LISTS[name], []).append(_item(child))
        else:
            page[name] = _value(child)
    if page.get("EncodingType") == "url":
        for name in _QUOTED_TOP:
            if name in page:
                page[name] = unquote_key(page[name])
        for items, name in _QUOTED_ITEMS:
            for item in page.get(items, ()):
                item[name] = unquote_key(item[name])
    return page


def quoted_etag(etag):
    """ETags as S3 writes them, in double quotes; some servers list them bare."""
    if etag and not etag.startswith('"'):
        return f'"{etag}"'
    return etag


def client_error(status, headers, body, operation):
    """The botocore ClientError a client would raise for this answer: code, message and the
    error's other fields (Region, Endpoint, ...) from the XML body, the headers in ResponseMetadata."""
    error = {}
    if body.lstrip().startswith(b"<"):
        try:
            root = ElementTree.fromstring(body)
        except ElementTree.ParseError:
            root = None
        if root is not None:
            error.update((child.tag, child.text or "") for child in root if len(child) == 0)
    error["Code"] = error.get("Code") or str(status)
    error["Message"] = error.get("Message") or http.client.responses.get(status, "")
    return botocore.exceptions.ClientError(
        {"Error": error, "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers}}, operation)


@functools.lru_cache(maxsize=1024)
def header_time(text):
    # Objects written together share their Last-Modified second: parsed once each (~5 us).
    return parse_timestamp(text)


class StreamingBody:
    """A GET's body as botocore's StreamingBody is used here: chunks, then close."""

    def __init__(self, raw):
        self.raw = raw

    def iter_chunks(self, size):
        while True:
            chunk = self.raw.read(size)
            if not chunk:
                return
            yield chunk

    def read(self, amount=None):
        return self.raw.read(amount)

    def close(self):
        # Unread bytes would be taken for the next answer on its connection: dropped unless read.
        self.raw.close()
