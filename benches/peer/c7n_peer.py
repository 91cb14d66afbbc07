"""The peer in the benchmark: Cloud Custodian (PyPI c7n), doing the same job as the enforcer.

The policy is the one a Cloud Custodian user writes for this control: a `kinesis` resource in
`cloudtrail` mode on CreateStream, a filter for streams not on KMS, and the `encrypt` action.
Every mode prints one JSON line on stdout; the benchmark (benches/bench/) reads it.

  c7n_peer.py init    KEY_ALIAS           cold start: import and initialise the Lambda handler
  c7n_peer.py invoke  KEY_ALIAS EVENTS    the Lambda handler on each event of a JSON array, in one
                                          process (a warm container), with peak RSS
  c7n_peer.py policy  KEY_ALIAS OUT       writes the pull-mode policy for `custodian run`
  c7n_peer.py measure PROGRAM ARGS...     runs a program: wall time and peak RSS (any Python;
                                          the benchmark measures both tools' sweeps with it)

AWS endpoints, region and credentials come from the environment (AWS_ENDPOINT_URL and the like),
as for the enforcer. KEY_ALIAS is the alias name without `alias/` (c7n's `encrypt` adds it).
"""

import json
import os
import resource
import sys
import tempfile
import time

ACCOUNT = os.environ.get("BENCH_ACCOUNT", "123456789012")


def policy(key_alias, mode):
    body = {
        "name": "kinesis-encrypt",
        "resource": "kinesis",
        "filters": [{"type": "value", "key": "EncryptionType", "value": "KMS", "op": "ne"}],
        "actions": [{"type": "encrypt", "key": key_alias}],
    }
    if mode == "cloudtrail":
        body["mode"] = {
            "type": "cloudtrail",
            "role": f"arn:aws:iam::{ACCOUNT}:role/custodian-kinesis",
            "events": [
                {
                    "source": "kinesis.amazonaws.com",
                    "event": "CreateStream",
                    "ids": "requestParameters.streamName",
                }
            ],
        }
    if mode == "cloudtrail":
        return {"execution-options": {"account_id": ACCOUNT}, "policies": [body]}
    return {"policies": [body]}


def rss_kb():
    """Current resident set size of this process, from /proc."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def peak_kb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class Context:
    """What the Lambda runtime hands the handler."""

    function_name = "custodian-kinesis-encrypt"
    aws_request_id = "bench"
    invoked_function_arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:custodian-kinesis-encrypt"

    def get_remaining_time_in_millis(self):
        return 300000


def load_handler(key_alias):
    """What a Lambda container of c7n does before its first event: import the handler module,
    read config.json, initialise the execution config and load the resource types."""
    workdir = tempfile.mkdtemp(prefix="c7n-peer-")
    with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump(policy(key_alias, "cloudtrail"), f)
    os.chdir(workdir)
    from c7n import handler
    from c7n.resources import load_resources
    from c7n.structure import StructureParser

    handler.policy_data = json.load(open("config.json"))
    handler.policy_config = handler.init_config(handler.policy_data)
    load_resources(StructureParser().get_resource_types(handler.policy_data))
    return handler


def main(argv):
    mode = argv[1]
    if mode == "measure":
        import subprocess

        start = time.monotonic()
        done = subprocess.run(argv[2:], stdout=subprocess.DEVNULL)
        seconds = time.monotonic() - start
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        print(json.dumps({"seconds": seconds, "peak_rss_kb": peak, "exit": done.returncode}))
        return 0
    if mode == "init":
        load_handler(argv[2])
        # The time is taken by the caller, from exec to this line.
        print(json.dumps({"ready": True, "rss_kb": rss_kb()}), flush=True)
    elif mode == "invoke":
        import logging

        logging.disable(logging.INFO)
        handler = load_handler(argv[2])
        handler.C7N_DEBUG_EVENT = False
        events = json.load(open(argv[3]))
        rss = {}
        errors = 0
        start = time.monotonic()
        for n, event in enumerate(events, 1):
            try:
                handler.dispatch_event(event, Context())
            except Exception as e:  # counted: the comparison is about cost, not c7n's errors
                errors += 1
                print(f"c7n_peer: event {n}: {e!r}", file=sys.stderr)
            if n in (1, 100, len(events)):
                rss[str(n)] = rss_kb()
        print(
            json.dumps(
                {
                    "events": len(events),
                    "errors": errors,
                    "seconds": time.monotonic() - start,
                    "rss_kb": rss,
                    "peak_rss_kb": peak_kb(),
                }
            ),
            flush=True,
        )
    elif mode == "policy":
        import yaml

        with open(argv[3], "w") as f:
            yaml.safe_dump(policy(argv[2], "pull"), f)
        print(json.dumps({"policy": argv[3]}))
    else:
        print(f"c7n_peer: unknown mode {mode}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
