"""Every IAM policy document of template.yaml and member.yaml, and guardrails.yaml's service
control policy, linted by parliament (PyPI), the policy linter that checks actions, resource ARN
formats per action and condition keys against the IAM Service Authorization Reference. Run by scripts/test with the .tools/parliament interpreter.

Intrinsic functions are resolved as CloudFormation would in one account and region (cfn.py), once
for each way the templates' conditions can go (central mode or not, a shared key or an alias, ...),
so that every statement that can be deployed is linted. A finding fails the test unless JUSTIFIED
names it with the reason."""

import json
import unittest

from cfn import assignments, identity_policies, organization_policies
from parliament import analyze_policy_string

# Findings that are right about the words and wrong about the intent, each with the reason.
# Keyed by (template, policy, finding issue).
_GRANT = (
    "kms:CreateGrant is Firehose's own requirement: StartDeliveryStreamEncryption creates its "
    "grant on a customer managed key with the caller's credentials. It is limited to the "
    "mandated key, to grants for an AWS resource (kms:GrantIsForAWSResource) and to Firehose's "
    "endpoint (kms:ViaService)"
)
JUSTIFIED = {
    ("template.yaml", "EnforcerRole/enforce-stream-encryption", "PERMISSIONS_MANAGEMENT_ACTIONS"): _GRANT,
    ("member.yaml", "MemberRole/enforce-stream-encryption", "PERMISSIONS_MANAGEMENT_ACTIONS"): _GRANT,
    ("template.yaml", "AssumeMemberRolesPolicy/assume-member-roles", "CREDENTIALS_EXPOSURE"): (
        "sts:AssumeRole is central mode itself: only roles named MemberRoleName, only in the "
        "organisation's accounts (aws:ResourceOrgID), and the member role trusts this role alone"
    ),
}

# Findings on guardrails.yaml's service control policy, each by its detail: parliament's
# reference data is older than these facts of the Service Authorization Reference.
_NEWER = (
    "kinesis:TagResource and kinesis:UntagResource (2025) tag streams as AddTagsToStream and "
    "RemoveTagsFromStream do; the SAR lists them with aws:TagKeys, and the tag lock would be "
    "bypassed without them"
)
_ALIASES = (
    "kms:ResourceAliases is a condition key of the KMS key resource type, which DisableKey, "
    "PutKeyPolicy, ScheduleKeyDeletion, DeleteImportedKeyMaterial and UpdatePrimaryRegion act "
    "on (SAR, AWS KMS resource types), not one of the "
    "actions' own keys, which is all parliament looks at"
)
JUSTIFIED_DETAIL = {
    ("UNKNOWN_ACTION", "Unknown action kinesis:TagResource"): _NEWER,
    ("UNKNOWN_ACTION", "Unknown action kinesis:UntagResource"): _NEWER,
    ("UNKNOWN_CONDITION_FOR_ACTION", "Unknown condition kms:ResourceAliases for action kms:DisableKey"): _ALIASES,
    ("UNKNOWN_CONDITION_FOR_ACTION", "Unknown condition kms:ResourceAliases for action kms:PutKeyPolicy"): _ALIASES,
    ("UNKNOWN_CONDITION_FOR_ACTION", "Unknown condition kms:ResourceAliases for action kms:ScheduleKeyDeletion"): _ALIASES,
    ("UNKNOWN_CONDITION_FOR_ACTION", "Unknown condition kms:ResourceAliases for action kms:DeleteImportedKeyMaterial"): _ALIASES,
    ("UNKNOWN_CONDITION_FOR_ACTION", "Unknown condition kms:ResourceAliases for action kms:UpdatePrimaryRegion"): _ALIASES,
}
# guardrails.yaml with every guardrail on and every exception list given, and with its defaults.
GUARDRAIL_PARAMETERS = [
    {
        "TargetIds": ["ou-ab12-cdef3456"],
        "BreakGlassPrincipalArns": ["arn:aws:iam::*:role/BreakGlass"],
        "ExemptionIsPrivileged": "true",
        "ExemptTagKey": "enforcer-exempt",
        "SecurityPrincipalArns": ["arn:aws:iam::*:role/StreamSecurity"],
        "DeploymentIsProtected": "true",
        "MandatedKeyAlias": "alias/org-streams",
    },
    {"TargetIds": ["r-ab12"]},
]


class Parliament(unittest.TestCase):
    def test_every_policy_document_passes_parliament(self):
        linted = 0
        unjustified = []
        for name in ("template.yaml", "member.yaml"):
            for conditions in assignments(name):
                for label, document in identity_policies(name, conditions):
                    linted += 1
                    policy = analyze_policy_string(
                        json.dumps(document),
                        include_community_auditors=True,
                    )
                    for finding in policy.findings:
                        key = (name, label, finding.issue)
                        if key not in JUSTIFIED:
                            unjustified.append(f"{name} {label}: {finding.issue} {finding.detail}")
        for values in GUARDRAIL_PARAMETERS:
            for label, document in organization_policies("guardrails.yaml", values):
                linted += 1
                policy = analyze_policy_string(json.dumps(document), include_community_auditors=True)
                for finding in policy.findings:
                    if (finding.issue, finding.detail) not in JUSTIFIED_DETAIL:
                        unjustified.append(f"guardrails.yaml {label}: {finding.issue} {finding.detail}")
        # Guards the extraction itself: the function's role and the replay operator's managed
        # policy under both assignments, the central-mode policy, the member role, the
        # forwarding role, the break-glass role, and the guardrails' two SCPs (member accounts,
        # central account) twice.
        self.assertEqual(linted, 12)
        self.assertFalse(unjustified, "\n".join(sorted(set(unjustified))))

    def test_a_policy_with_a_known_defect_is_found(self):
        # The check can fail: StartStreamEncryption on the stream alone is what the templates
        # had, and the reference requires the key as well.
        document = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "kinesis:StartStreamEncryption",
                    "Resource": "arn:aws:kinesis:us-east-1:123456789012:stream/*",
                }
            ],
        }
        issues = {f.issue for f in analyze_policy_string(json.dumps(document)).findings}
        self.assertIn("RESOURCE_MISMATCH", issues)


if __name__ == "__main__":
    unittest.main()
