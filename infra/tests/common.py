"""Helpers shared by infra/tests: loading the SAM template and reading names out of it."""
import os
import re

from samtranslator.yaml_helper import yaml_parse

INFRA = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(INFRA)
TEMPLATE = os.environ.get("BATON_INFRA_TEMPLATE", os.path.join(INFRA, "template.yaml"))
ENDPOINT = os.environ.get("BATON_EMULATOR_ENDPOINT", "http://127.0.0.1:4566")
REGION = "us-east-1"
CLIENT_KW = dict(endpoint_url=ENDPOINT, region_name=REGION, aws_access_key_id="test", aws_secret_access_key="test")


def load_template(path=TEMPLATE):
    """The template as a dict, short-form tags (!Sub, !Ref, !GetAtt, ...) in their long form."""
    with open(path, encoding="utf-8") as f:
        return yaml_parse(f.read())


def resolve(node, params):
    """Evaluates the intrinsics that name things: parameters and pseudo parameters by value;
    `Ref` to a resource as ("Ref", id); `Fn::GetAtt` as ("GetAtt", id, attr); `Fn::Sub` with
    resource references left as `${Id.Attr}`."""
    if isinstance(node, dict) and len(node) == 1:
        (k, v), = node.items()
        if k == "Ref":
            return params[v] if v in params else ("Ref", v)
        if k == "Fn::GetAtt":
            parts = v if isinstance(v, list) else v.split(".", 1)
            return ("GetAtt", parts[0], parts[1])
        if k == "Fn::Sub":
            text = v if isinstance(v, str) else v[0]
            return re.sub(r"\$\{([^}!]+)\}", lambda m: str(params.get(m.group(1), m.group(0))), text)
    return node


def pseudo(prefix):
    return {
        "StackPrefix": prefix,
        "AWS::Region": REGION,
        "AWS::AccountId": "123456789012",
        "AWS::Partition": "aws",
    }


def of_type(template, type_):
    return {k: r for k, r in template["Resources"].items() if r["Type"] == type_}
