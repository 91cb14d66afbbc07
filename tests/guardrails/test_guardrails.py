"""guardrails.yaml's service control policy, held to its intent.

The policy is the template's own, its conditions decided from the parameters and its intrinsics
resolved as CloudFormation would (tests/policies/cfn.py). Each API call below is the set of
authorizations AWS makes for it, from the Service Authorization Reference (SAR):

- Kinesis, https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonkinesisdatastreams.html:
  CreateStream and AddTagsToStream and TagResource take aws:TagKeys, aws:RequestTag/${TagKey}
  and aws:ResourceTag/${TagKey}; RemoveTagsFromStream and UntagResource aws:TagKeys and
  aws:ResourceTag/${TagKey}; StartStreamEncryption and StopStreamEncryption name the stream and
  the key. The operation table maps CreateStream to kinesis:CreateStream and
  kinesis:AddTagsToStream.
- Firehose, .../list_amazonkinesisfirehose.html: CreateDeliveryStream and TagDeliveryStream take
  aws:RequestTag/${TagKey} and aws:TagKeys; UntagDeliveryStream aws:TagKeys. "If you specify tags
  in the CreateDeliveryStream action, Amazon Data Firehose performs an additional authorization
  on the firehose:TagDeliveryStream action" (Firehose Developer Guide, tagging basics).
- EventBridge, .../list_amazoneventbridge.html: the rule actions name
  arn:${Partition}:events:${Region}:${Account}:rule/${RuleName}.
- KMS, .../list_awskeymanagementservice.html: CreateAlias, UpdateAlias and DeleteAlias name the
  alias and the key(s); kms:ResourceAliases is the key's aliases on key operations.

Run by scripts/test with the .tools/venv interpreter (PyYAML)."""

import json
import pathlib
import re
import sys
import unittest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "policies"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from cfn import organization_policies  # noqa: E402
from scp import condition_holds, denying  # noqa: E402

ACCOUNT = "111122223333"
REGION = "eu-west-1"
TAG = "enforcer-exempt"
ALIAS = "alias/org-streams"


def role(name):
    return f"arn:aws:iam::{ACCOUNT}:role/{name}"


DEVELOPER = role("Developer")
TERRAFORM = role("TerraformApply")
SECURITY = role("StreamSecurity")
BREAK_GLASS = role("BreakGlass")
# member.yaml's own break-glass role, excepted by default.
BREAK_GLASS_ROLE = role("StreamEncryptionBreakGlass")
STACKSETS = role("stacksets-exec-4f3c1e6f0b2a4c6d9e8f7a6b5c4d3e2f")
ENFORCER = role("StreamEncryptionEnforcerMember")
ROOT_USER = f"arn:aws:iam::{ACCOUNT}:root"

STREAM = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/orders"
DELIVERY = f"arn:aws:firehose:{REGION}:{ACCOUNT}:deliverystream/orders"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
OTHER_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0987dcba-09fe-87dc-65ba-ab0987654321"

# The parameters of a full deployment; a case's `off` switches one guardrail off.
PARAMETERS = {
    "TargetIds": ["ou-ab12-cdef3456"],
    "EncryptionStaysOn": "true",
    "BreakGlassPrincipalArns": ["arn:aws:iam::*:role/BreakGlass"],
    "ExemptionIsPrivileged": "true",
    "ExemptTagKey": TAG,
    "SecurityPrincipalArns": ["arn:aws:iam::*:role/StreamSecurity"],
    "DeploymentIsProtected": "true",
    "MandatedKeyAlias": ALIAS,
    "ProtectedIdentityProviderArns": ["arn:aws:iam::*:saml-provider/Okta"],
}


def policies(**overrides):
    return dict(organization_policies("guardrails.yaml", {**PARAMETERS, **overrides}))


def policy(**overrides):
    """The member accounts' policy."""
    return policies(**overrides)["Guardrails"]


def tags_context(tags):
    context = {"aws:TagKeys": list(tags)}
    context.update({f"aws:RequestTag/{k}": v for k, v in tags.items()})
    return context


# API calls as the authorizations AWS makes for them: (action, resources, context) each.
def create_stream(tags=None):
    if not tags:
        return [("kinesis:CreateStream", [STREAM], {})]
    return [("kinesis:CreateStream", [STREAM], tags_context(tags)),
            ("kinesis:AddTagsToStream", [STREAM], tags_context(tags))]


def add_tags_to_stream(tags):
    return [("kinesis:AddTagsToStream", [STREAM], tags_context(tags))]


def tag_resource(tags):
    return [("kinesis:TagResource", [STREAM], tags_context(tags))]


def remove_tags_from_stream(keys):
    return [("kinesis:RemoveTagsFromStream", [STREAM], {"aws:TagKeys": list(keys)})]


def untag_resource(keys):
    return [("kinesis:UntagResource", [STREAM], {"aws:TagKeys": list(keys)})]


def create_delivery_stream(tags=None):
    if not tags:
        return [("firehose:CreateDeliveryStream", [DELIVERY], {})]
    return [("firehose:CreateDeliveryStream", [DELIVERY], tags_context(tags)),
            ("firehose:TagDeliveryStream", [DELIVERY], tags_context(tags))]


def tag_delivery_stream(tags):
    return [("firehose:TagDeliveryStream", [DELIVERY], tags_context(tags))]


def untag_delivery_stream(keys):
    return [("firehose:UntagDeliveryStream", [DELIVERY], {"aws:TagKeys": list(keys)})]


def stop_stream_encryption():
    return [("kinesis:StopStreamEncryption", [STREAM, KEY], {})]


def start_stream_encryption():
    return [("kinesis:StartStreamEncryption", [STREAM, KEY], {})]


def stop_delivery_stream_encryption():
    return [("firehose:StopDeliveryStreamEncryption", [DELIVERY], {})]


def start_delivery_stream_encryption():
    return [("firehose:StartDeliveryStreamEncryption", [DELIVERY], {})]


def iam(action, name):
    return [(f"iam:{action}", [role(name)], {})]


def rule(action, name, region=REGION):
    return [(f"events:{action}", [f"arn:aws:events:{region}:{ACCOUNT}:rule/{name}"], {})]


def alias(action, name, keys=(KEY,)):
    return [(f"kms:{action}", [f"arn:aws:kms:{REGION}:{ACCOUNT}:{name}", *keys], {})]


def key(action, aliases, arn=KEY, tagged=False):
    context = {"kms:ResourceAliases": list(aliases)} if aliases else {}
    if tagged:
        context[f"aws:ResourceTag/{KEY_TAG}"] = "true"
    return [(f"kms:{action}", [arn], context)]


KEY_TAG = "stream-encryption-enforcer:mandated-key"


def key_tags(action, keys, arn=OTHER_KEY):
    return [(f"kms:{action}", [arn], {"aws:TagKeys": list(keys)})]


def assume(name):
    return [("sts:AssumeRole", [role(name)], {})]


def provider(action, name):
    return [(f"iam:{action}", [f"arn:aws:iam::{ACCOUNT}:{name}"], {})]


FORWARD_ROLE = f"stream-encryption-enforcer-forward-{REGION}"

# (principal, call, the Sid that denies it or None, the guardrail switched off for this case)
CASES = [
    # 1. Encryption stays on.
    (DEVELOPER, stop_stream_encryption(), "EncryptionStaysOn"),
    (TERRAFORM, stop_stream_encryption(), "EncryptionStaysOn"),
    (ROOT_USER, stop_stream_encryption(), "EncryptionStaysOn"),
    (DEVELOPER, stop_delivery_stream_encryption(), "EncryptionStaysOn"),
    (BREAK_GLASS, stop_stream_encryption(), None),
    (BREAK_GLASS, stop_delivery_stream_encryption(), None),
    (BREAK_GLASS_ROLE, stop_stream_encryption(), None),
    (BREAK_GLASS_ROLE, stop_delivery_stream_encryption(), None),
    # What the enforcer and the infrastructure tools do to encrypt is never denied.
    (ENFORCER, start_stream_encryption(), None),
    (ENFORCER, start_delivery_stream_encryption(), None),
    (TERRAFORM, start_stream_encryption(), None),
    # 2. The exemption tag is privileged: set at creation, added, changed, removed, either API.
    (DEVELOPER, create_stream({TAG: "ticket-42"}), "ExemptionTagIsPrivileged"),
    (TERRAFORM, create_stream({"team": "a", TAG: ""}), "ExemptionTagIsPrivileged"),
    (DEVELOPER, add_tags_to_stream({TAG: "ticket-42"}), "ExemptionTagIsPrivileged"),
    (DEVELOPER, tag_resource({TAG: "x"}), "ExemptionTagIsPrivileged"),
    (DEVELOPER, remove_tags_from_stream([TAG]), "ExemptionTagIsPrivileged"),
    (DEVELOPER, remove_tags_from_stream(["team", TAG]), "ExemptionTagIsPrivileged"),
    (DEVELOPER, untag_resource([TAG]), "ExemptionTagIsPrivileged"),
    (DEVELOPER, create_delivery_stream({TAG: "x"}), "ExemptionTagIsPrivileged"),
    (DEVELOPER, tag_delivery_stream({TAG: "x"}), "ExemptionTagIsPrivileged"),
    (DEVELOPER, untag_delivery_stream([TAG]), "ExemptionTagIsPrivileged"),
    # Other tags, and no tags, stay free; a key that differs in case exempts nothing (the
    # enforcer compares exactly), so it is not privileged either.
    (DEVELOPER, create_stream(), None),
    (DEVELOPER, create_stream({"team": "a"}), None),
    (DEVELOPER, add_tags_to_stream({"team": "a"}), None),
    (DEVELOPER, add_tags_to_stream({TAG.upper(): "x"}), None),
    (DEVELOPER, remove_tags_from_stream(["team"]), None),
    (DEVELOPER, untag_resource(["team"]), None),
    (DEVELOPER, create_delivery_stream(), None),
    (DEVELOPER, create_delivery_stream({"team": "a"}), None),
    (DEVELOPER, untag_delivery_stream(["team"]), None),
    # The security principals may.
    (SECURITY, create_stream({TAG: "ticket-42"}), None),
    (SECURITY, remove_tags_from_stream([TAG]), None),
    (SECURITY, untag_delivery_stream([TAG]), None),
    (SECURITY, tag_resource({TAG: "x"}), None),
    # 3. The deployment is protected.
    (DEVELOPER, iam("UpdateAssumeRolePolicy", "StreamEncryptionEnforcerMember"), "RolesAreProtected"),
    (DEVELOPER, iam("PutRolePolicy", "StreamEncryptionEnforcerMember"), "RolesAreProtected"),
    (DEVELOPER, iam("DeleteRole", "StreamEncryptionEnforcerMember"), "RolesAreProtected"),
    (DEVELOPER, iam("AttachRolePolicy", FORWARD_ROLE), "RolesAreProtected"),
    (ROOT_USER, iam("DetachRolePolicy", FORWARD_ROLE), "RolesAreProtected"),
    (DEVELOPER, iam("CreateRole", "StreamEncryptionEnforcerMember"), "RolesAreProtected"),
    (DEVELOPER, iam("GetRole", "StreamEncryptionEnforcerMember"), None),
    (DEVELOPER, iam("PutRolePolicy", "Developer"), None),
    (STACKSETS, iam("UpdateAssumeRolePolicy", "StreamEncryptionEnforcerMember"), None),
    (STACKSETS, iam("DeleteRole", FORWARD_ROLE), None),
    (DEVELOPER, rule("DeleteRule", "stream-encryption-enforcer-forward"), "DeploymentIsProtected"),
    (DEVELOPER, rule("DisableRule", "stream-encryption-enforcer-forward", "ap-southeast-2"), "DeploymentIsProtected"),
    (DEVELOPER, rule("PutTargets", "stream-encryption-enforcer-forward"), "DeploymentIsProtected"),
    (DEVELOPER, rule("RemoveTargets", "stream-encryption-enforcer-forward"), "DeploymentIsProtected"),
    (DEVELOPER, rule("PutRule", "stream-encryption-enforcer-forward"), "DeploymentIsProtected"),
    (DEVELOPER, rule("DeleteRule", "orders-nightly"), None),
    (STACKSETS, rule("PutTargets", "stream-encryption-enforcer-forward"), None),
    (DEVELOPER, alias("UpdateAlias", ALIAS, (KEY, OTHER_KEY)), "DeploymentIsProtected"),
    (DEVELOPER, alias("DeleteAlias", ALIAS), "DeploymentIsProtected"),
    (DEVELOPER, alias("CreateAlias", ALIAS, (OTHER_KEY,)), "DeploymentIsProtected"),
    (DEVELOPER, alias("CreateAlias", "alias/team-a", (OTHER_KEY,)), None),
    (STACKSETS, alias("CreateAlias", ALIAS), None),
    (DEVELOPER, key("ScheduleKeyDeletion", [ALIAS]), "MandatedKeyIsProtected"),
    (DEVELOPER, key("DisableKey", ["alias/legacy", ALIAS]), "MandatedKeyIsProtected"),
    (DEVELOPER, key("PutKeyPolicy", [ALIAS]), "MandatedKeyIsProtected"),
    (DEVELOPER, key("ScheduleKeyDeletion", ["alias/team-a"], OTHER_KEY), None),
    (DEVELOPER, key("ScheduleKeyDeletion", [], OTHER_KEY), None),
    (STACKSETS, key("ScheduleKeyDeletion", [ALIAS]), None),
    (DEVELOPER, key("DeleteImportedKeyMaterial", [ALIAS]), "MandatedKeyIsProtected"),
    (DEVELOPER, key("UpdatePrimaryRegion", [ALIAS]), "MandatedKeyIsProtected"),
    # A key tagged as mandated is protected whatever its aliases: the alias moved to a new key,
    # this one is retired and still decrypts what was written under it.
    (DEVELOPER, key("ScheduleKeyDeletion", [], OTHER_KEY, tagged=True), "TaggedKeyIsProtected"),
    (DEVELOPER, key("DisableKey", ["alias/org-streams-2025"], OTHER_KEY, tagged=True), "TaggedKeyIsProtected"),
    (DEVELOPER, key("DeleteImportedKeyMaterial", [], OTHER_KEY, tagged=True), "TaggedKeyIsProtected"),
    (STACKSETS, key("ScheduleKeyDeletion", [], OTHER_KEY, tagged=True), None),
    # Nobody but a deployer may remove that tag (or any tag) from a protected key; tagging
    # another key only protects it too.
    (DEVELOPER, [("kms:UntagResource", [KEY], {"aws:TagKeys": [KEY_TAG], f"aws:ResourceTag/{KEY_TAG}": "true"})], "TaggedKeyIsProtected"),
    (DEVELOPER, key_tags("UntagResource", ["team"]), None),
    (DEVELOPER, key_tags("TagResource", ["team", KEY_TAG]), None),
    (STACKSETS, [("kms:UntagResource", [KEY], {"aws:TagKeys": [KEY_TAG], f"aws:ResourceTag/{KEY_TAG}": "true"})], None),
    # The excepted roles: nobody but the deployers may create one, re-trust it, give it
    # permissions or pass it to a service, or the exception would be anyone's.
    (DEVELOPER, iam("CreateRole", "BreakGlass"), "RolesAreProtected"),
    (ROOT_USER, iam("UpdateAssumeRolePolicy", "BreakGlass"), "RolesAreProtected"),
    (DEVELOPER, iam("PassRole", "BreakGlass"), "RolesAreProtected"),
    (DEVELOPER, iam("CreateRole", "StreamSecurity"), "RolesAreProtected"),
    (DEVELOPER, iam("AttachRolePolicy", "StreamSecurity"), "RolesAreProtected"),
    (DEVELOPER, iam("CreateRole", "stacksets-exec-mine"), "RolesAreProtected"),
    (BREAK_GLASS, iam("PutRolePolicy", "stacksets-exec-4f3c1e6f0b2a4c6d9e8f7a6b5c4d3e2f"), "RolesAreProtected"),
    (STACKSETS, iam("CreateRole", "BreakGlass"), None),
    (STACKSETS, iam("UpdateAssumeRolePolicy", "StreamSecurity"), None),
    (DEVELOPER, iam("CreateRole", "BreakGlassReader"), None),
    (DEVELOPER, iam("CreateRole", "StreamEncryptionBreakGlass"), "RolesAreProtected"),
    (STACKSETS, iam("CreateRole", "StreamEncryptionBreakGlass"), None),
    # The identity providers an excepted role may trust: IAM Identity Center's always, the
    # others when listed (security review, finding 3; the test's full deployment lists Okta).
    (DEVELOPER, provider("UpdateSAMLProvider", "saml-provider/AWSSSO_0a1b2c3d_DO_NOT_DELETE"), "RolesAreProtected"),
    (DEVELOPER, provider("UpdateSAMLProvider", "saml-provider/Okta"), "RolesAreProtected"),
    (STACKSETS, provider("UpdateSAMLProvider", "saml-provider/Okta"), None),
    # Others stay free: a team's own federation, its certificate rotation, its CI's OIDC.
    (DEVELOPER, provider("UpdateSAMLProvider", "saml-provider/TeamAdfs"), None),
    (DEVELOPER, provider("CreateOpenIDConnectProvider", "oidc-provider/token.actions.githubusercontent.com"), None),
    # Nobody in a member account assumes an excepted role, whatever its trust policy says.
    (DEVELOPER, assume("BreakGlass"), "ExceptedRolesAreNotAssumed"),
    (ROOT_USER, assume("StreamEncryptionBreakGlass"), "ExceptedRolesAreNotAssumed"),
    (DEVELOPER, assume("StreamSecurity"), "ExceptedRolesAreNotAssumed"),
    (DEVELOPER, assume("stacksets-exec-4f3c1e6f0b2a4c6d9e8f7a6b5c4d3e2f"), "ExceptedRolesAreNotAssumed"),
    (DEVELOPER, assume("TerraformApply"), None),
    (DEVELOPER, assume("StreamEncryptionEnforcerMember"), None),
]

# Which guardrail each statement belongs to (its switch); for RolesAreProtected, which guardrail
# each role is protected for (the deployers' roles are protected while any guardrail is on).
SWITCH = {
    "EncryptionStaysOn": "EncryptionStaysOn",
    "ExemptionTagIsPrivileged": "ExemptionIsPrivileged",
    "DeploymentIsProtected": "DeploymentIsProtected",
    "MandatedKeyIsProtected": "DeploymentIsProtected",
    "TaggedKeyIsProtected": "DeploymentIsProtected",
}
ROLE_SWITCH = {
    "BreakGlass": "EncryptionStaysOn",
    "StreamEncryptionBreakGlass": "EncryptionStaysOn",
    "StreamSecurity": "ExemptionIsPrivileged",
    "StreamEncryptionEnforcerMember": "DeploymentIsProtected",
    FORWARD_ROLE: "DeploymentIsProtected",
}


def switch_of(call, sid):
    if sid not in ("RolesAreProtected", "ExceptedRolesAreNotAssumed"):
        return SWITCH[sid]
    name = call[0][1][0].rsplit("/", 1)[-1]
    return ROLE_SWITCH.get(name)


# Each action's own condition keys in the SAR (the pages above); global keys such as
# aws:PrincipalArn apply to every action. A statement may only use keys its actions have, or the
# condition can never hold for them.
SAR_KEYS = {
    "kinesis:CreateStream": {"aws:TagKeys", "aws:RequestTag/*", "aws:ResourceTag/*"},
    "kinesis:AddTagsToStream": {"aws:TagKeys", "aws:RequestTag/*", "aws:ResourceTag/*"},
    "kinesis:TagResource": {"aws:TagKeys", "aws:RequestTag/*", "aws:ResourceTag/*"},
    "kinesis:RemoveTagsFromStream": {"aws:TagKeys", "aws:ResourceTag/*"},
    "kinesis:UntagResource": {"aws:TagKeys", "aws:ResourceTag/*"},
    "firehose:CreateDeliveryStream": {"aws:TagKeys", "aws:RequestTag/*"},
    "firehose:TagDeliveryStream": {"aws:TagKeys", "aws:RequestTag/*"},
    "firehose:UntagDeliveryStream": {"aws:TagKeys"},
    # On the key resource type, which these actions name (KMS, .../list_awskeymanagementservice.html).
    "kms:DisableKey": {"kms:ResourceAliases", "aws:ResourceTag/*"},
    "kms:PutKeyPolicy": {"kms:ResourceAliases", "aws:ResourceTag/*"},
    "kms:ScheduleKeyDeletion": {"kms:ResourceAliases", "aws:ResourceTag/*"},
    "kms:DeleteImportedKeyMaterial": {"kms:ResourceAliases", "aws:ResourceTag/*"},
    "kms:UpdatePrimaryRegion": {"kms:ResourceAliases", "aws:ResourceTag/*"},
    "kms:TagResource": {"aws:TagKeys", "aws:RequestTag/*", "aws:ResourceTag/*", "kms:ResourceAliases"},
    "kms:UntagResource": {"aws:TagKeys", "aws:ResourceTag/*", "kms:ResourceAliases"},
}
GLOBAL_KEYS = {"aws:PrincipalArn"}
SCP_LIMIT = 5120


def minified(content):
    return json.dumps(content, separators=(",", ":"))


class TheEvaluator(unittest.TestCase):
    """The evaluator against the IAM User Guide's rules, before it judges the guardrails."""

    def test_set_operators_on_a_missing_key(self):
        # "ForAnyValue ... For no matching key or a null dataset, the condition returns false";
        # ForAllValues "also returns true if there are no keys in the request".
        self.assertFalse(condition_holds("ForAnyValue:StringEquals", "aws:TagKeys", ["a"], {}))
        self.assertTrue(condition_holds("ForAllValues:StringEquals", "aws:TagKeys", ["a"], {}))

    def test_set_operators_on_values(self):
        context = {"aws:TagKeys": ["team", "a"]}
        self.assertTrue(condition_holds("ForAnyValue:StringEquals", "aws:TagKeys", ["a"], context))
        self.assertFalse(condition_holds("ForAllValues:StringEquals", "aws:TagKeys", ["a"], context))
        self.assertTrue(condition_holds("ForAllValues:StringEquals", "aws:TagKeys", ["a", "team"], context))
        self.assertFalse(condition_holds("ForAnyValue:StringEquals", "aws:TagKeys", ["A"], context))
        self.assertTrue(condition_holds("ForAnyValue:StringEqualsIgnoreCase", "aws:TagKeys", ["A"], context))

    def test_negated_operators_hold_on_a_missing_key_and_values_are_ored(self):
        self.assertTrue(condition_holds("ArnNotLike", "aws:PrincipalArn", ["arn:aws:iam::*:role/X"], {}))
        context = {"aws:PrincipalArn": role("X")}
        self.assertFalse(condition_holds("ArnNotLike", "aws:PrincipalArn", ["arn:aws:iam::*:role/Y", "arn:aws:iam::*:role/X"], context))
        self.assertTrue(condition_holds("ArnNotLike", "aws:PrincipalArn", ["arn:aws:iam::*:role/Y"], context))
        self.assertFalse(condition_holds("ArnLike", "aws:PrincipalArn", ["arn:aws:iam::*:role/Y"], {}))

    def test_null_and_key_names_without_case(self):
        context = {"aws:RequestTag/Team": "a"}
        self.assertTrue(condition_holds("Null", "aws:RequestTag/team", ["false"], context))
        self.assertFalse(condition_holds("Null", "aws:RequestTag/owner", ["false"], context))
        self.assertTrue(condition_holds("Null", "aws:RequestTag/owner", ["true"], context))

    def test_bool_is_false_on_a_missing_key(self):
        # "If the key that you specify in a policy condition is not present in the request
        # context, the values do not match" (IAM User Guide, condition operators).
        self.assertTrue(condition_holds("Bool", "aws:MultiFactorAuthPresent", ["true"], {"aws:MultiFactorAuthPresent": "true"}))
        self.assertFalse(condition_holds("Bool", "aws:MultiFactorAuthPresent", ["true"], {"aws:MultiFactorAuthPresent": "false"}))
        self.assertFalse(condition_holds("Bool", "aws:MultiFactorAuthPresent", ["true"], {}))

    def test_a_multivalued_key_needs_a_set_operator(self):
        with self.assertRaises(ValueError):
            condition_holds("StringEquals", "aws:TagKeys", ["a"], {"aws:TagKeys": ["a"]})

    def test_a_call_is_denied_when_any_of_its_authorizations_is(self):
        document = {"Statement": [{"Sid": "S", "Effect": "Deny", "Action": "kinesis:AddTagsToStream", "Resource": "*"}]}
        self.assertEqual(denying(document, create_stream({"team": "a"})), "S")
        self.assertIsNone(denying(document, create_stream()))


class Guardrails(unittest.TestCase):
    def test_every_call_is_denied_by_exactly_the_guardrail_meant_for_it(self):
        content = policy()
        failures = []
        for principal, call, sid in CASES:
            authorizations = [(a, r, {**c, "aws:PrincipalArn": principal}) for a, r, c in call]
            got = denying(content, authorizations)
            if got != sid:
                failures.append(f"{principal.rsplit('/', 1)[-1]} {call[0][0]} {call[0][2]}: {got} (want {sid})")
        self.assertFalse(failures, "\n".join(failures))
        # Every statement is exercised by some case.
        self.assertEqual({s["Sid"] for s in content["Statement"]}, {sid for _, _, sid in CASES if sid})

    def test_each_guardrail_switches_off_alone(self):
        for switch in ("EncryptionStaysOn", "ExemptionIsPrivileged", "DeploymentIsProtected"):
            content = policy(**{switch: "false"})
            for principal, call, sid in CASES:
                authorizations = [(a, r, {**c, "aws:PrincipalArn": principal}) for a, r, c in call]
                want = None if sid and switch_of(call, sid) == switch else sid
                self.assertEqual(denying(content, authorizations), want, (switch, principal, call))

    def test_without_exception_lists_nobody_in_a_member_account_may(self):
        content = policy(BreakGlassPrincipalArns=[""], SecurityPrincipalArns=[""])
        for principal, call in [(BREAK_GLASS, stop_stream_encryption()),
                                (SECURITY, remove_tags_from_stream([TAG])),
                                (SECURITY, create_delivery_stream({TAG: "x"}))]:
            authorizations = [(a, r, {**c, "aws:PrincipalArn": principal}) for a, r, c in call]
            self.assertIsNotNone(denying(content, authorizations), call)
        # And the policy has no empty pattern in it.
        self.assertNotIn('""', minified(content))

    def test_another_deployer_is_excepted_and_protected_like_the_stacksets_role(self):
        deployer = role("AWSCloudFormationStackSetExecutionRole")
        content = policy(DeploymentPrincipalArns=["arn:aws:iam::*:role/AWSCloudFormationStackSetExecutionRole"])
        for principal, call, want in [
            (deployer, iam("UpdateAssumeRolePolicy", "StreamEncryptionEnforcerMember"), None),
            (deployer, rule("DisableRule", "stream-encryption-enforcer-forward"), None),
            (deployer, iam("CreateRole", "BreakGlass"), None),
            (STACKSETS, iam("CreateRole", "BreakGlass"), None),
            (DEVELOPER, iam("CreateRole", "AWSCloudFormationStackSetExecutionRole"), "RolesAreProtected"),
            (DEVELOPER, iam("UpdateAssumeRolePolicy", "StreamEncryptionEnforcerMember"), "RolesAreProtected"),
            (DEVELOPER, stop_stream_encryption(), "EncryptionStaysOn"),
        ]:
            authorizations = [(a, r, {**c, "aws:PrincipalArn": principal}) for a, r, c in call]
            self.assertEqual(denying(content, authorizations), want, (principal, call))

    def test_the_rules_refuse_what_cannot_be_deployed(self):
        from cfn import rules_broken
        self.assertEqual(rules_broken("guardrails.yaml", {"TargetIds": ["r-ab12"]}), [])
        self.assertEqual(rules_broken("guardrails.yaml", PARAMETERS), [])
        for values, says in [
            ({"BreakGlassPrincipalArns": ["arn:aws:iam::*:role/BreakGlass", ""]}, "BreakGlassPrincipalArns has an empty element"),
            ({"DeploymentPrincipalArns": ["", "arn:aws:iam::*:role/X"]}, "DeploymentPrincipalArns has an empty element"),
            ({"ExemptionIsPrivileged": "true", "ExemptTagKey": ""}, "ExemptionIsPrivileged needs ExemptTagKey"),
            ({"EncryptionStaysOn": "false", "ExemptionIsPrivileged": "false", "DeploymentIsProtected": "false"}, "Switch on at least one guardrail"),
            ({"EncryptionStaysOn": "false", "ExemptionIsPrivileged": "false", "DeploymentIsProtected": "auto", "MandatedKeyAlias": ""}, "Switch on at least one guardrail"),
            ({"AssumingPrincipalArns": ["arn:aws:iam::*:role/Operators", ""]}, "AssumingPrincipalArns has an empty element"),
        ]:
            broken = rules_broken("guardrails.yaml", {**PARAMETERS, **values})
            self.assertTrue(any(b.startswith(says) for b in broken), (values, broken))

    def test_without_an_alias_the_kms_statements_are_absent(self):
        content = policy(MandatedKeyAlias="")
        sids = {s["Sid"] for s in content["Statement"]}
        self.assertNotIn("MandatedKeyIsProtected", sids)
        self.assertIn("DeploymentIsProtected", sids)
        self.assertIn("TaggedKeyIsProtected", sids)
        content = policy(MandatedKeyAlias="", ProtectTaggedKeys="false")
        self.assertNotIn("kms:", minified(content))

    def test_in_alias_mode_the_deployment_is_protected_unless_switched_off(self):
        # auto (the default): on exactly when an alias names the mandated key, since whoever
        # could move the alias would choose the key the enforcer applies (finding 6).
        sids = lambda content: {s["Sid"] for s in content["Statement"]}  # noqa: E731
        self.assertIn("MandatedKeyIsProtected", sids(policy(DeploymentIsProtected="auto")))
        self.assertIn("DeploymentIsProtected", sids(policy(DeploymentIsProtected="auto")))
        self.assertNotIn("DeploymentIsProtected", sids(policy(DeploymentIsProtected="auto", MandatedKeyAlias="")))
        self.assertNotIn("DeploymentIsProtected", sids(policy(DeploymentIsProtected="false")))
        from cfn import load
        self.assertEqual(load("guardrails.yaml")["Parameters"]["DeploymentIsProtected"]["Default"], "auto")

    def test_patterns_that_except_every_role_are_refused(self):
        # CloudFormation checks a parameter's AllowedPattern before anything is created; a
        # pattern must keep 4 characters in a row that are not wildcards after role/ (finding 12):
        # a path such as role/security/* is narrow, since only deployers may create roles there.
        from cfn import load
        params = load("guardrails.yaml")["Parameters"]
        for name in ("BreakGlassPrincipalArns", "SecurityPrincipalArns", "DeploymentPrincipalArns", "AssumingPrincipalArns"):
            allowed = re.compile(params[name]["AllowedPattern"])
            # Who may assume the excepted roles names one account: a role of that name in any
            # account could be created by that account's admins.
            one_account = name == "AssumingPrincipalArns"
            for pattern in ["arn:*:iam::*:role/*", "arn:aws:iam::*:role/*/*", "arn:aws:iam::*:role/a*",
                            "arn:aws:iam::*:role/*/a*/*", "arn:aws:iam::*:role/???*"]:
                with self.subTest(parameter=name, pattern=pattern):
                    self.assertIsNone(allowed.fullmatch(pattern))
            for pattern in ["", "arn:aws:iam::*:role/BreakGlass", "arn:aws:iam::123456789012:role/security/StreamSecurity",
                            "arn:aws:iam::*:role/security/*",
                            "arn:aws:iam::*:role/aws-reserved/sso.amazonaws.com/*AWSReservedSSO_BreakGlass_*"]:
                with self.subTest(parameter=name, pattern=pattern):
                    any_account = ":iam::*:" in pattern
                    self.assertEqual(allowed.fullmatch(pattern) is None, one_account and any_account)

    def test_the_operators_role_may_assume_excepted_roles_when_listed(self):
        operators = role("StreamSecurityOperators")
        content = policy(AssumingPrincipalArns=[operators])
        for principal, target, want in [
            (operators, "BreakGlass", None),
            (operators, "StreamEncryptionBreakGlass", None),
            (DEVELOPER, "BreakGlass", "ExceptedRolesAreNotAssumed"),
        ]:
            authorizations = [(a, r, {**c, "aws:PrincipalArn": principal}) for a, r, c in assume(target)]
            self.assertEqual(denying(content, authorizations), want, (principal, target))
        # A listed OIDC provider is protected like the SAML providers.
        content = policy(ProtectedIdentityProviderArns=["arn:aws:iam::*:oidc-provider/token.actions.githubusercontent.com"])
        call = provider("AddClientIDToOpenIDConnectProvider", "oidc-provider/token.actions.githubusercontent.com")
        self.assertEqual(denying(content, [(a, r, {**c, "aws:PrincipalArn": DEVELOPER}) for a, r, c in call]), "RolesAreProtected")

    def test_the_central_deployment_is_protected_by_a_policy_of_its_own(self):
        central = "999988887777"
        self.assertNotIn("CentralGuardrail", policies(CentralAccountId=""))
        both = policies(CentralAccountId=central, CentralStackName="enforcer")
        content = both["CentralGuardrail"]
        admin = f"arn:aws:iam::{central}:role/Admin"
        fn = f"arn:aws:lambda:us-east-1:{central}:function:enforcer-enforcer"
        cases = [
            (admin, [("lambda:PutFunctionConcurrency", [fn], {})], "CentralDeploymentIsProtected"),
            (admin, [("lambda:UpdateFunctionCode", [fn], {})], "CentralDeploymentIsProtected"),
            (admin, [("lambda:UpdateFunctionConfiguration", [fn + ":$LATEST"], {})], "CentralDeploymentIsProtected"),
            (admin, [("events:DisableRule", [f"arn:aws:events:us-east-1:{central}:rule/stream-encryption-enforcer/enforcer-CentralStreamCalls-1A2B"], {})], "CentralDeploymentIsProtected"),
            (admin, [("events:DisableRule", [f"arn:aws:events:us-east-1:{central}:rule/enforcer-EnforcerFunctionSweep-1A2B"], {})], "CentralDeploymentIsProtected"),
            (admin, [("events:PutPermission", [f"arn:aws:events:us-east-1:{central}:event-bus/stream-encryption-enforcer"], {})], "CentralDeploymentIsProtected"),
            (admin, [("sqs:PurgeQueue", [f"arn:aws:sqs:us-east-1:{central}:enforcer-FailedEventsQueue-1A2B"], {})], "CentralDeploymentIsProtected"),
            (admin, [("iam:PutRolePolicy", [f"arn:aws:iam::{central}:role/enforcer-EnforcerRole-1A2B"], {})], "CentralDeploymentIsProtected"),
            # A new function of theirs with EnforcerRole would act in every member account.
            (admin, [("iam:PassRole", [f"arn:aws:iam::{central}:role/enforcer-EnforcerRole-1A2B"], {})], "CentralDeploymentIsProtected"),
            (admin, [("lambda:RemovePermission", [fn], {})], "CentralDeploymentIsProtected"),
            (admin, [("cloudwatch:DisableAlarmActions", [f"arn:aws:cloudwatch:us-east-1:{central}:alarm:enforcer-NoInvocationsAlarm-1A2B"], {})], "CentralDeploymentIsProtected"),
            (admin, [("dynamodb:DeleteTable", [f"arn:aws:dynamodb:us-east-1:{central}:table/enforcer-ReapplicationLedger-1A2B"], {})], "CentralDeploymentIsProtected"),
            (admin, [("lambda:UpdateEventSourceMapping", [f"arn:aws:lambda:us-east-1:{central}:event-source-mapping:0f1e"], {"lambda:FunctionArn": fn})], "CentralEventSourcesAreProtected"),
            # Other functions, rules and roles of the account stay the admins'.
            (admin, [("lambda:PutFunctionConcurrency", [f"arn:aws:lambda:us-east-1:{central}:function:billing"], {})], None),
            (admin, [("lambda:UpdateEventSourceMapping", [f"arn:aws:lambda:us-east-1:{central}:event-source-mapping:0f1e"], {"lambda:FunctionArn": f"arn:aws:lambda:us-east-1:{central}:function:billing"})], None),
            (admin, [("iam:PutRolePolicy", [f"arn:aws:iam::{central}:role/Admin"], {})], None),
            (admin, [("lambda:GetFunctionConfiguration", [fn], {})], None),
            # The deployers may.
            (STACKSETS, [("lambda:UpdateFunctionCode", [fn], {})], None),
        ]
        for principal, call, want in cases:
            authorizations = [(a, r, {**c, "aws:PrincipalArn": principal}) for a, r, c in call]
            self.assertEqual(denying(content, authorizations), want, call)
        deployer = f"arn:aws:iam::{central}:role/EnforcerDeployer"
        content = policies(CentralAccountId=central, CentralStackName="enforcer",
                           DeploymentPrincipalArns=[deployer])["CentralGuardrail"]
        self.assertIsNone(denying(content, [("lambda:UpdateFunctionCode", [fn], {"aws:PrincipalArn": deployer})]))
        self.assertLess(len(minified(content)), SCP_LIMIT)
        # The stack's own names, as template.yaml gives them.
        template = (ROOT / "template.yaml").read_text()
        self.assertIn("FunctionName: !Sub ${AWS::StackName}-enforcer", template)
        self.assertIn("  EnforcerRole:\n    Type: AWS::IAM::Role", template)

    def test_conditions_use_only_keys_the_actions_have(self):
        for statement in policy()["Statement"]:
            for operator, keys in statement.get("Condition", {}).items():
                for key in keys:
                    if key in GLOBAL_KEYS:
                        continue
                    generic = key.split("/")[0] + "/*" if "/" in key else key
                    for action in statement["Action"]:
                        self.assertIn(generic, SAR_KEYS.get(action, set()), (statement["Sid"], action, key))

    def test_the_forwarding_role_pattern_matches_member_yamls_role_name_in_every_region(self):
        member = (ROOT / "member.yaml").read_text()
        self.assertIn("RoleName: !Sub ${ForwardRuleName}-${AWS::Region}", member)
        # The longest rule name member.yaml allows, with the longest region name, is still a
        # valid role name (IAM: 64 characters at most); guardrails.yaml allows the same names.
        pattern = re.search(r"ForwardRuleName:\n(?:    .*\n)*?    AllowedPattern: \"\^\[A-Za-z0-9._-\]\{1,(\d+)\}\$\"", member)
        self.assertIsNotNone(pattern, "member.yaml's ForwardRuleName pattern")
        longest_region = max(["ap-southeast-5", "us-gov-west-1", "cn-northwest-1", "us-isob-east-1", "eu-central-2"], key=len)
        self.assertLessEqual(int(pattern.group(1)) + 1 + len(longest_region), 64)
        guardrails = (ROOT / "guardrails.yaml").read_text()
        self.assertIn(f'AllowedPattern: "^[A-Za-z0-9._-]{{1,{pattern.group(1)}}}$"', guardrails)

    def test_the_stacksets_exception_is_in_the_deployments_partition(self):
        for partition in ("aws", "aws-cn", "aws-us-gov"):
            text = minified(policy(**{"AWS::Partition": partition}))
            self.assertIn(f"arn:{partition}:iam::*:role/stacksets-exec-*", text)
            if partition != "aws":
                self.assertNotIn("arn:aws:iam::*:role/stacksets-exec-*", text)

    def test_the_test_fails_when_the_policy_is_broken(self):
        # Each break of the resolved policy makes some case come out wrong.
        def without_action(sid, action):
            def apply(content):
                for statement in content["Statement"]:
                    if statement["Sid"] == sid:
                        statement["Action"] = [a for a in statement["Action"] if a != action]
            return apply

        def replace_operator(old, new):
            def apply(content):
                for statement in content["Statement"]:
                    condition = statement.get("Condition", {})
                    if old in condition:
                        condition[new] = condition.pop(old)
            return apply

        def drop(sid):
            def apply(content):
                content["Statement"] = [x for x in content["Statement"] if x["Sid"] != sid]
            return apply

        breaks = {
            "TagResource dropped": without_action("ExemptionTagIsPrivileged", "kinesis:TagResource"),
            "TagDeliveryStream dropped": without_action("ExemptionTagIsPrivileged", "firehose:TagDeliveryStream"),
            "ForAllValues for ForAnyValue": replace_operator("ForAnyValue:StringEquals", "ForAllValues:StringEquals"),
            "ArnLike for ArnNotLike": replace_operator("ArnNotLike", "ArnLike"),
            "PassRole dropped": without_action("RolesAreProtected", "iam:PassRole"),
            "roles unprotected": drop("RolesAreProtected"),
            "rule unprotected": without_action("DeploymentIsProtected", "events:DisableRule"),
        }
        for name, apply in breaks.items():
            content = policy()
            apply(content)
            wrong = [
                call for principal, call, sid in CASES
                if denying(content, [(a, r, {**c, "aws:PrincipalArn": principal}) for a, r, c in call]) != sid
            ]
            self.assertTrue(wrong, f"{name}: no case noticed")

    def test_the_policy_fits_the_scp_size_limit(self):
        # 5,120 characters, whitespace included (Organizations quotas; CloudFormation sends the
        # Content object as compact JSON). The exception lists are what grows it: find how many
        # principals of a typical 53-character pattern each list can hold, as docs/guardrails.md says.
        # The break-glass and security lists appear in three statements each, the deployers' in
        # five: 3 of each fit (the security review's statements took the room of 3 more).
        size = len(minified(policy()))
        self.assertLess(size, 3500, size)

        def with_principals(n):
            many = [f"arn:aws:iam::*:role/security/StreamSecurityOperator{i:02}" for i in range(n)]
            return len(minified(policy(BreakGlassPrincipalArns=many, SecurityPrincipalArns=many,
                                       DeploymentPrincipalArns=many)))

        fits = max(n for n in range(1, 40) if with_principals(n) <= SCP_LIMIT)
        self.assertGreaterEqual(fits, 3, fits)
        length = len("arn:aws:iam::*:role/security/StreamSecurityOperator00")
        print(f"\nguardrails SCP: {size} characters with one principal per list; "
              f"{fits} principals of {length} characters in each list fit ({with_principals(fits)} characters)")

if __name__ == "__main__":
    unittest.main()
