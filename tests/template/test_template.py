"""Checks of template.yaml that need a real engine: the EventBridge patterns against the fixtures
in events/ (moto server's EventBridge, delivering to SQS), and the IAM policy against the AWS calls
the code makes. Run by scripts/test with the .tools/venv interpreter."""

import json
import pathlib
import re
import socket
import subprocess
import sys
import time
import unittest

import boto3

ROOT = pathlib.Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"

# One reader of CloudFormation's short-form intrinsics, shared with the policy checks.
sys.path.insert(0, str(ROOT / "tests" / "policies"))
import cfn  # noqa: E402

# The IAM condition evaluator the guardrails' tests hold to AWS's documented rules.
sys.path.insert(0, str(ROOT / "tests" / "guardrails"))
import scp  # noqa: E402


def template(name="template.yaml"):
    return cfn.load(name)


def member():
    return template("member.yaml")


# Stand-ins for what CloudFormation resolves in the patterns: the function's role and the
# member role in the test's account.
ENFORCER_ROLE_ARN = "arn:aws:iam::123456789012:role/enforcer-EnforcerRole-1A2B3C4D5E6F"
MEMBER_ROLE_NAME = template()["Parameters"]["MemberRoleName"]["Default"]
MEMBER_ROLE_ARN = f"arn:aws:iam::123456789012:role/{MEMBER_ROLE_NAME}"


# Parameter values of the central deployment the patterns are resolved with: the test's
# account and region are among the allowed ones.
CENTRAL = {
    "EnforcerRole": ENFORCER_ROLE_ARN,
    "AllowedRegions": "us-east-1,eu-west-1",
    "AllowedAccounts": "",
}


def resolved(node, doc=None, values=None):
    """A pattern with its intrinsics (!GetAtt EnforcerRole.Arn, !Sub, !If, !Split) resolved as
    CloudFormation resolves them for `values` (CENTRAL by default)."""
    doc = doc or template()
    values = {**CENTRAL, **(values or {})}
    return cfn.Resolver(doc, cfn.conditions_of(doc, values), values).resolve(node)


def central_rules(values=None):
    """(name, pattern) of the central bus's rule and the member accounts' forwarding rule."""
    return [
        (
            "CentralStreamCalls",
            resolved(template()["Resources"]["CentralStreamCalls"]["Properties"]["EventPattern"], values=values),
        ),
        (
            "ForwardStreamCalls",
            resolved(member()["Resources"]["ForwardStreamCalls"]["Properties"]["EventPattern"], member(), values),
        ),
    ]


def rules():
    """(name, pattern) of every EventBridgeRule event of every function."""
    found = []
    for resource in template()["Resources"].values():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        for name, event in resource["Properties"].get("Events", {}).items():
            if event["Type"] == "EventBridgeRule":
                found.append((name, resolved(event["Properties"]["Pattern"])))
    return found


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EventPatterns(unittest.TestCase):
    """Every fixture is put on a real event bus; exactly the handled ones reach each rule."""

    @classmethod
    def setUpClass(cls):
        port = free_port()
        moto = pathlib.Path(sys.executable).parent / "moto_server"
        cls.server = subprocess.Popen(
            [str(moto), "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or cls.server.poll() is not None:
                    raise RuntimeError("moto server did not start")
                time.sleep(0.1)
        kw = dict(
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name="us-east-1",
            aws_access_key_id="123456789012",
            aws_secret_access_key="test",
        )
        cls.events = boto3.client("events", **kw)
        cls.sqs = boto3.client("sqs", **kw)

    @classmethod
    def tearDownClass(cls):
        cls.server.terminate()
        cls.server.wait(timeout=30)

    def put(self, event):
        result = self.events.put_events(
            Entries=[
                {
                    "Source": event["source"],
                    "DetailType": event["detail-type"],
                    "Detail": json.dumps(event["detail"]),
                    "Resources": event.get("resources", []),
                }
            ]
        )
        self.assertEqual(result["FailedEntryCount"], 0, result)

    def drain(self, queue_url):
        names = []
        while True:
            got = self.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            messages = got.get("Messages", [])
            if not messages:
                return sorted(names)
            for m in messages:
                body = json.loads(m["Body"])
                names.append(f'{body["source"]}:{body["detail"]["eventName"]}:{"errorCode" in body["detail"]}')
                self.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])

    def test_each_rule_receives_exactly_the_handled_calls(self):
        queues = {}
        for name, pattern in rules() + central_rules():
            self.events.put_rule(Name=name, EventPattern=json.dumps(pattern))
            url = self.sqs.create_queue(QueueName=name)["QueueUrl"]
            arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            self.events.put_targets(Rule=name, Targets=[{"Id": "queue", "Arn": arn}])
            queues[name] = url
        self.assertEqual(
            sorted(queues), ["CentralStreamCalls", "FirehoseCalls", "ForwardStreamCalls", "KinesisCalls"]
        )
        # The schedule is not an event pattern; it is checked below.

        fixtures = sorted(EVENTS.glob("*.json"))
        self.assertGreaterEqual(len(fixtures), 9)
        for path in fixtures:
            self.put(json.loads(path.read_text()))
        # Look-alikes that must not arrive: another source, another detail-type.
        create = json.loads((EVENTS / "kinesis-create-stream.json").read_text())
        self.put({**create, "source": "aws.s3"})
        self.put({**create, "detail-type": "AWS Service Event via CloudTrail"})

        self.assertEqual(
            self.drain(queues["KinesisCalls"]),
            sorted(
                [
                    "aws.kinesis:CreateStream:False",
                    "aws.kinesis:StartStreamEncryption:False",
                    "aws.kinesis:StopStreamEncryption:False",
                ]
            ),
            "the Kinesis rule: handled calls only; no DeleteStream, no failed call",
        )
        firehose = sorted(
            [
                "aws.firehose:CreateDeliveryStream:False",
                "aws.firehose:CreateDeliveryStream:False",
                "aws.firehose:StartDeliveryStreamEncryption:False",
                "aws.firehose:StopDeliveryStreamEncryption:False",
            ]
        )
        self.assertEqual(self.drain(queues["FirehoseCalls"]), firehose)
        # Organisation-wide: the member accounts forward, and the central bus delivers, exactly
        # what the account's own two rules receive.
        both = sorted(
            firehose
            + [
                "aws.kinesis:CreateStream:False",
                "aws.kinesis:StartStreamEncryption:False",
                "aws.kinesis:StopStreamEncryption:False",
            ]
        )
        self.assertEqual(self.drain(queues["ForwardStreamCalls"]), both)
        self.assertEqual(self.drain(queues["CentralStreamCalls"]), both)


    def test_only_the_enforcers_own_start_calls_are_dropped_and_everything_else_arrives(self):
        create = json.loads((EVENTS / "kinesis-create-stream.json").read_text())
        start = json.loads((EVENTS / "kinesis-start-stream-encryption-foreign-key.json").read_text())
        start_firehose = json.loads((EVENTS / "firehose-start-delivery-stream-encryption.json").read_text())
        self.assertEqual(
            [create["detail"]["eventName"], start["detail"]["eventName"], start_firehose["detail"]["eventName"]],
            ["CreateStream", "StartStreamEncryption", "StartDeliveryStreamEncryption"],
        )

        def role(arn, session):
            return {
                "type": "AssumedRole",
                "arn": arn.replace(":iam::", ":sts::").replace(":role/", ":assumed-role/") + "/" + session,
                "accountId": "123456789012",
                "sessionContext": {"sessionIssuer": {"type": "Role", "arn": arn, "accountId": "123456789012"}},
            }

        callers = {
            "deployer": create["detail"]["userIdentity"],
            # The function's own role, in its own account (Lambda names the session after it).
            "function": role(ENFORCER_ROLE_ARN, "enforcer"),
            # The enforcer in a member account: the member role, the session src/aws/clients.rs names.
            "enforcer": role(MEMBER_ROLE_ARN, "stream-encryption-enforcer"),
            # Anyone else who can act as a role of that name (finding 7 of the security review).
            "member-role-other-session": role(MEMBER_ROLE_ARN, "alice"),
            # An IAM user with long-term keys: no sessionContext at all.
            "iam-user": {"type": "IAMUser", "arn": "arn:aws:iam::123456789012:user/alice", "accountId": "123456789012"},
            # Root in the console: a sessionContext with attributes and no sessionIssuer.
            "root-console": {
                "type": "Root",
                "arn": "arn:aws:iam::123456789012:root",
                "sessionContext": {"attributes": {"mfaAuthenticated": "true"}},
            },
            # A record without an arn (a service acting for itself).
            "no-arn": {"type": "AWSService", "invokedBy": "cloudformation.amazonaws.com"},
        }
        queues = {}
        for name, pattern in rules() + central_rules():
            rule = f"{name}-callers"
            self.events.put_rule(Name=rule, EventPattern=json.dumps(pattern))
            url = self.sqs.create_queue(QueueName=rule)["QueueUrl"]
            arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            self.events.put_targets(Rule=rule, Targets=[{"Id": "queue", "Arn": arn}])
            queues[name] = url
        for caller, identity in callers.items():
            for fixture in (create, start, start_firehose):
                event = json.loads(json.dumps(fixture))
                event["detail"]["userIdentity"] = identity
                event["detail"]["eventID"] = f'{caller}:{fixture["detail"]["eventName"]}'
                self.put(event)

        def received(queue):
            got = []
            while True:
                messages = self.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
                if not messages:
                    return sorted(got)
                for m in messages:
                    got.append(json.loads(m["Body"])["detail"]["eventID"])
                    self.sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])

        def calls(who, names):
            return [f"{caller}:{name}" for caller in who for name in names]

        others = ["deployer", "iam-user", "root-console", "no-arn", "member-role-other-session"]
        # The account's own rules: the function's StartStreamEncryption alone is dropped (its role
        # makes no other call; here the member role is any other role).
        self.assertEqual(
            received(queues["KinesisCalls"]),
            sorted(
                calls(others + ["enforcer"], ["CreateStream", "StartStreamEncryption"])
                + calls(["function"], ["CreateStream"])
            ),
        )
        self.assertEqual(
            received(queues["FirehoseCalls"]), sorted(calls(others + ["enforcer"], ["StartDeliveryStreamEncryption"]))
        )
        # Member accounts: the member role's enforcer session is the enforcer acting there. Its
        # Start calls alone are dropped; its CreateStream (it makes none) and every other session
        # of the role arrive.
        everything = ["CreateStream", "StartStreamEncryption", "StartDeliveryStreamEncryption"]
        forwarded = sorted(calls(others + ["function"], everything) + calls(["enforcer"], ["CreateStream"]))
        self.assertEqual(received(queues["ForwardStreamCalls"]), forwarded)
        self.assertEqual(received(queues["CentralStreamCalls"]), forwarded)

    def test_replays_and_places_the_function_does_not_serve_stay_off_it(self):
        """Envelope fields PutEvents cannot set (account, region, replay-name), so moto's own
        pattern engine judges them in-process (moto's server has no TestEventPattern)."""
        from moto.events.models import EventPattern

        create = json.loads((EVENTS / "kinesis-create-stream.json").read_text())
        create_firehose = json.loads((EVENTS / "firehose-create-delivery-stream.json").read_text())

        def arrives(pattern, fixture=create, **envelope):
            event = {**fixture, **envelope}
            return EventPattern(None, pattern).matches_event(event)

        for name, pattern in rules() + central_rules():
            fixture = create_firehose if name == "FirehoseCalls" else create
            with self.subTest(rule=name):
                self.assertTrue(arrives(pattern, fixture), "the fixture itself arrives")
                self.assertFalse(arrives(pattern, fixture, **{"replay-name": "replay-of-last-week"}))

        # Central mode: only the allowed regions, and with AllowedAccounts only those and the
        # function's own account (123456789012 here).
        (_, everyone), _ = central_rules()
        (_, listed), _ = central_rules({"AllowedAccounts": "111111111111,222222222222"})
        for account, region, served_by_everyone, served_by_listed in [
            ("123456789012", "us-east-1", True, True),
            ("111111111111", "eu-west-1", True, True),
            ("333333333333", "us-east-1", True, False),
            ("111111111111", "ap-south-1", False, False),
        ]:
            with self.subTest(account=account, region=region):
                self.assertEqual(arrives(everyone, account=account, region=region), served_by_everyone)
                self.assertEqual(arrives(listed, account=account, region=region), served_by_listed)


class ResourcePolicies(unittest.TestCase):
    """The central bus's and the queues' policies held to their intent: who may put events or
    send messages, judged by the condition evaluator of tests/guardrails (scp.py)."""

    def central(self, values=None):
        doc = template()
        values = {**CENTRAL, "OrganizationId": "o-a1b2c3d4e5", **(values or {})}
        conditions = cfn.conditions_of(doc, values)
        return cfn.Resolver(doc, conditions, values), doc

    def test_the_central_bus_admits_only_the_forwarding_roles_with_cloudtrail_stream_calls(self):
        resolver, doc = self.central()
        statement = resolver.resolve(doc["Resources"]["CentralEventBusPolicy"]["Properties"]["Statement"])
        bus = resolver.get_att("CentralEventBus.Arn")
        forwarder = "arn:aws:iam::444455556666:role/stream-encryption-enforcer-forward-eu-west-1"

        forward_rule = "arn:aws:events:eu-west-1:444455556666:rule/stream-encryption-enforcer-forward"

        def admitted(principal, sources, detail_type="AWS API Call via CloudTrail", org="o-a1b2c3d4e5", rule=forward_rule):
            context = {
                "aws:PrincipalArn": principal,
                "aws:PrincipalOrgID": org,
                "aws:SourceArn": rule,
                "events:source": sources,
                "events:detail-type": [detail_type],
            }
            return scp.statement_matches(statement, "events:PutEvents", [bus], context)

        self.assertEqual(statement["Effect"], "Allow")
        self.assertTrue(admitted(forwarder, ["aws.kinesis"]))
        self.assertTrue(admitted(forwarder, ["aws.firehose", "aws.kinesis"]))
        # Any other principal of the organisation: a member's own role, a user, a look-alike name.
        for principal in [
            "arn:aws:iam::444455556666:role/Admin",
            "arn:aws:iam::444455556666:user/alice",
            "arn:aws:iam::444455556666:role/x-stream-encryption-enforcer-forward-eu-west-1",
        ]:
            with self.subTest(principal=principal):
                self.assertFalse(admitted(principal, ["aws.kinesis"]))
        # The forwarding role with anything but the handled events, or from outside the organisation.
        self.assertFalse(admitted(forwarder, ["my.app"]))
        self.assertFalse(admitted(forwarder, ["aws.kinesis", "my.app"]))
        self.assertFalse(admitted(forwarder, ["aws.kinesis"], detail_type="Scheduled Event"))
        self.assertFalse(admitted(forwarder, ["aws.kinesis"], org="o-zzzzzzzzzz"))
        # The forwarding role put to work by another rule of the member's (extra targets that
        # would multiply every event): only member.yaml's rule, one per account and region.
        self.assertFalse(admitted(forwarder, ["aws.kinesis"], rule="arn:aws:events:eu-west-1:444455556666:rule/amplifier"))
        # The pattern follows member.yaml's rule name and its role's naming.
        role_name = member()["Resources"]["ForwardRole"]["Properties"]["RoleName"]
        self.assertEqual(role_name, {"Sub": "${ForwardRuleName}-${AWS::Region}"})
        self.assertEqual(
            template()["Parameters"]["ForwardRuleName"]["Default"],
            member()["Parameters"]["ForwardRuleName"]["Default"],
        )


    def test_only_the_stack_writes_to_the_queues_that_replay_or_the_function_run(self):
        """Finding 9: a planted message would run with an operator's credentials (replay) or the
        function's (the events and re-check queues). Each queue policy's Deny, judged with
        allowed and denied principals."""
        resolver, doc = self.central()
        function_role = ENFORCER_ROLE_ARN
        developer = "arn:aws:iam::123456789012:role/Developer"
        events = "events.amazonaws.com"

        def denied(policy, principal, source_arn=None):
            document = resolver.resolve(doc["Resources"][policy]["Properties"]["PolicyDocument"])
            context = {}
            if principal != events:
                context["aws:PrincipalArn"] = principal
            if source_arn:
                context["aws:SourceArn"] = source_arn
            resource = document["Statement"][-1]["Resource"]
            return scp.denying(document, [("sqs:SendMessage", [resource], context)]) is not None

        for policy in ("FailedEventsQueuePolicy", "EventsQueuePolicy", "RecheckQueuePolicy"):
            with self.subTest(policy=policy):
                self.assertFalse(denied(policy, function_role))
                self.assertTrue(denied(policy, developer))
                self.assertTrue(denied(policy, "arn:aws:iam::123456789012:root"))
        rule = resolver.get_att("EnforcerFunctionKinesisCalls.Arn")
        central_rule = resolver.get_att("CentralStreamCalls.Arn")
        self.assertFalse(denied("EventsDeadLetterQueuePolicy", events, rule))
        self.assertFalse(denied("EventsDeadLetterQueuePolicy", events, central_rule))
        self.assertTrue(denied("EventsDeadLetterQueuePolicy", events, "arn:aws:events:us-east-1:123456789012:rule/other"))
        self.assertTrue(denied("EventsDeadLetterQueuePolicy", developer))
        self.assertTrue(denied("EventsDeadLetterQueuePolicy", function_role))


class Outputs(unittest.TestCase):
    def test_the_exempt_tag_key_is_output_for_the_guardrails_as_the_enforcer_reads_it(self):
        """Finding 12: guardrails.yaml's ExemptTagKey comes from the central stack's output."""
        import re as regex

        doc = template()
        pattern = doc["Parameters"]["ExemptTag"]["AllowedPattern"]
        for tag, key in [("enforcer-exempt", "enforcer-exempt"), ("compliance=exempt", "compliance"), ("a:b=c=d", "a:b")]:
            self.assertIsNotNone(regex.fullmatch(pattern, tag), tag)
            values = {"ExemptTag": tag}
            resolver = cfn.Resolver(doc, cfn.conditions_of(doc, values), values)
            self.assertEqual(resolver.resolve(doc["Outputs"]["ExemptTagKey"]["Value"]), key)
        # Spaces around the key would differ from the enforcer's trimmed key: refused.
        for tag in [" enforcer-exempt", "enforcer-exempt =x"]:
            self.assertIsNone(regex.fullmatch(pattern, tag), tag)
        self.assertFalse(cfn.conditions_of(doc, {"ExemptTag": ""})["HasExemptTag"])


class Dashboard(unittest.TestCase):
    def test_the_dashboard_shows_what_the_code_emits_and_all_of_it(self):
        """Every metric of the enforcer's namespace the dashboard names, with its dimensions, is
        one src/lambda/metrics.rs emits, and every metric it emits is on the dashboard."""
        doc = template()
        values = {"MetricsNamespace": "StreamEncryptionEnforcer"}
        resolver = cfn.Resolver(doc, cfn.conditions_of(doc, values), values)
        body = json.loads(resolver.resolve(doc["Resources"]["Dashboard"]["Properties"]["DashboardBody"]))
        shown = {}
        for widget in body["widgets"]:
            for row in widget["properties"]["metrics"]:
                names = [x for x in row if isinstance(x, str)]
                if names[0] != "StreamEncryptionEnforcer":
                    continue
                dimensions = tuple(sorted(names[2::2]))
                shown.setdefault(names[1], set()).add(dimensions)
                if "outcome" in names[2::2]:
                    outcome = names[names.index("outcome") + 1]
                    self.assertIn(f'"{outcome}"', OUTCOMES_SOURCE, outcome)
        # The code, not its tests.
        source = (ROOT / "src" / "lambda" / "metrics.rs").read_text().split("#[cfg(test)]")[0]
        emitted = set(re.findall(r'"Name": "([A-Z][A-Za-z]+)"', source)) | set(
            re.findall(r'\("([A-Z][A-Za-z]+)", ', source)
        )
        self.assertEqual(set(shown), emitted)
        # The dimension sets the code emits each metric with (EMF "Dimensions").
        emitted_dimensions = {
            "Events": {("outcome",), ("outcome", "service")},
            "WriteCalls": {("outcome",), ("outcome", "service")},
            "SecondsToCompliance": {("service",)},
            "MissedByEvents": {(), ("service",)},
        }
        for name, dimensions in shown.items():
            self.assertLessEqual(dimensions, emitted_dimensions.get(name, {()}), name)


OUTCOMES_SOURCE = (ROOT / "src" / "model" / "outcome.rs").read_text()


class Ledger(unittest.TestCase):
    """The ledger table and its alarm are what src/aws/ledger.rs and the flapping outcome expect."""

    def test_the_table_has_the_keys_and_ttl_the_code_writes(self):
        table = template()["Resources"]["ReapplicationLedger"]["Properties"]
        source = (ROOT / "src" / "aws" / "ledger.rs").read_text()
        keys = {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]}
        self.assertEqual(keys, {"resource": "HASH", "applied": "RANGE"})
        for name in ("resource", "applied", "expires", "reverted_by"):
            self.assertIn(f'"{name}"', source)
        self.assertEqual(table["TimeToLiveSpecification"], {"AttributeName": "expires", "Enabled": True})
        self.assertEqual(table["BillingMode"], "PAY_PER_REQUEST")
        env = template()["Resources"]["EnforcerFunction"]["Properties"]["Environment"]["Variables"]
        self.assertEqual(env["LEDGER_TABLE"], {"Ref": "ReapplicationLedger"})
        ledger = [s for s in role_statements() if s.get("Sid") == "ReapplicationLedger"]
        self.assertEqual(ledger[0]["Resource"], {"GetAtt": "ReapplicationLedger.Arn"})

    def test_an_alarm_watches_the_flapping_outcome(self):
        alarm = template()["Resources"]["FlappingAlarm"]["Properties"]
        self.assertEqual(alarm["Dimensions"], [{"Name": "outcome", "Value": "flapping"}])
        self.assertEqual((alarm["MetricName"], alarm["Namespace"]), ("Events", {"Ref": "MetricsNamespace"}))
        self.assertIn('"flapping"', (ROOT / "src" / "model" / "outcome.rs").read_text())


class Alarms(unittest.TestCase):
    """Alarms that reach someone: the topic is not under alias/aws/sns, whose key policy cannot let
    CloudWatch publish (https://repost.aws/knowledge-center/cloudwatch-configure-alarm-sns)."""

    def test_the_alarm_topic_has_a_key_that_cloudwatch_alarms_of_this_account_may_use(self):
        resources = template()["Resources"]
        topic = resources["AlarmTopic"]
        self.assertEqual(topic["Properties"]["KmsMasterKeyId"], {"GetAtt": "AlarmTopicKey.Arn"})
        key = resources["AlarmTopicKey"]
        self.assertEqual((key["Type"], key["Condition"]), ("AWS::KMS::Key", topic["Condition"]))
        self.assertTrue(key["Properties"]["EnableKeyRotation"])
        statements = key["Properties"]["KeyPolicy"]["Statement"]
        cloudwatch = [s for s in statements if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
        self.assertEqual(len(cloudwatch), 1, statements)
        (statement,) = cloudwatch
        self.assertEqual(statement["Effect"], "Allow")
        self.assertEqual(set(statement["Action"]), {"kms:Decrypt", "kms:GenerateDataKey*"})
        conditions = statement["Condition"]
        self.assertEqual(conditions["StringEquals"]["aws:SourceAccount"], {"Ref": "AWS::AccountId"})
        self.assertEqual(
            conditions["ArnLike"]["aws:SourceArn"],
            {"Sub": "arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:*"},
        )
        # The only other statement is the account's own administration of the key through IAM.
        (admin,) = [s for s in statements if s is not statement]
        self.assertEqual(admin["Principal"], {"AWS": {"Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}})
        # Every alarm publishes to that topic, and nothing uses the AWS managed SNS key.
        alarms = [r for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
        self.assertGreaterEqual(len(alarms), 6)
        for alarm in alarms:
            self.assertEqual(alarm["Properties"]["AlarmActions"]["If"][1], [{"Ref": "AlarmTopic"}])
        managed = [n for n, r in resources.items() if "alias/aws/" in json.dumps(r.get("Properties", {}))]
        self.assertFalse(managed, "resources under an AWS managed key")


class Schedule(unittest.TestCase):
    def test_the_sweep_is_scheduled_and_can_be_switched_off(self):
        function = template()["Resources"]["EnforcerFunction"]["Properties"]
        sweep = function["Events"]["Sweep"]
        self.assertEqual(sweep["Type"], "Schedule")
        self.assertEqual(sweep["Properties"]["State"], {"If": ["HasSweepSchedule", "ENABLED", "DISABLED"]})
        self.assertEqual(template()["Parameters"]["SweepSchedule"]["Default"], "rate(1 day)")
        self.assertIn("Arn", sweep["Properties"]["DeadLetterConfig"])

    def test_the_sweep_queue_is_consumed_place_by_place_with_failures_kept(self):
        doc = template()
        resources = doc["Resources"]
        function = resources["EnforcerFunction"]["Properties"]
        # The function plans onto the queue...
        self.assertEqual(function["Environment"]["Variables"]["SWEEP_QUEUE_URL"], {"Ref": "SweepQueue"})
        # ...and consumes it, answering the messages that failed, at a bounded concurrency.
        source = function["Events"]["SweepQueue"]
        self.assertEqual(source["Type"], "SQS")
        props = source["Properties"]
        self.assertEqual(props["Queue"], {"GetAtt": "SweepQueue.Arn"})
        self.assertEqual(props["FunctionResponseTypes"], ["ReportBatchItemFailures"])
        self.assertEqual(props["ScalingConfig"], {"MaximumConcurrency": {"Ref": "SweepConcurrency"}})
        self.assertLessEqual(props["BatchSize"], 10)
        concurrency = doc["Parameters"]["SweepConcurrency"]
        self.assertEqual((concurrency["MinValue"], concurrency["MaxValue"]), (2, 1000))
        # One invocation per place at a time (a FIFO message group per account and region).
        self.assertTrue(resources["SweepQueue"]["Properties"]["FifoQueue"])
        self.assertTrue(resources["SweepDeadLetterQueue"]["Properties"]["FifoQueue"])
        # Visibility at least 6 times the longest function timeout (AWS's advice for a queue a
        # function consumes), whatever FunctionTimeout is set to.
        queue = resources["SweepQueue"]["Properties"]
        longest = doc["Parameters"]["FunctionTimeout"]["MaxValue"]
        self.assertGreaterEqual(queue["VisibilityTimeout"], 6 * longest)
        self.assertLessEqual(queue["VisibilityTimeout"], 43200)
        # A place that keeps failing moves to the dead-letter queue, which an alarm watches.
        redrive = queue["RedrivePolicy"]
        self.assertEqual(redrive["deadLetterTargetArn"], {"GetAtt": "SweepDeadLetterQueue.Arn"})
        self.assertEqual(redrive["maxReceiveCount"], {"Ref": "SweepMaxReceiveCount"})
        self.assertGreaterEqual(doc["Parameters"]["SweepMaxReceiveCount"]["Default"], 5)
        dlq_alarm = resources["SweepDeadLetterAlarm"]["Properties"]
        self.assertEqual(dlq_alarm["Dimensions"][0]["Value"], {"GetAtt": "SweepDeadLetterQueue.QueueName"})
        for queue_name in ("SweepQueue", "SweepDeadLetterQueue"):
            self.assertTrue(resources[queue_name]["Properties"]["SqsManagedSseEnabled"])
        # Coverage and missed events alarm apart from event failures, on the metrics the code emits.
        metrics = (ROOT / "src" / "lambda" / "metrics.rs").read_text()
        for alarm, metric in (("PlacesFailedAlarm", "PlacesFailed"), ("MissedByEventsAlarm", "MissedByEvents")):
            props = resources[alarm]["Properties"]
            self.assertEqual((props["Namespace"], props["MetricName"]), ({"Ref": "MetricsNamespace"}, metric))
            self.assertIn(f'"{metric}"', metrics)
        # The function's SQS permissions name the sweep queue's ARN alone.
        sqs = [s for s in role_statements() if any(a.startswith("sqs:") for a in as_list(s["Action"]))]
        by_resource = {json.dumps(s["Resource"], sort_keys=True): set(as_list(s["Action"])) for s in sqs}
        self.assertEqual(
            by_resource,
            {
                json.dumps({"GetAtt": "FailedEventsQueue.Arn"}): {"sqs:SendMessage"},
                json.dumps({"GetAtt": "SweepQueue.Arn"}): {
                    "sqs:SendMessage",
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                    "sqs:GetQueueAttributes",
                },
                json.dumps({"GetAtt": "EventsQueue.Arn"}): {
                    "sqs:SendMessage",
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                    "sqs:GetQueueAttributes",
                },
                json.dumps({"GetAtt": "RecheckQueue.Arn"}): {
                    "sqs:SendMessage",
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                    "sqs:GetQueueAttributes",
                },
            },
        )

    def test_events_are_routed_to_a_fifo_queue_and_handled_one_batch_per_place(self):
        doc = template()
        resources = doc["Resources"]
        function = resources["EnforcerFunction"]["Properties"]
        variables = function["Environment"]["Variables"]
        self.assertEqual(variables["EVENTS_QUEUE_URL"], {"Ref": "EventsQueue"})
        self.assertEqual(variables["FAILED_EVENTS_QUEUE_URL"], {"Ref": "FailedEventsQueue"})
        # One events invocation and one sweep invocation per place at a time: each paces at half.
        self.assertEqual(variables["PLACE_CONCURRENCY"], "2")
        queue = resources["EventsQueue"]["Properties"]
        self.assertTrue(queue["FifoQueue"])
        self.assertEqual(queue["FifoThroughputLimit"], "perMessageGroupId")
        self.assertGreaterEqual(queue["VisibilityTimeout"], 6 * doc["Parameters"]["FunctionTimeout"]["MaxValue"])
        self.assertEqual(queue["RedrivePolicy"]["deadLetterTargetArn"], {"GetAtt": "EventsQueueDeadLetterQueue.Arn"})
        self.assertTrue(resources["EventsQueueDeadLetterQueue"]["Properties"]["FifoQueue"])
        source = function["Events"]["EventsQueue"]
        self.assertEqual(source["Type"], "SQS")
        self.assertEqual(source["Properties"]["FunctionResponseTypes"], ["ReportBatchItemFailures"])
        self.assertEqual(source["Properties"]["ScalingConfig"], {"MaximumConcurrency": {"Ref": "EventConcurrency"}})
        # A FIFO queue's batch is at most 10 messages, and takes no batching window.
        self.assertLessEqual(source["Properties"]["BatchSize"], 10)
        self.assertNotIn("MaximumBatchingWindowInSeconds", source["Properties"])
        # No reserved concurrency by default: it is not what keeps the limits, and a reservation
        # below the event sources' maximum concurrency would throttle them.
        self.assertEqual(doc["Parameters"]["ReservedConcurrency"]["Default"], "")
        # The rules still target the function, which routes.
        for rule in ("KinesisCalls", "FirehoseCalls"):
            self.assertEqual(function["Events"][rule]["Type"], "EventBridgeRule")
        # A wait for a stream is deferred to the re-check queue, a standard queue (it delays
        # messages, which a FIFO queue cannot do one by one), and comes back by its own source.
        self.assertEqual(variables["RECHECK_QUEUE_URL"], {"Ref": "RecheckQueue"})
        self.assertNotIn("FifoQueue", resources["RecheckQueue"]["Properties"])
        self.assertEqual(function["Events"]["RecheckQueue"]["Properties"]["Queue"], {"GetAtt": "RecheckQueue.Arn"})
        self.assertEqual(
            resources["RecheckQueue"]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"],
            {"GetAtt": "RecheckDeadLetterQueue.Arn"},
        )
        backlog = resources["EventsBacklogAlarm"]["Properties"]
        self.assertEqual(backlog["MetricName"], "ApproximateAgeOfOldestMessage")
        self.assertEqual(backlog["Dimensions"][0]["Value"], {"GetAtt": "EventsQueue.QueueName"})


# The SDK client each receiver in src/ names, where the receiver is not `self` of an adapter file.
RECEIVERS = {
    "sts": "sts",
    "organizations": "organizations",
    "client": "dynamodb",
    "kinesis": "kinesis",
    "firehose": "firehose",
    "kms": "kms",
}
# Files whose receivers name another client than RECEIVERS says.
FILE_RECEIVERS = {"sqs.rs": {"client": "sqs"}, "queue.rs": {"client": "sqs"}, "function.rs": {"client": "lambda"}}
# Operations IAM authorizes as another action: "setting permissions for SendMessage ... sets
# permissions for the corresponding batch versions of the actions"
# (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-batch-api.html).
IAM_ACTION = {"sqs:SendMessageBatch": "sqs:SendMessage"}
# The service of `self.<operation>()` in the adapter files, where `self` is the SDK client.
ADAPTER_FILES = {"kinesis.rs": "kinesis", "firehose.rs": "firehose", "kms.rs": "kms"}
# Code only the operator's CLI runs (src/bin/enforcer/, `enforcer replay`'s SQS calls): its calls
# are the operator policy's, never the function's.
OPERATOR_DIR = ("bin", "enforcer")


def code_operations(operator=False):
    """Every AWS operation src/ calls: each `.send()` ends a fluent chain
    `<receiver>.<operation>().<setter>(...)...send()`; the chain's first method is the operation,
    and the receiver (or the adapter file, for `self`) names the service. The function's calls,
    or with `operator` those of OPERATOR_DIR."""
    found = set()
    for path in sorted((ROOT / "src").rglob("*.rs")):
        if (path.relative_to(ROOT / "src").parts[:2] == OPERATOR_DIR) != operator:
            continue
        receivers = {**RECEIVERS, **FILE_RECEIVERS.get(path.name, {})}
        source = path.read_text()
        for send in re.finditer(r"\.send\(\)", source):
            # Walk back over `.method(args)` segments, balancing parentheses.
            i, methods = send.start(), []
            while True:
                j = i
                while j > 0 and source[j - 1].isspace():
                    j -= 1
                if source[j - 1] != ")":
                    break
                depth, k = 0, j - 1
                while True:
                    depth += {")": 1, "(": -1}.get(source[k], 0)
                    if depth == 0:
                        break
                    k -= 1
                m = re.search(r"\.\s*([a-z_][a-z0-9_]*)\s*$", source[:k])
                if not m:
                    break
                methods.append(m.group(1))
                i = m.start()
            receiver = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\s*$", source[:i])
            if not receiver:
                raise AssertionError(f"{path}: a .send() whose chain could not be read")
            name = receiver.group(1)
            if methods:
                chains = [(name, methods[-1])]
            else:
                # `request.send()`: the request was built in `let request = ...;` before.
                built = source.rfind(f"let {name} =", 0, i)
                if built < 0:
                    raise AssertionError(f"{path}: {name}.send(), but no `let {name} =`")
                chains = re.findall(r"\b(self|[a-z_]+)\s*\.\s*([a-z_][a-z0-9_]*)\s*\(\s*\)", source[built : source.index(";", built)])
            for name, operation in chains:
                service = ADAPTER_FILES.get(path.name) if name == "self" else receivers.get(name)
                if service is None:
                    raise AssertionError(f"{path}: .send() on {name}.{operation}(): which service?")
                name = f"{service}:" + "".join(part.capitalize() for part in operation.split("_"))
                found.add(IAM_ACTION.get(name, name))
    return found


def role_statements(doc=None, role="EnforcerRole"):
    """The statements of the role's inline policies and of every AWS::IAM::RolePolicy attached to
    it (central mode's), whatever their conditions."""
    doc = doc or template()
    props = doc["Resources"][role]["Properties"]
    statements = [s for p in props.get("Policies", []) for s in p["PolicyDocument"]["Statement"]]
    for resource in doc["Resources"].values():
        if resource["Type"] == "AWS::IAM::RolePolicy" and resource["Properties"]["RoleName"] == {"Ref": role}:
            statements.extend(resource["Properties"]["PolicyDocument"]["Statement"])
    return statements


def member_statements():
    return role_statements(member(), "MemberRole")


def as_list(value):
    return value if isinstance(value, list) else [value]


class IamPolicy(unittest.TestCase):
    def test_the_code_calls_what_the_test_expects(self):
        # Guards the extraction itself: if it found nothing, the coverage test would prove nothing.
        self.assertEqual(
            code_operations(),
            {
                "kinesis:DescribeStreamSummary",
                "kinesis:ListStreams",
                "kinesis:ListTagsForStream",
                "kinesis:StartStreamEncryption",
                "firehose:DescribeDeliveryStream",
                "firehose:ListDeliveryStreams",
                "firehose:ListTagsForDeliveryStream",
                "firehose:StartDeliveryStreamEncryption",
                "kms:DescribeKey",
                "dynamodb:Query",
                "dynamodb:PutItem",
                "sts:AssumeRole",
                "sts:GetCallerIdentity",
                "organizations:DescribeOrganization",
                "organizations:ListAccounts",
                "sqs:SendMessage",
            },
        )

    def test_the_replay_operator_policy_allows_exactly_the_calls_of_replay_on_the_two_queues(self):
        queue_calls = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"}
        self.assertEqual(code_operations(operator=True), queue_calls | {"lambda:GetFunctionConfiguration"})
        policy = template()["Resources"]["ReplayOperatorPolicy"]
        self.assertEqual(policy["Type"], "AWS::IAM::ManagedPolicy")
        statement, enqueue, configuration, ledger = policy["Properties"]["PolicyDocument"]["Statement"]
        self.assertEqual(statement["Effect"], "Allow")
        self.assertEqual(set(statement["Action"]), queue_calls)
        # `--function`: the function's own configuration, that function only.
        self.assertEqual(
            (configuration["Effect"], configuration["Action"], configuration["Resource"]),
            ("Allow", "lambda:GetFunctionConfiguration", {"GetAtt": "EnforcerFunction.Arn"}),
        )
        # The ledger, as the function uses it (finding 9: a replay without it skipped the
        # flapping check).
        function_ledger = next(s for s in role_statements() if s.get("Sid") == "ReapplicationLedger")
        self.assertEqual(set(ledger["Action"]), set(function_ledger["Action"]))
        self.assertEqual(ledger["Resource"], {"GetAtt": "ReapplicationLedger.Arn"})
        self.assertEqual(
            statement["Resource"],
            [
                {"GetAtt": "FailedEventsQueue.Arn"},
                {"GetAtt": "EventsDeadLetterQueue.Arn"},
                {"GetAtt": "SweepDeadLetterQueue.Arn"},
                {"GetAtt": "EventsQueueDeadLetterQueue.Arn"},
                {"GetAtt": "RecheckDeadLetterQueue.Arn"},
            ],
        )
        # `enforcer sweep --enqueue` (and a replayed place's follow-up) send to the sweep queue
        # through the library's queue adapter, and only there.
        self.assertEqual(
            (enqueue["Effect"], enqueue["Action"], enqueue["Resource"]),
            ("Allow", "sqs:SendMessage", {"GetAtt": "SweepQueue.Arn"}),
        )

    # What the role allows beyond the calls in the code, each for a reason the README gives (its "What the stack creates"):
    # AWS makes these calls with the function's credentials on its behalf.
    ON_BEHALF = {
        "kms:GenerateDataKey": "Kinesis checks the mandated key with the caller's identity",
        "kms:CreateGrant": "Firehose creates its grant on the key with the caller's credentials",
        "sqs:SendMessage": "Lambda delivers failed events to the on-failure queue as the function",
        "sqs:ReceiveMessage": "the sweep queue's event source mapping polls as the function",
        "sqs:DeleteMessage": "the sweep queue's event source mapping deletes what succeeded",
        "sqs:GetQueueAttributes": "the sweep queue's event source mapping reads the queue",
        "logs:CreateLogStream": "Lambda writes the function's logs as the function",
        "logs:PutLogEvents": "Lambda writes the function's logs as the function",
    }
    # Calls IAM never denies: sts:GetCallerIdentity needs no permission (IAM User Guide).
    NEED_NO_PERMISSION = {"sts:GetCallerIdentity"}

    def test_the_role_allows_exactly_the_calls_of_the_code_and_those_made_on_its_behalf(self):
        allowed = {a for s in role_statements() if s["Effect"] == "Allow" for a in as_list(s["Action"])}
        missing = code_operations() - allowed - self.NEED_NO_PERMISSION
        self.assertFalse(missing, f"the role does not allow {missing}")
        extra = allowed - code_operations() - set(self.ON_BEHALF)
        self.assertFalse(extra, f"the role allows {extra}, which nothing calls")

    # IAM has no resource-level permissions for these listings: "*" is the only resource they take.
    # The same for Organizations' two reads (Service Authorization Reference, "Actions, resources,
    # and condition keys for AWS Organizations": no resource type for ListAccounts or
    # DescribeOrganization).
    UNSCOPABLE = {
        "kinesis:ListStreams",
        "firehose:ListDeliveryStreams",
        "organizations:ListAccounts",
        "organizations:DescribeOrganization",
    }

    def test_no_wildcard_action_or_resource(self):
        for statement in role_statements():
            actions = as_list(statement["Action"])
            for action in actions:
                self.assertNotIn("*", action, statement)
            for resource in as_list(statement["Resource"]):
                if resource == "*":
                    self.assertLessEqual(set(actions), self.UNSCOPABLE, statement)
                if isinstance(resource, dict) and "Sub" in resource:
                    # ARNs are built from the stack's own partition, region and account.
                    self.assertIn("${AWS::Partition}", resource["Sub"])

    # The member role does what the function does in its own account, minus what only the
    # function's own stack needs (its queue, its logs, its ledger, which the function writes with
    # its own credentials whatever account the stream is in).
    MEMBER_ON_BEHALF = {"kms:GenerateDataKey", "kms:CreateGrant"}
    OWN_STACK_ONLY = {
        "dynamodb:Query",
        "dynamodb:PutItem",
        # The central function's own reach: assuming the member roles, asking who it is, and
        # reading the organisation happen with its own credentials, in its own account.
        "sts:AssumeRole",
        "sts:GetCallerIdentity",
        "organizations:ListAccounts",
        "organizations:DescribeOrganization",
        # The sweep queue is the central stack's own.
        "sqs:SendMessage",
    }

    def test_the_member_role_allows_exactly_the_calls_of_the_code(self):
        allowed = {a for s in member_statements() if s["Effect"] == "Allow" for a in as_list(s["Action"])}
        self.assertEqual(allowed, (code_operations() - self.OWN_STACK_ONLY) | self.MEMBER_ON_BEHALF)
        for statement in member_statements():
            for action in as_list(statement["Action"]):
                self.assertNotIn("*", action, statement)
            for resource in as_list(statement["Resource"]):
                if resource == "*":
                    self.assertLessEqual(set(as_list(statement["Action"])), self.UNSCOPABLE, statement)
                else:
                    # This account's resources only (any region: IAM is global), or the shared key.
                    self.assertIn("${AWS::AccountId}", json.dumps(resource), statement)

    def test_the_member_role_trusts_only_the_central_function_and_an_optional_operator_inside_the_organisation(self):
        doc = member()
        role = doc["Resources"]["MemberRole"]
        self.assertEqual(role["Condition"], "CreateRole")
        trust, optional = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        # The operator's statement exists only when OperatorPrincipalArn is given.
        condition, operator, absent = optional["If"]
        self.assertEqual((condition, absent), ("HasOperator", {"Ref": "AWS::NoValue"}))
        self.assertEqual(
            doc["Conditions"]["HasOperator"],
            {"Not": [{"Equals": [{"Ref": "OperatorPrincipalArn"}, ""]}]},
        )
        self.assertEqual(doc["Parameters"]["OperatorPrincipalArn"]["Default"], "")
        for statement, principal in ((trust, "EnforcerRoleArn"), (operator, "OperatorPrincipalArn")):
            self.assertEqual(statement["Principal"], {"AWS": {"Ref": principal}})
            self.assertEqual(statement["Action"], "sts:AssumeRole")
            # Both under the same conditions: inside the organisation, with the external id.
            condition, with_id, without_id = statement["Condition"]["If"]
            self.assertEqual(condition, "HasExternalId")
            for branch in (with_id, without_id):
                self.assertEqual(branch["StringEquals"]["aws:PrincipalOrgID"], {"Ref": "OrganizationId"})
            self.assertEqual(with_id["StringEquals"]["sts:ExternalId"], {"Ref": "MemberExternalId"})

    def test_the_break_glass_role_exists_only_when_trusted_from_another_account_with_mfa(self):
        """Finding 2 of the security review: a break-glass path that exists. Judged by the IAM
        condition evaluator of tests/guardrails on the resolved trust policy."""
        doc = member()
        security = "arn:aws:iam::999988887777:role/StreamSecurityIncident"
        values = {"BreakGlassTrustedRoleArn": security, "OrganizationId": "o-a1b2c3d4e5"}
        conditions = cfn.conditions_of(doc, values)
        self.assertTrue(conditions["CreateBreakGlass"])
        self.assertFalse(cfn.conditions_of(doc, {})["CreateBreakGlass"], "no role by default")
        self.assertFalse(cfn.conditions_of(doc, {**values, "AWS::Region": "eu-west-1"})["CreateBreakGlass"], "IAM is global: once")
        role = cfn.Resolver(doc, conditions, values).resolve(doc["Resources"]["BreakGlassRole"])
        (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        self.assertEqual(trust["Principal"], {"AWS": security})

        def may_assume(principal_account, mfa, org="o-a1b2c3d4e5"):
            context = {"aws:PrincipalAccount": principal_account, "aws:PrincipalOrgID": org}
            if mfa is not None:
                context["aws:MultiFactorAuthPresent"] = mfa
            return all(
                scp.condition_holds(operator, key, wanted, context)
                for operator, keys in trust["Condition"].items()
                for key, wanted in keys.items()
            )

        self.assertTrue(may_assume("999988887777", "true"))
        self.assertFalse(may_assume("999988887777", "false"), "MFA required")
        self.assertFalse(may_assume("999988887777", None), "MFA required")
        self.assertFalse(may_assume("999988887777", "true", org="o-zzzzzzzzzz"))
        self.assertFalse(may_assume("123456789012", "true"), "never the account's own principals")
        # It may stop encryption and read, nothing else; guardrails.yaml excepts it by its name.
        actions = {
            action
            for statement in role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
            for action in (statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]])
        }
        self.assertEqual(actions, {
            "kinesis:ListStreams", "firehose:ListDeliveryStreams", "kinesis:DescribeStreamSummary",
            "kinesis:StopStreamEncryption", "firehose:DescribeDeliveryStream", "firehose:StopDeliveryStreamEncryption",
        })
        # An Identity Center session carries no aws:MultiFactorAuthPresent: the condition can go.
        without_mfa = {**values, "BreakGlassRequiresMfa": "false"}
        role = cfn.Resolver(doc, cfn.conditions_of(doc, without_mfa), without_mfa).resolve(doc["Resources"]["BreakGlassRole"])
        (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        self.assertNotIn("Bool", trust["Condition"])
        self.assertTrue(may_assume("999988887777", None))
        self.assertFalse(may_assume("123456789012", None), "never the account's own principals")
        self.assertEqual(doc["Parameters"]["BreakGlassRequiresMfa"]["Default"], "true")
        guardrails = template("guardrails.yaml")["Parameters"]["BreakGlassRoleName"]["Default"]
        self.assertEqual(doc["Parameters"]["BreakGlassRoleName"]["Default"], guardrails)

    def test_central_mode_assumes_only_member_roles_inside_the_organisation(self):
        resources = template()["Resources"]
        policy = resources["AssumeMemberRolesPolicy"]
        self.assertEqual(policy["Condition"], "IsCentral")
        statement, organisation = policy["Properties"]["PolicyDocument"]["Statement"]
        # Reading the organisation: these calls take no resource but "*".
        self.assertEqual(
            (organisation["Action"], organisation["Resource"]),
            (["organizations:DescribeOrganization", "organizations:ListAccounts"], "*"),
        )
        self.assertEqual(statement["Action"], "sts:AssumeRole")
        self.assertIn("${MemberRoleName}", statement["Resource"]["Sub"])
        self.assertEqual(statement["Condition"]["StringEquals"]["aws:ResourceOrgID"], {"Ref": "OrganizationId"})
        bus = resources["CentralEventBusPolicy"]["Properties"]["Statement"]
        self.assertEqual(bus["Action"], "events:PutEvents")
        self.assertEqual(bus["Condition"]["StringEquals"]["aws:PrincipalOrgID"], {"Ref": "OrganizationId"})
        env = resources["EnforcerFunction"]["Properties"]["Environment"]["Variables"]
        for name in ("TARGET_ROLE_NAME", "TARGET_EXTERNAL_ID", "ALLOWED_ACCOUNTS", "ALLOWED_REGIONS"):
            self.assertEqual(env[name]["If"][0], "IsCentral", name)
            self.assertEqual(env[name]["If"][2], "", name)

    def test_the_forwarding_role_can_be_assumed_only_for_the_forwarding_rule(self):
        resources = member()["Resources"]
        (trust,) = resources["ForwardRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        self.assertEqual(trust["Principal"], {"Service": "events.amazonaws.com"})
        self.assertEqual(trust["Condition"]["StringEquals"]["aws:SourceAccount"], {"Ref": "AWS::AccountId"})
        rule = "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:rule/${ForwardRuleName}"
        self.assertEqual(trust["Condition"]["ArnEquals"]["aws:SourceArn"], {"Sub": rule})
        # The rule carries exactly that name.
        self.assertEqual(resources["ForwardStreamCalls"]["Properties"]["Name"], {"Ref": "ForwardRuleName"})

    def test_kms_is_used_only_through_the_stream_services_endpoints_in_every_partition(self):
        def via(statement):
            text = json.dumps(statement.get("Condition", {}))
            return re.findall(r'"kms:ViaService": \{"Sub": "([^"]+)"\}', text)

        for name, statements in (("template.yaml", role_statements()), ("member.yaml", member_statements())):
            by_sid = {s["Sid"]: s for s in statements}
            for sid, service in (("KinesisUsesMandatedKey", "kinesis"), ("FirehoseGrantOnMandatedKey", "firehose")):
                endpoints = via(by_sid[sid])
                self.assertTrue(endpoints, f"{name} {sid} has no kms:ViaService")
                for endpoint in endpoints:
                    # amazonaws.com, amazonaws.com.cn, ...: the partition's own domain.
                    self.assertRegex(endpoint, rf"^{service}\.(\$\{{AWS::Region\}}|\*)\.\$\{{AWS::URLSuffix\}}$", f"{name} {sid}")
        # No service domain is written out anywhere a condition compares it.
        for name in ("template.yaml", "member.yaml"):
            text = (ROOT / name).read_text()
            self.assertNotRegex(text, r"ViaService:.*amazonaws\.com", name)

    def test_the_forwarding_rule_targets_the_central_bus_with_a_role_allowed_only_that(self):
        resources = member()["Resources"]
        (target,) = resources["ForwardStreamCalls"]["Properties"]["Targets"]
        bus = "arn:${AWS::Partition}:events:${CentralRegion}:${CentralAccountId}:event-bus/${CentralEventBusName}"
        self.assertEqual(target["Arn"], {"Sub": bus})
        self.assertEqual(target["RoleArn"], {"GetAtt": "ForwardRole.Arn"})
        self.assertIn("Arn", target["DeadLetterConfig"])
        (statement,) = role_statements(member(), "ForwardRole")
        self.assertEqual((statement["Action"], statement["Resource"]), ("events:PutEvents", {"Sub": bus}))

    def test_the_function_is_given_the_key_arn_its_kms_permissions_are_scoped_to(self):
        env = template()["Resources"]["EnforcerFunction"]["Properties"]["Environment"]["Variables"]
        self.assertEqual(env["MANDATED_KMS_KEY_ARN"], {"Ref": "MandatedKmsKeyArn"})
        self.assertEqual(env["MANDATED_KMS_KEYS"], {"Ref": "MandatedKmsKeys"})
        source = (ROOT / "src" / "config.rs").read_text()
        for name in ("MANDATED_KMS_KEY_ARN", "MANDATED_KMS_KEYS"):
            self.assertIn(f'"{name}"', source)
        kms = [s for s in role_statements() if any(a.startswith("kms:") for a in as_list(s["Action"]))]
        self.assertEqual(len(kms), 3)
        for statement in kms:
            self.assertEqual(statement["Resource"], {"Ref": "MandatedKmsKeyArn"}, statement)
        # The member role: every listed key ARN (one per region), or the alias's keys.
        for statement in member_statements():
            if any(a.startswith("kms:") for a in as_list(statement["Action"])):
                shared = statement["Resource"]["If"][1]
                self.assertEqual(shared, {"Split": [",", {"Ref": "MandatedKmsKeyArn"}]}, statement)

    def test_the_function_uses_this_role_and_no_managed_policy(self):
        function = template()["Resources"]["EnforcerFunction"]["Properties"]
        self.assertEqual(function["Role"], {"GetAtt": "EnforcerRole.Arn"})
        self.assertNotIn("Policies", function)


if __name__ == "__main__":
    unittest.main()
