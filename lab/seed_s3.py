"""Seed the lab's S3 server with RAT-shaped buckets.

Bucket ``rat`` (versioned) holds per namespace the pipeline code and config.yaml, landing files
and Iceberg-like warehouse trees (data/*.parquet, metadata/*.json and *.avro); bucket
``rat-scratch`` holds a handful of objects. Both are versioned, as RAT's MinIO buckets are by
default, so a lab backup is consistent with its database snapshot (tests that need an
unversioned bucket make their own). Every body comes from a random
generator seeded with the object's key, so each seed produces identical bytes whatever the
upload order. Seeding first removes every version of every object in both buckets.

Credentials come from RAT_LAB_S3_ACCESS_KEY / RAT_LAB_S3_SECRET_KEY (lab/up.sh writes them into
.lab/env), never from the command line.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import io
import json
import os
import random
import sys
import time

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

SEED_TAG = ('rat-lab-seed', 'v1')
BUCKET = 'rat'
SCRATCH_BUCKET = 'rat-scratch'
# On the off-site server: where the README's lab walkthrough ships backups (inventory/lab).
OFFSITE_BUCKET = 'rat-offsite'
NAMESPACES = ('ecommerce', 'finance', 'marketing', 'logistics', 'analytics', 'default')
ENTITIES = ('orders', 'customers', 'payments', 'products', 'shipments', 'events', 'sessions', 'invoices')
LAYERS = ('bronze', 'silver', 'gold')
MULTIPART_KEY = 'ecommerce/warehouse/orders/data/part-00000-bulk-export.parquet'
MULTIPART_SIZE = 17 * 1024 * 1024 + 12345
PART_SIZE = 5 * 1024 * 1024
EMPTY_KEY = 'ecommerce/landing/orders/_SUCCESS'
# Written, then deleted: the versioned bucket then holds a delete marker, as RAT's MinIO does.
DELETED_KEY = 'ecommerce/landing/orders/retracted-2026-01-31.csv'


class Obj:
    """One object to upload: key, body and the attributes S3 keeps with it."""

    def __init__(self, key, body, content_type=None, metadata=None, extra=None):
        self.key = key
        self.body = body
        self.content_type = content_type
        self.metadata = metadata or {}
        self.extra = extra or {}

    def put_args(self):
        """Keyword arguments of put_object / create_multipart_upload for the attributes."""
        args = dict(self.extra)
        if self.content_type:
            args['ContentType'] = self.content_type
        if self.metadata:
            args['Metadata'] = self.metadata
        return args


def rng_for(key):
    """A generator seeded by the key only, so content does not depend on upload order."""
    return random.Random('rat-lab:' + key)


def csv_body(key, rows):
    """A small CSV file with deterministic rows."""
    rng = rng_for(key)
    out = io.StringIO()
    out.write('id,event_date,customer,amount,currency,comment\n')
    for i in range(rows):
        out.write('%d,2026-01-%02d,cust-%05d,%.2f,%s,"%s"\n' % (
            i + 1, 1 + rng.randrange(28), rng.randrange(100000), rng.uniform(1, 5000),
            rng.choice(('EUR', 'USD', 'GBP')), rng.choice(('ok', 'late, but ok', 'été', 'Straße 5'))))
    return out.getvalue().encode('utf-8')


def json_body(key, records):
    """A JSON-lines file with deterministic records."""
    rng = rng_for(key)
    lines = [json.dumps({'id': i + 1, 'session': '%032x' % rng.getrandbits(128),
                         'page': rng.choice(('/', '/cart', '/checkout', '/produits/été')),
                         'ms': rng.randrange(5, 9000)}, ensure_ascii=False)
             for i in range(records)]
    return ('\n'.join(lines) + '\n').encode('utf-8')


def parquet_body(key, size):
    """Opaque bytes framed like a Parquet file (magic at both ends)."""
    return b'PAR1' + rng_for(key).randbytes(size - 8) + b'PAR1'


def avro_body(key, size):
    """Opaque bytes framed like an Avro container file."""
    return b'Obj\x01' + rng_for(key).randbytes(size - 4)


def pipeline_objects(ns):
    """Pipeline code and config.yaml of every pipeline of a namespace (matches lab/seed.sql)."""
    objs = []
    for ord_, entity in enumerate(ENTITIES, start=1):
        layer = LAYERS[(ord_ - 1) % 3]
        name = '%s_%s' % (layer, entity)
        base = '%s/pipelines/%s/%s/' % (ns, layer, name)
        meta = {'pipeline': name, 'layer': layer, 'namespace': ns}
        if ord_ % 4 == 0:
            code = ('"""%s: %s layer of %s."""\n\ndef run(ctx):\n    df = ctx.ref("%s")\n'
                    '    return df.filter(df.amount > 0)\n' % (name, layer, entity, entity))
            objs.append(Obj(base + 'pipeline.py', code.encode(), 'text/x-python', meta))
        else:
            code = ('-- %s: %s layer of %s\nSELECT id, event_date, customer, amount\n'
                    '  FROM {{ ref("%s") }}\n WHERE amount > 0\n' % (name, layer, entity, entity))
            objs.append(Obj(base + 'pipeline.sql', code.encode(), 'application/sql', meta))
        config = ('name: %s\nnamespace: %s\nlayer: %s\nmaterialization: %s\nunique_key: id\n'
                  'owner: %s-team@example.invalid\n' % (
                      name, ns, layer, 'table' if layer == 'gold' else 'incremental', entity))
        objs.append(Obj(base + 'config.yaml', config.encode(), 'application/yaml', meta,
                        {'CacheControl': 'no-cache'}))
    return objs


def landing_objects(ns):
    """Uploaded CSV/JSON files awaiting ingestion."""
    objs = []
    for zone in ('orders', 'customers', 'clickstream'):
        for i in range(10):
            if zone == 'clickstream':
                key = '%s/landing/%s/2026-01-%02d.jsonl' % (ns, zone, i + 1)
                objs.append(Obj(key, json_body(key, 20 + 7 * i), 'application/json'))
            else:
                key = '%s/landing/%s/batch-%03d.csv' % (ns, zone, i)
                objs.append(Obj(key, csv_body(key, 15 + 11 * i), 'text/csv',
                                {'uploaded-by': 'ingest-bot', 'source-system': zone}))
    return objs


def warehouse_objects(ns):
    """Iceberg-like table trees: data files plus metadata json, manifest lists and manifests."""
    objs = []
    for entity in ENTITIES:
        table = '%s/warehouse/%s' % (ns, entity)
        rng = rng_for(table)
        for i in range(12):
            key = '%s/data/event_date=2026-01-%02d/part-%05d-%032x.parquet' % (
                table, 1 + i % 28, i, rng.getrandbits(128))
            objs.append(Obj(key, parquet_body(key, rng.randrange(1024, 16384)),
                            'application/vnd.apache.parquet'))
        for version in range(1, 4):
            snapshot = rng.getrandbits(63)
            key = '%s/metadata/v%d.metadata.json' % (table, version)
            body = json.dumps({'format-version': 2, 'table-uuid': '%032x' % rng.getrandbits(128),
                               'location': 's3://rat/' + table, 'current-snapshot-id': snapshot,
                               'last-sequence-number': version}, indent=2).encode()
            objs.append(Obj(key, body, 'application/json'))
            key = '%s/metadata/snap-%d-1-%032x.avro' % (table, snapshot, rng.getrandbits(128))
            objs.append(Obj(key, avro_body(key, rng.randrange(512, 4096))))
            key = '%s/metadata/%032x-m0.avro' % (table, rng.getrandbits(128))
            objs.append(Obj(key, avro_body(key, rng.randrange(512, 8192))))
    return objs


def special_objects():
    """Keys and objects that trip up naive tools: spaces, non-ASCII, empty, multipart."""
    objs = [Obj(EMPTY_KEY, b'')]
    for key in ('marketing/landing/campaign uploads/Q1 2026 results.csv',
                'finance/landing/relevés/été 2026/compte-rendu (final).csv',
                'logistics/landing/Ünïcödé/straße & co.csv',
                'analytics/landing/日本語/データ 1.csv'):
        objs.append(Obj(key, csv_body(key, 25), 'text/csv; charset=utf-8',
                        {'original-name': key.rsplit('/', 1)[1].encode('ascii', 'replace').decode()},
                        {'ContentDisposition': 'attachment'}))
    return objs


def rat_objects():
    """Every current object of bucket rat, multipart object excluded."""
    objs = []
    for ns in NAMESPACES:
        objs += pipeline_objects(ns) + landing_objects(ns) + warehouse_objects(ns)
    return objs + special_objects()


def scratch_objects():
    """The handful of objects of the unversioned scratch bucket."""
    return [Obj(key, csv_body(key, 5), 'text/plain') for key in (
        'README.txt', 'tmp/upload-1.csv', 'tmp/upload-2.csv', 'exports/report.json',
        'scratch space/notes ü.txt')]


def empty_bucket(s3, bucket):
    """Create the bucket, or remove every version, delete marker and pending upload in it."""
    if ensure_bucket(s3, bucket):
        return
    s3.delete_bucket_tagging(Bucket=bucket)
    # List everything before deleting: deleting while paging can shift the pages (moto does).
    victims = [{'Key': v['Key'], 'VersionId': v['VersionId']}
               for page in s3.get_paginator('list_object_versions').paginate(Bucket=bucket)
               for v in page.get('Versions', []) + page.get('DeleteMarkers', [])]
    for i in range(0, len(victims), 1000):
        s3.delete_objects(Bucket=bucket, Delete={'Objects': victims[i:i + 1000], 'Quiet': True})
    for page in s3.get_paginator('list_multipart_uploads').paginate(Bucket=bucket):
        for upload in page.get('Uploads', []):
            s3.abort_multipart_upload(Bucket=bucket, Key=upload['Key'], UploadId=upload['UploadId'])


def put(s3, bucket, obj):
    """Upload one object in a single request."""
    s3.put_object(Bucket=bucket, Key=obj.key, Body=obj.body, **obj.put_args())


def put_multipart(s3, pool, bucket):
    """Upload the large object in 5 MiB parts, so its ETag carries the -N part count."""
    body = rng_for(MULTIPART_KEY).randbytes(MULTIPART_SIZE)
    obj = Obj(MULTIPART_KEY, body, 'application/vnd.apache.parquet', {'bulk-export': 'true'})
    upload = s3.create_multipart_upload(Bucket=bucket, Key=obj.key, **obj.put_args())

    def part(number):
        chunk = body[(number - 1) * PART_SIZE:number * PART_SIZE]
        resp = s3.upload_part(Bucket=bucket, Key=obj.key, UploadId=upload['UploadId'],
                              PartNumber=number, Body=chunk)
        return {'PartNumber': number, 'ETag': resp['ETag']}

    parts = list(pool.map(part, range(1, (MULTIPART_SIZE + PART_SIZE - 1) // PART_SIZE + 1)))
    s3.complete_multipart_upload(Bucket=bucket, Key=obj.key, UploadId=upload['UploadId'],
                                 MultipartUpload={'Parts': parts})


def fingerprint(s3):
    """A digest of every current object (key, size, ETag) of both buckets and their seed tags.

    Empty when a bucket or its seed tag is missing, or a bucket is not versioned (a lab seeded
    when rat-scratch was not). Any change a test leaves behind (an object added, removed or
    rewritten with other bytes) changes the digest.
    """
    digest = hashlib.sha256()
    for bucket in (BUCKET, SCRATCH_BUCKET):
        try:
            tags = s3.get_bucket_tagging(Bucket=bucket)['TagSet']
        except ClientError:
            return ''
        if s3.get_bucket_versioning(Bucket=bucket).get('Status') != 'Enabled':
            return ''
        if {'Key': SEED_TAG[0], 'Value': SEED_TAG[1]} not in tags:
            return ''
        for page in s3.get_paginator('list_objects_v2').paginate(Bucket=bucket):
            for obj in page.get('Contents', []):
                digest.update(b'\0'.join((bucket.encode(), obj['Key'].encode(), obj['ETag'].encode(),
                                          str(obj['Size']).encode(), b'')))
    return digest.hexdigest()


def seed(s3):
    """Reset both buckets and upload their content; returns the number of objects uploaded."""
    for bucket in (BUCKET, SCRATCH_BUCKET):
        empty_bucket(s3, bucket)
    for bucket in (BUCKET, SCRATCH_BUCKET):
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={'Status': 'Enabled'})
    objs = rat_objects()
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        # Older versions first, so the final content is what rat_objects() says.
        configs = [o for o in objs if o.key.startswith('ecommerce/pipelines/') and o.key.endswith('config.yaml')]
        drafts = [Obj(o.key, b'# draft\n' + o.body, o.content_type, o.metadata, o.extra) for o in configs]
        list(pool.map(lambda o: put(s3, BUCKET, o), drafts))
        put(s3, BUCKET, Obj(DELETED_KEY, csv_body(DELETED_KEY, 3), 'text/csv'))
        s3.delete_object(Bucket=BUCKET, Key=DELETED_KEY)
        list(pool.map(lambda o: put(s3, BUCKET, o), objs))
        put_multipart(s3, pool, BUCKET)
        scratch = scratch_objects()
        list(pool.map(lambda o: put(s3, SCRATCH_BUCKET, o), scratch))
    # The tag goes on last: an interrupted seed is not mistaken for a complete one.
    for bucket in (BUCKET, SCRATCH_BUCKET):
        s3.put_bucket_tagging(Bucket=bucket, Tagging={'TagSet': [{'Key': SEED_TAG[0], 'Value': SEED_TAG[1]}]})
    return len(objs) + 1 + len(scratch)


def ensure_bucket(s3, bucket):
    """Create ``bucket`` unless it exists (True when it was created); what it holds is left alone."""
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response['Error']['Code'] not in ('404', 'NoSuchBucket'):
            raise
        s3.create_bucket(Bucket=bucket)
        print('[lab] created bucket %s' % bucket, file=sys.stderr)
        return True
    return False


def main():
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--endpoint', required=True, help='S3 endpoint URL of the lab')
    parser.add_argument('--state', required=True, help='file keeping the fingerprint of the last seed')
    parser.add_argument('--offsite-endpoint', help='S3 endpoint URL of the lab\'s off-site server')
    parser.add_argument('--if-needed', action='store_true',
                        help='do nothing when the buckets still hold exactly what the last seed wrote')
    args = parser.parse_args()
    try:
        access_key = os.environ['RAT_LAB_S3_ACCESS_KEY']
        secret_key = os.environ['RAT_LAB_S3_SECRET_KEY']
    except KeyError as exc:
        sys.exit('seed_s3: %s is not set (source .lab/env)' % exc)
    s3 = boto3.client('s3', endpoint_url=args.endpoint, region_name='us-east-1',
                      aws_access_key_id=access_key, aws_secret_access_key=secret_key,
                      config=Config(max_pool_connections=32, retries={'mode': 'standard', 'max_attempts': 5}))
    if args.offsite_endpoint:
        ensure_bucket(boto3.client('s3', endpoint_url=args.offsite_endpoint, region_name='us-east-1',
                                   aws_access_key_id=access_key, aws_secret_access_key=secret_key), OFFSITE_BUCKET)
    if args.if_needed and os.path.exists(args.state):
        with open(args.state, encoding='ascii') as state:
            if state.read().strip() == fingerprint(s3):
                print('[lab] buckets %s and %s already seeded' % (BUCKET, SCRATCH_BUCKET), file=sys.stderr)
                return
    start = time.monotonic()
    count = seed(s3)
    with open(args.state, 'w', encoding='ascii') as state:
        state.write(fingerprint(s3) + '\n')
    print('[lab] seeded %d objects into %s and %s at %s in %.1fs' % (
        count, BUCKET, SCRATCH_BUCKET, args.endpoint, time.monotonic() - start), file=sys.stderr)


if __name__ == '__main__':
    main()
