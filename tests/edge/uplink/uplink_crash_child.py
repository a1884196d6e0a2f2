"""Child process for the SIGKILL tests: `python uplink_crash_child.py MODE DB [ARGS...]`.

put:    put numbered items as fast as possible, print each id after put returned.
drain:  drain the queue, printing "sent ID" before the send and "acked ID" after the ack.
upload: upload FILE on the grant in GRANT_JSON, print "done" with the parts.
Every loop is bounded so a child that is never killed still exits.
"""

from __future__ import annotations

import json
import sys

from edge.uplink import UPLINK_CLASSES, MediaUploader, UplinkDB, UplinkQueue, UploadGrant


def main() -> None:
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "put":
        q = UplinkQueue.open(path, quota_bytes=10**9)
        for n in range(20_000):
            item_id = q.put(
                UPLINK_CLASSES[n % 5], "fleet/v1/devices/cam-1/up/events", f"item-{n}".encode() * 20
            )
            print(item_id, flush=True)
    elif mode == "drain":
        q = UplinkQueue.open(path, quota_bytes=10**9)
        for _ in range(20_000):
            item = q.peek_next()
            if item is None:
                break
            q.mark_sent(item.id)
            print("sent", item.id, flush=True)
            q.ack(item.id)
            print("acked", item.id, flush=True)
    elif mode == "upload":
        grant = UploadGrant.from_message(json.loads(sys.argv[4]))
        uploader = MediaUploader(UplinkDB(path), backoff=(0.05, 0.2))
        parts = uploader.upload(sys.argv[3], grant)
        print("done", json.dumps(parts), flush=True)
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
