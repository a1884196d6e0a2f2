"""Objects in an S3 bucket through boto3 (AWS S3, SeaweedFS, MinIO).

Path-style addressing (http://host:port/bucket/key): SeaweedFS and MinIO do not serve
virtual-hosted buckets without DNS set-up, and AWS still accepts it.
"""

from __future__ import annotations

from typing import BinaryIO

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from fleet.storage.base import HashingReader, StorageError, hash_stream

_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
# One stream read sequentially in this thread: HashingReader must see the bytes in order.
_TRANSFER = TransferConfig(use_threads=False, multipart_chunksize=16 * 1024 * 1024)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Backend:
    def __init__(
        self, *, endpoint_url: str, bucket: str, access_key_id: str, secret_access_key: str, region: str
    ) -> None:
        self.bucket = bucket
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint_url or None,
            aws_access_key_id=access_key_id or None,
            aws_secret_access_key=secret_access_key or None,
            region_name=region,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
            ),
        )

    def put(self, key: str, fileobj: BinaryIO) -> tuple[int, str]:
        reader = HashingReader(fileobj)
        self.client.upload_fileobj(reader, self.bucket, key, Config=_TRANSFER)
        return reader.size, reader.sha256

    def open(self, key: str) -> BinaryIO:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                raise StorageError("not_found", f"no object {key!r}", status=404) from None
            raise

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def presigned_get(self, key: str, expires_s: int) -> str:
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_s
        )

    def multipart_create(self, key: str) -> str:
        return self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]

    def multipart_part_urls(
        self, key: str, upload_id: str, part_numbers: list[int], expires_s: int, max_part_bytes: int | None
    ) -> dict[int, str]:
        # S3 cannot cap a presigned part's size; the size and sha256 checks at completion catch it.
        return {
            n: self.client.generate_presigned_url(
                "upload_part",
                Params={"Bucket": self.bucket, "Key": key, "UploadId": upload_id, "PartNumber": n},
                ExpiresIn=expires_s,
                HttpMethod="PUT",
            )
            for n in part_numbers
        }

    def multipart_complete(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> tuple[int, str]:
        try:
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etag} for n, etag in parts]},
            )
        except ClientError as exc:
            code = _code(exc)
            if code == "NoSuchUpload":
                raise StorageError("no_such_upload", "unknown or finished upload", status=404) from None
            if code in ("InvalidPart", "InvalidPartOrder", "EntityTooSmall"):
                raise StorageError("bad_part", f"{code}: {exc}") from None
            raise
        # S3 only knows part MD5s; the promise was a sha256 of the whole object, so read it back.
        body = self.open(key)
        try:
            return hash_stream(body)
        finally:
            body.close()

    def multipart_abort(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if _code(exc) not in ("NoSuchUpload", *_NOT_FOUND):
                raise

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as exc:
            raise StorageError("unavailable", f"bucket {self.bucket!r}: {exc}", status=503) from exc
