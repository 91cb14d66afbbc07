"""CloudFormation intrinsics resolved as CloudFormation would in one account and region, for the
policy checks: tests/policies/test_parliament.py lints the results, and the Rust IAM test
(tests/it/iam.rs) holds the real binaries to them at a proxy. As a command,

    python tests/policies/cfn.py TEMPLATE ROLE [Name=value ...]

prints the statements of ROLE's inline policies (and of every AWS::IAM::RolePolicy attached to
it) as JSON, with the given parameter and pseudo-parameter values (AWS::AccountId=..., a
logical id for the ARN of a resource, and Condition:Name=true|false)."""

import json
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]

PSEUDO = {
    "AWS::Partition": "aws",
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "stream-encryption-enforcer",
}

# Parameter values of a plausible deployment (parameters without a default need one here).
PARAMETERS = {
    "MandatedKmsKey": "alias/org-streams",
    "MandatedKmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "AlarmEmail": "security@example.com",
    "OrganizationId": "o-a1b2c3d4e5",
    "AllowedRegions": "us-east-1,eu-west-1",
    "CentralAccountId": "111122223333",
    "CentralRegion": "us-east-1",
    "EnforcerRoleArn": "arn:aws:iam::111122223333:role/enforcer-EnforcerRole-1A2B3C4D5E6F",
    "MandatedKeyAlias": "alias/org-streams",
    "OperatorPrincipalArn": "arn:aws:iam::111122223333:role/StreamSecurityOperators",
    "MemberExternalId": "org-streams-enforcer",
}

class CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation short-form intrinsics (!Ref, !Sub, ...) as {"Fn": value}."""


def _intrinsic(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {suffix: value}


CfnLoader.add_multi_constructor("!", _intrinsic)


def load(name):
    return yaml.load((ROOT / name).read_text(), Loader=CfnLoader)


ARN_OF = {
    "AWS::IAM::Role": "arn:aws:iam::123456789012:role/{}",
    "AWS::SQS::Queue": "arn:aws:sqs:us-east-1:123456789012:{}",
    "AWS::DynamoDB::Table": "arn:aws:dynamodb:us-east-1:123456789012:table/{}",
    "AWS::Logs::LogGroup": "arn:aws:logs:us-east-1:123456789012:log-group:{}:*",
    "AWS::Events::EventBus": "arn:aws:events:us-east-1:123456789012:event-bus/{}",
    "AWS::Events::Rule": "arn:aws:events:us-east-1:123456789012:rule/{}",
    "AWS::KMS::Key": "arn:aws:kms:us-east-1:123456789012:key/0987dcba-09fe-87dc-65ba-ab0987654321",
}


class Resolver:
    """Resolves intrinsics with `conditions` (name -> bool) deciding every Fn::If; `values`
    overrides parameters and pseudo parameters, and gives resources (by logical id) their ARN."""

    def __init__(self, doc, conditions, values=None):
        self.doc = doc
        self.conditions = conditions
        self.values = values or {}
        self.parameters = {
            name: PARAMETERS.get(name, spec.get("Default", ""))
            for name, spec in doc.get("Parameters", {}).items()
        }
        # A CommaDelimitedList is a list to Ref ("" is [""], as CloudFormation gives it).
        for name, spec in doc.get("Parameters", {}).items():
            if spec.get("Type") == "CommaDelimitedList" and isinstance(self.parameters[name], str):
                self.parameters[name] = self.parameters[name].split(",")

    def ref(self, name):
        if name in self.values:
            return self.values[name]
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.parameters:
            return self.parameters[name]
        return f"{name.lower()}-1A2B3C"

    def get_att(self, target):
        name, attribute = target.split(".", 1) if isinstance(target, str) else target
        if name in self.values:
            return self.values[name]
        kind = self.doc["Resources"].get(name, {}).get("Type", "")
        if name == "EnforcerFunction" or kind == "AWS::Serverless::Function":
            return "arn:aws:lambda:us-east-1:123456789012:function:enforcer"
        if attribute == "Arn" and kind in ARN_OF:
            return ARN_OF[kind].format(f"{name}-1A2B3C")
        # SAM's generated rules (EnforcerFunctionKinesisCalls, ...).
        return ARN_OF["AWS::Events::Rule"].format(f"{name}-1A2B3C")

    def resolve(self, node):
        if isinstance(node, list):
            return [v for v in (self.resolve(item) for item in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (fn, arg), = node.items()
            if fn == "Ref":
                return NO_VALUE if arg == "AWS::NoValue" else self.ref(arg)
            if fn == "Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else arg
                variables = {k: self.resolve(v) for k, v in variables.items()}

                def sub(match):
                    key = match.group(1)
                    if key in variables:
                        return str(variables[key])
                    if "." in key:
                        return self.get_att(key)
                    return str(self.ref(key))

                return re.sub(r"\$\{([^}!]+)\}", sub, text)
            if fn == "GetAtt":
                return self.get_att(arg)
            if fn == "If":
                condition, then, otherwise = arg
                return self.resolve(then if self.conditions[condition] else otherwise)
            if fn == "Select":
                index, items = arg
                return self.resolve(items)[int(index)]
            if fn == "Split":
                separator, text = arg
                return self.resolve(text).split(separator)
            if fn == "Join":
                separator, items = arg
                return separator.join(str(i) for i in self.resolve(items))
        resolved = {k: self.resolve(v) for k, v in node.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}


NO_VALUE = object()


def _truth(node, resolver, condition=None):
    """The truth of a condition or rule function as CloudFormation decides it: Fn::Equals,
    Fn::Not, Fn::And, Fn::Or, and in Rules Fn::Contains and Fn::EachMemberEquals; `condition`
    decides a named Condition."""
    (fn, arg), = node.items()
    if fn == "Condition" and condition is not None:
        return condition(arg)
    if fn == "Not":
        return not _truth(arg[0], resolver, condition)
    if fn == "And":
        return all(_truth(v, resolver, condition) for v in arg)
    if fn == "Or":
        return any(_truth(v, resolver, condition) for v in arg)
    left, right = (resolver.resolve(v) for v in arg)
    if fn == "Equals":
        return left == right
    if fn == "Contains":
        return right in left
    if fn == "EachMemberEquals":
        return all(item == right for item in left)
    raise ValueError(f"condition function {fn}")


def conditions_of(doc, values=None):
    """Every condition of `doc` as CloudFormation decides it from the parameter `values`."""
    resolver = Resolver(doc, {}, values)
    decided = {}

    def condition(name):
        if name not in decided:
            decided[name] = _truth(doc["Conditions"][name], resolver, condition)
        return decided[name]

    for name in doc.get("Conditions", {}):
        condition(name)
    return decided


def rules_broken(name, values=None):
    """The AssertDescription of every Rule assertion of template `name` that the parameter
    `values` break, as CloudFormation checks them before it creates anything."""
    doc = load(name)
    resolver = Resolver(doc, {}, values)
    broken = []
    for rule in doc.get("Rules", {}).values():
        if "RuleCondition" in rule and not _truth(rule["RuleCondition"], resolver):
            continue
        broken.extend(
            a["AssertDescription"] for a in rule["Assertions"] if not _truth(a["Assert"], resolver)
        )
    return broken


def organization_policies(name, values=None):
    """(label, content) of every AWS::Organizations::Policy of template `name`, its conditions
    decided from the parameter `values` as CloudFormation would."""
    doc = load(name)
    conditions = conditions_of(doc, values)
    resolver = Resolver(doc, conditions, values)
    for logical, resource in doc["Resources"].items():
        if resource.get("Condition") and not conditions[resource["Condition"]]:
            continue
        if resource["Type"] == "AWS::Organizations::Policy":
            yield logical, resolver.resolve(resource["Properties"]["Content"])


def identity_policies(name, conditions, values=None):
    """(label, policy document) of every role's inline policies, every AWS::IAM::RolePolicy and
    every AWS::IAM::ManagedPolicy (labelled `<logical>/<logical>`) that exists under `conditions`."""
    doc = load(name)
    resolver = Resolver(doc, conditions, values)
    for logical, resource in doc["Resources"].items():
        if resource.get("Condition") and not conditions[resource["Condition"]]:
            continue
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::IAM::Role":
            for policy in properties.get("Policies", []):
                yield f"{logical}/{policy['PolicyName']}", resolver.resolve(policy["PolicyDocument"])
        if resource["Type"] == "AWS::IAM::RolePolicy":
            yield f"{logical}/{properties['PolicyName']}", resolver.resolve(properties["PolicyDocument"])
        if resource["Type"] == "AWS::IAM::ManagedPolicy":
            yield f"{logical}/{logical}", resolver.resolve(properties["PolicyDocument"])


def assignments(name):
    """Every way the template's conditions can go that matters to its policies: each condition
    true, then each false (the policies' Fn::If branches are independent of each other)."""
    names = list(load(name).get("Conditions", {}))
    return [dict.fromkeys(names, True), dict.fromkeys(names, False)]


def role_statements(name, role, conditions, values):
    """The statements of every policy of `role` (inline, or AWS::IAM::RolePolicy naming it), or
    of the managed policy whose logical id `role` is."""
    doc = load(name)
    attached = {
        logical
        for logical, resource in doc["Resources"].items()
        if resource["Type"] == "AWS::IAM::RolePolicy"
        and resource["Properties"]["RoleName"] == {"Ref": role}
    }
    statements = []
    for label, document in identity_policies(name, conditions, values):
        if label.split("/")[0] in {role} | attached:
            statements.extend(document["Statement"])
    return statements


if __name__ == "__main__":
    template, role, *pairs = sys.argv[1:]
    names = list(load(template).get("Conditions", {}))
    conditions = dict.fromkeys(names, True)
    values = {}
    for pair in pairs:
        key, value = pair.split("=", 1)
        if key.startswith("Condition:"):
            conditions[key.removeprefix("Condition:")] = value == "true"
        else:
            values[key] = value
    json.dump(role_statements(template, role, conditions, values), sys.stdout, indent=1)
