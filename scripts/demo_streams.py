"""Helpers for scripts/demo: seed the emulators, print the streams as a table, print an outcome.

Reads the endpoints from the same AWS_ENDPOINT_URL_* variables the enforcer uses."""

import json
import os
import sys

import boto3

REGION = "us-east-1"
ACCOUNT = "123456789012"


def client(service):
    endpoint = os.environ[f"AWS_ENDPOINT_URL_{service.upper()}"]
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION)


def s3_destination():
    return dict(
        RoleARN=f"arn:aws:iam::{ACCOUNT}:role/FirehoseDelivery",
        BucketARN="arn:aws:s3:::example-delivery-bucket",
        CompressionFormat="UNCOMPRESSED",
        BufferingHints=dict(SizeInMBs=5, IntervalInSeconds=300),
        EncryptionConfiguration=dict(NoEncryptionConfig="NoEncryption"),
    )


def seed():
    kms = client("kms")
    key = kms.create_key(Description="demo mandated key")["KeyMetadata"]
    kms.create_alias(AliasName="alias/org-streams", TargetKeyId=key["KeyId"])
    print(f"mandated key: alias/org-streams -> {key['Arn']}")
    client("kinesis").create_stream(StreamName="orders", ShardCount=1)
    firehose = client("firehose")
    firehose.create_delivery_stream(
        DeliveryStreamName="clickstream",
        DeliveryStreamType="DirectPut",
        ExtendedS3DestinationConfiguration=s3_destination(),
    )
    firehose.create_delivery_stream(
        DeliveryStreamName="orders-archive",
        DeliveryStreamType="KinesisStreamAsSource",
        KinesisStreamSourceConfiguration=dict(
            KinesisStreamARN=f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/orders",
            RoleARN=f"arn:aws:iam::{ACCOUNT}:role/FirehoseSourceRead",
        ),
        ExtendedS3DestinationConfiguration=s3_destination(),
    )


def key_arn(kms, key):
    try:
        return kms.describe_key(KeyId=key)["KeyMetadata"]["Arn"]
    except Exception as e:  # an unknown key is shown, not fatal
        return f"? ({type(e).__name__})"


def table():
    kms = client("kms")
    rows = [("stream", "kind", "status", "encryption", "key (as reported -> key ARN)")]
    s = client("kinesis").describe_stream_summary(StreamName="orders")["StreamDescriptionSummary"]
    key = s.get("KeyId")
    rows.append(
        ("orders", "kinesis", s["StreamStatus"], s.get("EncryptionType", "NONE"), f"{key} -> {key_arn(kms, key)}" if key else "-")
    )
    firehose = client("firehose")
    for name in ("clickstream", "orders-archive"):
        d = firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
        enc = d.get("DeliveryStreamEncryptionConfiguration") or {}
        rows.append(
            (
                name,
                f"firehose {d['DeliveryStreamType']}",
                d["DeliveryStreamStatus"],
                f"{enc['Status']} {enc.get('KeyType', '')}".strip() if enc else "none",
                enc.get("KeyARN", "-"),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths))


def check():
    """Exit 1 unless the stream and the DirectPut delivery stream ended on the mandated key."""
    kms = client("kms")
    mandated = key_arn(kms, "alias/org-streams")
    s = client("kinesis").describe_stream_summary(StreamName="orders")["StreamDescriptionSummary"]
    d = client("firehose").describe_delivery_stream(DeliveryStreamName="clickstream")
    enc = d["DeliveryStreamDescription"].get("DeliveryStreamEncryptionConfiguration") or {}
    got = {"orders": key_arn(kms, s["KeyId"]) if s.get("KeyId") else None, "clickstream": enc.get("KeyARN")}
    wrong = {name: key for name, key in got.items() if key != mandated}
    if wrong:
        sys.exit(f"demo: not on the mandated key {mandated}: {wrong}")
    print(f"  orders and clickstream are on the mandated key {mandated}")


def outcome(fixture, status, output):
    try:
        report = json.loads(output)
        line = f"{report['outcome']:<17} attempts={report['attempts']}  {report.get('reason', '')}"
    except (ValueError, KeyError):
        line = "error: " + " ".join(output.split())
    print(f"  {fixture:<48} exit {status}  {line}")


def logs(path):
    """The Lambda's outcome lines, each shown with the fields an operator filters on."""
    keys = ("level", "outcome", "resource", "attempts", "error_code")
    for raw in open(path, encoding="utf-8", errors="replace"):
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if line.get("message") == "outcome":
            request = (line.get("spans") or [{}])[0].get("requestId", "-")
            fields = " ".join(f"{k}={line[k]}" for k in keys if k in line)
            print(f"  requestId={request} {fields}")


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "seed":
        seed()
    elif command == "table":
        table()
    elif command == "check":
        check()
    elif command == "outcome":
        outcome(*sys.argv[2:5])
    elif command == "logs":
        logs(sys.argv[2])
    else:
        sys.exit(f"unknown command {command}")
