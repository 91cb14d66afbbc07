"""A service control policy evaluated as AWS documents it, for the cases the guardrails need.

No local tool evaluates SCPs (moto's IAM enforcement ignores conditions it does not know, and
the IAM policy simulator is AWS's alone), so this is the stand-in, and test_guardrails.py tests
it against the documented rules before trusting it with the guardrails:

- A request is one or more authorizations: an action, the resources it names, and a request
  context. An API call can be several authorizations (CreateStream with tags is also
  AddTagsToStream); the call is denied when any one is.
- An SCP's Deny statement matches an authorization when its Action matches the action (wildcards,
  case-insensitive), its Resource matches one of the resources (wildcards), and every condition
  holds. FullAWSAccess allows the rest, so only the Deny statements decide here.
- Conditions (IAM User Guide, "IAM JSON policy elements: Condition", "Condition operators" and
  "Single-valued vs. multivalued context keys"): the operators of a Condition block are ANDed,
  the keys of one operator are ANDed, the values given for one key are ORed. A key missing from
  the context makes a positive operator false and a negated one (ArnNotLike, StringNotEquals)
  true. On a multivalued key (aws:TagKeys, kms:ResourceAliases), ForAnyValue: holds when any
  value of the context matches any policy value, and is false when the key is missing;
  ForAllValues: holds when every context value matches, and also when the key is missing.
  `Null` is true-when-missing ("true") or true-when-present ("false"). Condition key names are
  not case-sensitive (aws:RequestTag/<key> included); values are compared as the operator says.
"""

import re


def _glob(pattern, value, ignore_case=False):
    # IAM's wildcards: * any run of characters, ? one character; nothing else is special.
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE if ignore_case else 0) is not None


def _matches(base, wanted, actual):
    if base == "StringEquals":
        return wanted == actual
    if base == "StringEqualsIgnoreCase":
        return wanted.lower() == actual.lower()
    if base in ("StringLike", "ArnLike", "ArnEquals"):
        return _glob(wanted, actual)
    if base == "Bool":
        # "true" or "false", compared without case; a missing key makes it false (above).
        return wanted.lower() == actual.lower()
    raise ValueError(f"operator {base} is not modelled")


NEGATED = {"StringNotEquals": "StringEquals", "StringNotLike": "StringLike",
           "ArnNotLike": "ArnLike", "ArnNotEquals": "ArnEquals",
           "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase"}


def condition_holds(operator, key, wanted, context):
    """Whether one operator-key pair holds on `context` (key -> str or list of str)."""
    wanted = wanted if isinstance(wanted, list) else [wanted]
    lowered = {k.lower(): v for k, v in context.items()}
    present = key.lower() in lowered
    actual = lowered.get(key.lower())
    if operator == "Null":
        (want,) = wanted
        return (not present) == (want == "true")
    qualifier, _, base = operator.rpartition(":")
    negated = base in NEGATED
    base = NEGATED.get(base, base)
    if qualifier == "ForAnyValue":
        if not present:
            return False
        values = actual if isinstance(actual, list) else [actual]
        hit = any(_matches(base, w, v) for v in values for w in wanted)
        return not hit if negated else hit
    if qualifier == "ForAllValues":
        if not present:
            return True
        values = actual if isinstance(actual, list) else [actual]
        hit = all(any(_matches(base, w, v) for w in wanted) for v in values)
        return not hit if negated else hit
    if qualifier:
        raise ValueError(f"qualifier {qualifier} is not modelled")
    if not present:
        return negated
    if isinstance(actual, list):
        raise ValueError(f"{key} is multivalued: it needs ForAnyValue or ForAllValues")
    hit = any(_matches(base, w, actual) for w in wanted)
    return not hit if negated else hit


def _as_list(value):
    return value if isinstance(value, list) else [value]


def statement_matches(statement, action, resources, context):
    if not any(_glob(a, action, ignore_case=True) for a in _as_list(statement["Action"])):
        return False
    if not any(_glob(r, resource) for r in _as_list(statement["Resource"]) for resource in resources):
        return False
    return all(
        condition_holds(operator, key, wanted, context)
        for operator, keys in statement.get("Condition", {}).items()
        for key, wanted in keys.items()
    )


def denying(policy, authorizations):
    """The Sid of the first Deny statement that denies any of the authorizations
    ((action, resources, context) each), or None when the call is allowed."""
    for action, resources, context in authorizations:
        for statement in policy["Statement"]:
            if statement["Effect"] == "Deny" and statement_matches(statement, action, resources, context):
                return statement.get("Sid", "?")
    return None
