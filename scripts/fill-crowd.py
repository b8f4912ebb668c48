#!/usr/bin/env python3
"""Joins a crowd of visitors into a room and writes their tickets, one JSON array, for
k6/poll-storm.js to poll with.

    scripts/fill-crowd.py BASE_URL ROOM COUNT OUT_FILE [CONNECTIONS]

Joins without a user id over keep-alive connections, CONNECTIONS at a time (default 32). A 503
with Retry-After (wrangler dev's proxy drops a POST now and then so: cloudflare/workers-sdk#14641)
is sent again, at most twice, and counted; any other answer but 200 with a ticket stops it with
an error. Standard library only.
"""
import http.client
import json
import sys
import threading
import time
import urllib.parse


def seconds(retry_after):
    """Retry-After in seconds (a date there counts as one second)."""
    try:
        return float(retry_after)
    except ValueError:
        return 1.0


def main():
    base, room, count, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    connections = int(sys.argv[5]) if len(sys.argv) > 5 else 32
    url = urllib.parse.urlparse(base)
    path = f"{url.path.rstrip('/')}/_qg/v1/rooms/{room}/join"
    tickets = [None] * count
    next_index = [0]
    lock = threading.Lock()
    failures = []
    retried = [0]

    def worker():
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        while not failures:
            with lock:
                i = next_index[0]
                if i >= count:
                    return
                next_index[0] += 1
            for attempt in range(3):
                conn.request("POST", path, body=b"", headers={"Content-Type": "application/json"})
                res = conn.getresponse()
                text = res.read()
                retry_after = res.getheader("Retry-After")
                if res.status != 503 or retry_after is None or attempt == 2:
                    break
                with lock:
                    retried[0] += 1
                time.sleep(min(5.0, max(0.1, seconds(retry_after))))
            if res.status != 200:
                failures.append(f"join {i}: {res.status} {text[:200]!r}")
                return
            tickets[i] = json.loads(text)["ticket"]

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        sys.exit(f"fill-crowd: {failures[0]}")
    elapsed = time.monotonic() - started
    with open(out, "w") as f:
        json.dump(tickets, f)
    print(f"fill-crowd: {count} visitors joined {room} in {elapsed:.1f} s ({count / elapsed:.0f}/s), "
          f"{retried[0]} sent again after a 503")


if __name__ == "__main__":
    main()
