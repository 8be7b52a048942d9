"""Print what the lab's S3 servers hold, as JSON, for the lab_smoke target.

Usage: python s3_facts.py ENDPOINT OFFSITE_ENDPOINT; credentials in AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY.
"""

from __future__ import annotations

import json
import sys

import boto3

MULTIPART_KEY = 'ecommerce/warehouse/orders/data/part-00000-bulk-export.parquet'
EMPTY_KEY = 'ecommerce/landing/orders/_SUCCESS'
CONFIG_KEY = 'ecommerce/pipelines/bronze/bronze_orders/config.yaml'


def bucket_facts(s3, bucket):
    """Object count, total size, versioning and notable keys of one bucket."""
    keys = []
    size = 0
    for page in s3.get_paginator('list_objects_v2').paginate(Bucket=bucket):
        for obj in page.get('Contents', []):
            keys.append(obj['Key'])
            size += obj['Size']
    versions = markers = 0
    for page in s3.get_paginator('list_object_versions').paginate(Bucket=bucket):
        versions += len(page.get('Versions', []))
        markers += len(page.get('DeleteMarkers', []))
    return {
        'objects': len(keys),
        'bytes': size,
        'versioning': s3.get_bucket_versioning(Bucket=bucket).get('Status', 'Disabled'),
        'versions': versions,
        'delete_markers': markers,
        'keys_with_space': sum(' ' in k for k in keys),
        'keys_non_ascii': sum(not k.isascii() for k in keys),
    }


def main():
    """Collect the facts and print them."""
    endpoint, offsite = sys.argv[1:3]
    s3 = boto3.client('s3', endpoint_url=endpoint, region_name='us-east-1')
    big = s3.head_object(Bucket='rat', Key=MULTIPART_KEY)
    empty = s3.get_object(Bucket='rat', Key=EMPTY_KEY)
    config = s3.head_object(Bucket='rat', Key=CONFIG_KEY)
    facts = {
        'buckets': {b: bucket_facts(s3, b) for b in ('rat', 'rat-scratch')},
        'multipart': {'etag': big['ETag'], 'size': big['ContentLength']},
        'empty': {'size': empty['ContentLength'], 'body': len(empty['Body'].read())},
        'config': {'content_type': config['ContentType'], 'metadata': config['Metadata'],
                   'cache_control': config.get('CacheControl')},
        'offsite_buckets': [b['Name'] for b in boto3.client(
            's3', endpoint_url=offsite, region_name='us-east-1').list_buckets()['Buckets']],
    }
    print(json.dumps(facts))


if __name__ == '__main__':
    main()
