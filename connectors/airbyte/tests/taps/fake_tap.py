#!/usr/bin/env python3
"""A Singer tap for the singer connector's tests, written as singer-python taps write.

Streams: `users` (INCREMENTAL on `updated_at`, key `id`; the stream's name differs from its
tap_stream_id, `public-users`) and `events` (FULL_TABLE only, key `id`, two per user).
`behaviour` in the config makes it misbehave in one way while reading `users`; `report_to`
names a file it writes its arguments and the catalog it was given into.
"""

import argparse
import json
import sys
import time

BASE = 1_700_000_000  # 2023-11-14T22:13:20Z

USERS = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "email": {"type": "string"},
        "updated_at": {"type": "string", "format": "date-time"},
        "address": {"type": ["null", "object"], "properties": {"city": {"type": "string"}}},
    },
}
EVENTS = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "user_id": {"type": "integer"},
        "amount": {"type": "number"},
        "created_at": {"type": "string", "format": "date-time"},
    },
}


def iso(i):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(BASE + i * 60))


def catalog():
    return {
        "streams": [
            {
                "tap_stream_id": "public-users",
                "stream": "users",
                "schema": USERS,
                "key_properties": ["id"],
                "metadata": [
                    {
                        "breadcrumb": [],
                        "metadata": {
                            "table-key-properties": ["id"],
                            "valid-replication-keys": ["updated_at"],
                            "inclusion": "available",
                        },
                    },
                    {"breadcrumb": ["properties", "email"], "metadata": {"inclusion": "available"}},
                ],
            },
            {
                "tap_stream_id": "events",
                "stream": "events",
                "schema": EVENTS,
                "key_properties": ["id"],
                "metadata": [
                    {
                        "breadcrumb": [],
                        "metadata": {"forced-replication-method": "FULL_TABLE"},
                    }
                ],
            },
        ]
    }


def emit(msg):
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True)
    p.add_argument("--discover", action="store_true")
    p.add_argument("--catalog")
    p.add_argument("--properties")
    p.add_argument("--state")
    args = p.parse_args()
    config = json.load(open(args.config))
    if args.discover:
        # Pretty-printed over many lines, as json.dump(..., indent=2) taps write it.
        json.dump(catalog(), sys.stdout, indent=2)
        return
    given = json.load(open(args.catalog or args.properties))
    state = json.load(open(args.state)) if args.state else {}
    if config.get("report_to"):
        json.dump({"argv": sys.argv[1:], "catalog": given, "state": state}, open(config["report_to"], "w"))
    selected = [s for s in given["streams"] if any(
        m["breadcrumb"] == [] and m["metadata"].get("selected") for m in s.get("metadata", []))]
    behaviour = config.get("behaviour", "ok")
    every = config.get("state_every", 3)
    users = config.get("users", 10)
    for s in selected:
        name = s["stream"]
        emit({"type": "SCHEMA", "stream": name, "schema": s["schema"], "key_properties": ["id"]})
        if name == "users":
            top = [m for m in s["metadata"] if m["breadcrumb"] == []][0]["metadata"]
            # FULL_TABLE when it is read as another stream's lookup: from the start.
            assert top["replication-method"] in ("INCREMENTAL", "FULL_TABLE"), top
            start = ""
            if top["replication-method"] == "INCREMENTAL":
                assert top["replication-key"] == "updated_at", top
                start = state.get("bookmarks", {}).get("public-users", {}).get("updated_at", "")
            for i in range(1, users + 1):
                if iso(i) <= start:
                    continue
                if behaviour == "exit_half" and i > users // 2:
                    sys.stderr.write("tap-fake: lost the connection\n")
                    sys.exit(1)
                if behaviour == "garbage" and i == 5:
                    sys.stdout.write("this is not json\n")
                if behaviour == "other_stream" and i == 5:
                    emit({"type": "RECORD", "stream": "secrets", "record": {"id": 1}})
                if behaviour == "huge" and i == 5:
                    emit({"type": "RECORD", "stream": "users", "record": {"id": i, "email": "x" * config["huge_bytes"]}})
                if behaviour == "hang" and i == 5:
                    time.sleep(3600)
                emit({"type": "RECORD", "stream": "users", "time_extracted": iso(0),
                      "record": {"id": i, "email": f"user{i}@example.com", "updated_at": iso(i),
                                 "address": {"city": "Lyon"}}})
                if i % every == 0:
                    emit({"type": "STATE", "value": {"bookmarks": {"public-users": {"updated_at": iso(i)}}}})
            emit({"type": "STATE", "value": {"bookmarks": {"public-users": {"updated_at": iso(users)}}}})
        else:
            assert [m for m in s["metadata"] if m["breadcrumb"] == []][0]["metadata"]["replication-method"] == "FULL_TABLE"
            emit({"type": "ACTIVATE_VERSION", "stream": name, "version": 1})
            for i in range(1, users * 2 + 1):
                emit({"type": "RECORD", "stream": name, "version": 1,
                      "record": {"id": i, "user_id": (i + 1) // 2, "amount": i * 1.5, "created_at": iso(i)}})
            emit({"type": "ACTIVATE_VERSION", "stream": name, "version": 1})
            emit({"type": "STATE", "value": {"bookmarks": {}}})


if __name__ == "__main__":
    main()
