#!/usr/bin/env python3
"""An Airbyte-protocol source for the connector's tests, written as the Python CDK writes.

Streams: `users` (incremental on `updated_at`, key `id`) and `purchases` (full refresh only,
key `id`, three per user). `behaviour` in the config makes it misbehave in one way while
reading `users`; `report_to` names a file it writes what it saw (its environment, its files)
into.
"""

import json
import os
import stat
import sys
import time

BASE = 1_700_000_000  # 2023-11-14T22:13:20Z

SPEC = {
    "type": "object",
    "required": ["users"],
    "additionalProperties": False,
    "properties": {
        "users": {"type": "integer", "minimum": 0},
        "state_every": {"type": "integer", "minimum": 1},
        "state_type": {"type": "string", "enum": ["STREAM", "GLOBAL", "LEGACY"]},
        "behaviour": {"type": "string"},
        "failure_type": {"type": "string"},
        "huge_bytes": {"type": "integer"},
        "report_to": {"type": "string"},
        "api_token": {"type": "string", "airbyte_secret": True},
    },
}

USERS_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "email": {"type": "string"},
        "name": {"type": ["null", "string"]},
        "updated_at": {"type": "string", "format": "date-time"},
        "address": {
            "type": ["null", "object"],
            "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        },
        "blob": {"type": ["null", "string"]},
    },
}

PURCHASES_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "user_id": {"type": "integer"},
        "price": {"type": "number"},
        "created_at": {"type": "string", "format": "date-time"},
    },
}


def emit(msg):
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


def now_ms():
    return int(time.time() * 1000)


def iso(seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def log(level, message):
    emit({"type": "LOG", "log": {"level": level, "message": message}})


def record(stream, data):
    emit({"type": "RECORD", "record": {"stream": stream, "data": data, "emitted_at": now_ms()}})


def state(kind, stream, stream_state):
    descriptor = {"name": stream}
    if kind == "STREAM":
        emit({"type": "STATE", "state": {
            "type": "STREAM",
            "stream": {"stream_descriptor": descriptor, "stream_state": stream_state},
            "sourceStats": {"recordCount": 1.0},
        }})
    elif kind == "GLOBAL":
        emit({"type": "STATE", "state": {
            "type": "GLOBAL",
            "global": {
                "shared_state": {"position": stream_state.get("updated_at")},
                "stream_states": [{"stream_descriptor": descriptor, "stream_state": stream_state}],
            },
        }})
    else:
        emit({"type": "STATE", "state": {"data": {stream: stream_state}}})


def stream_status(stream, status):
    emit({"type": "TRACE", "trace": {"type": "STREAM_STATUS", "emitted_at": now_ms(),
          "stream_status": {"stream_descriptor": {"name": stream}, "status": status}}})


def trace_error(message, failure_type):
    emit({"type": "TRACE", "trace": {"type": "ERROR", "emitted_at": now_ms(), "error": {
        "message": message, "internal_message": "internal detail",
        "stack_trace": "Traceback ...", "failure_type": failure_type}}})


def arg(name):
    args = sys.argv[2:]
    return args[args.index(name) + 1] if name in args else None


def load(name):
    path = arg(name)
    if path is None:
        return None, None
    with open(path) as f:
        return json.load(f), path


def report(config, files):
    path = config.get("report_to")
    if not path:
        return
    seen = {"env": sorted(os.environ), "pid": os.getpid(), "files": {},
            "api_token": config.get("api_token")}
    for option, p in files.items():
        if p:
            seen["files"][option] = {
                "path": p,
                "mode": stat.S_IMODE(os.stat(p).st_mode),
                "dir_mode": stat.S_IMODE(os.stat(os.path.dirname(p)).st_mode),
            }
    with open(path, "w") as f:
        json.dump(seen, f)


def user(i):
    return {
        "id": i,
        "email": f"user{i}@example.com",
        "name": f"User {i}",
        "updated_at": iso(BASE + 60 * i),
        "address": {"city": "Lyon", "country": "FR"},
    }


def stored_cursor(state_input, kind):
    """The `updated_at` the users stream resumes after, from --state."""
    if state_input is None:
        return None
    if isinstance(state_input, dict):  # legacy
        return state_input.get("users", {}).get("updated_at")
    for msg in state_input:
        if msg.get("type") == "STREAM" and msg["stream"]["stream_descriptor"]["name"] == "users":
            return msg["stream"]["stream_state"].get("updated_at")
        if msg.get("type") == "GLOBAL":
            for s in msg["global"]["stream_states"]:
                if s["stream_descriptor"]["name"] == "users":
                    return s["stream_state"].get("updated_at")
    return None


def read_users(config, state_input):
    behaviour = config.get("behaviour", "good")
    kind = config.get("state_type", "STREAM")
    every = config.get("state_every", 3)
    after = stored_cursor(state_input, kind)
    todo = [user(i) for i in range(1, config["users"] + 1)]
    if after is not None:
        todo = [u for u in todo if u["updated_at"] > after]
    emit({"type": "TRACE", "trace": {"type": "ESTIMATE", "emitted_at": now_ms(),
          "estimate": {"name": "users", "type": "STREAM", "row_estimate": len(todo)}}})
    if behaviour == "control":
        emit({"type": "CONTROL", "control": {"type": "CONNECTOR_CONFIG", "emitted_at": now_ms(),
              "connectorConfig": {"config": dict(config, api_token="rotated-token")}}})
    if behaviour == "state_first":
        state(kind, "users", {"updated_at": after or iso(BASE)})
    half = len(todo) // 2
    for n, u in enumerate(todo, start=1):
        record("users", u)
        if n % every == 0:
            state(kind, "users", {"updated_at": u["updated_at"]})
        if n == 4:
            # Misbehaviours strike after the first state (records 1-3) and one more record.
            if behaviour == "garbage":
                sys.stdout.write("this is not json\n")
                sys.stdout.flush()
                time.sleep(30)
            elif behaviour == "foreign_state":
                state(kind, "orders", {"updated_at": u["updated_at"]})
                time.sleep(30)
            elif behaviour == "foreign_record":
                record("orders", {"id": 1})
                time.sleep(30)
            elif behaviour == "huge_line":
                big = dict(u, blob="x" * config.get("huge_bytes", 2_000_000))
                record("users", big)
                time.sleep(30)
            elif behaviour == "hang":
                time.sleep(3600)
            elif behaviour == "trace_error":
                trace_error("The API refused the request.", config.get("failure_type", "system_error"))
                sys.exit(1)
        if behaviour == "exit_half" and n == half:
            sys.stderr.write("Traceback (most recent call last):\nConnectionResetError: peer gone\n")
            sys.stderr.flush()
            sys.exit(1)
    if behaviour == "no_final_state":
        return
    if todo and len(todo) % every != 0:
        state(kind, "users", {"updated_at": todo[-1]["updated_at"]})
    elif not todo and after is not None:
        state(kind, "users", {"updated_at": after})


def read_purchases(config):
    pid = 0
    for i in range(1, config["users"] + 1):
        for k in range(3):
            pid += 1
            record("purchases", {"id": pid, "user_id": i, "price": 10 * (k + 1) + 0.5,
                                 "created_at": iso(BASE + 60 * i + k)})
    # What CDK 6 writes after a full refresh stream.
    state("STREAM", "purchases", {"__ab_no_cursor_state_message": True})


def main():
    command = sys.argv[1]
    if command == "spec":
        log("INFO", "spec")
        emit({"type": "SPEC", "spec": {"connectionSpecification": SPEC,
              "documentationUrl": "https://example.com"}})
        return
    config, config_path = load("--config")
    catalog, catalog_path = load("--catalog")
    state_input, state_path = load("--state")
    report(config, {"config": config_path, "catalog": catalog_path, "state": state_path})
    if command == "check":
        if config.get("behaviour") == "check_fails":
            emit({"type": "CONNECTION_STATUS", "connectionStatus": {
                "status": "FAILED", "message": "401 Unauthorized: the token is not valid"}})
        else:
            emit({"type": "CONNECTION_STATUS", "connectionStatus": {"status": "SUCCEEDED"}})
        return
    if command == "discover":
        emit({"type": "CATALOG", "catalog": {"streams": [
            {"name": "users", "json_schema": USERS_SCHEMA,
             "supported_sync_modes": ["full_refresh", "incremental"],
             "source_defined_cursor": True, "default_cursor_field": ["updated_at"],
             "source_defined_primary_key": [["id"]]},
            {"name": "purchases", "json_schema": PURCHASES_SCHEMA,
             "supported_sync_modes": ["full_refresh"],
             "source_defined_primary_key": [["id"]]},
        ]}})
        return
    if command == "read":
        sys.stderr.write("starting the read\n")
        for configured in catalog["streams"]:
            name = configured["stream"]["name"]
            stream_status(name, "STARTED")
            if name == "users":
                read_users(config, state_input)
            else:
                read_purchases(config)
            stream_status(name, "COMPLETE")
        return
    sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
