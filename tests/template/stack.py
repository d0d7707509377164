"""A translated template read as one deployment: parameter values chosen, conditions evaluated, resources whose
Condition is false gone, Fn::If resolved. Plus the lookups the tests share (a function's role, its policy statements,
what a Ref or GetAtt names)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

_DROP = object()


@dataclass
class Statement:
    """One IAM policy statement, its lists made lists."""

    actions: list[str]
    resources: list[Any]
    condition: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, raw: dict[str, Any]) -> Statement:
        actions, resources = raw.get("Action", []), raw.get("Resource", [])
        return cls(
            actions=actions if isinstance(actions, list) else [actions],
            resources=resources if isinstance(resources, list) else [resources],
            condition=raw.get("Condition") or {},
        )

    def services(self) -> set[str]:
        return {action.split(":", 1)[0] for action in self.actions}


class Stack:
    """The resources of one deployment of a translated template."""

    def __init__(self, template: dict[str, Any], parameters: dict[str, str] | None = None) -> None:
        self.template = template
        declared = template.get("Parameters") or {}
        self.parameters = {name: str(spec.get("Default", "")) for name, spec in declared.items()}
        self.parameters |= parameters or {}
        self.conditions: dict[str, bool] = {}
        for name in template.get("Conditions") or {}:
            self.condition(name)
        self.resources: dict[str, dict[str, Any]] = {
            logical_id: self.resolve(resource)
            for logical_id, resource in template["Resources"].items()
            if "Condition" not in resource or self.condition(resource["Condition"])
        }

    # Evaluation -----------------------------------------------------------------------------------------------------

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = bool(self._evaluate(self.template["Conditions"][name]))
        return self.conditions[name]

    def _evaluate(self, node: Any) -> Any:
        if not isinstance(node, dict) or len(node) != 1:
            return node
        ((name, argument),) = node.items()
        match name:
            case "Ref" if argument in self.parameters:
                spec = (self.template.get("Parameters") or {})[argument]
                value = self.parameters[argument]
                return value.split(",") if spec.get("Type") == "CommaDelimitedList" else value
            case "Fn::Equals":
                left, right = (self._evaluate(item) for item in argument)
                return left == right
            case "Fn::Not":
                return not self._evaluate(argument[0])
            case "Fn::And":
                return all(self._evaluate(item) for item in argument)
            case "Fn::Or":
                return any(self._evaluate(item) for item in argument)
            case "Fn::Join":
                return argument[0].join(self._evaluate(argument[1]))
            case "Condition":
                return self.condition(argument)
        raise AssertionError(f"cannot evaluate {node!r} in a condition")

    def resolve(self, node: Any) -> Any:
        """``node`` with every Fn::If decided and AWS::NoValue dropped (other intrinsics stay as they are)."""
        if isinstance(node, list):
            return [item for item in (self.resolve(value) for value in node) if item is not _DROP]
        if not isinstance(node, dict):
            return node
        if set(node) == {"Fn::If"}:
            name, if_true, if_false = node["Fn::If"]
            return self.resolve(if_true if self.condition(name) else if_false)
        if node == {"Ref": "AWS::NoValue"}:
            return _DROP
        resolved = {key: self.resolve(value) for key, value in node.items()}
        return {key: value for key, value in resolved.items() if value is not _DROP}

    def parameter_list(self, name: str) -> list[str]:
        return self.parameters[name].split(",")

    # Lookups --------------------------------------------------------------------------------------------------------

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {name: resource for name, resource in self.resources.items() if resource["Type"] == resource_type}

    def properties(self, logical_id: str) -> dict[str, Any]:
        properties: dict[str, Any] = self.resources[logical_id].get("Properties") or {}
        return properties

    def functions(self) -> dict[str, dict[str, Any]]:
        return self.of_type("AWS::Lambda::Function")

    def vpc_functions(self) -> list[str]:
        return [name for name, function in self.functions().items() if "VpcConfig" in function["Properties"]]

    def role_of(self, function_id: str) -> str:
        role = self.properties(function_id)["Role"]
        assert set(role) == {"Fn::GetAtt"}, f"{function_id}: its role is not the stack's own"
        return str(role["Fn::GetAtt"][0])

    def statements(self, role_id: str) -> Iterator[Statement]:
        """Every Allow statement of a role: inline, and from the stack's managed policies it attaches."""
        role = self.properties(role_id)
        documents = [policy["PolicyDocument"] for policy in role.get("Policies") or []]
        for arn in role.get("ManagedPolicyArns") or []:
            if isinstance(arn, dict):
                target = ref(arn)
                assert target in self.of_type("AWS::IAM::ManagedPolicy"), f"{role_id}: attaches {arn!r}"
                documents.append(self.properties(target)["PolicyDocument"])
        for document in documents:
            for raw in document["Statement"]:
                assert raw["Effect"] == "Allow"
                yield Statement.of(raw)

    def aws_managed_policies(self, role_id: str) -> list[str]:
        """The AWS-managed policies (by name) a role attaches."""
        arns = self.properties(role_id).get("ManagedPolicyArns") or []
        return [arn.rsplit("/", 1)[-1] for arn in arns if isinstance(arn, str)]

    def function_statements(self, function_id: str) -> list[Statement]:
        return list(self.statements(self.role_of(function_id)))


def ref(value: Any) -> str | None:
    """The logical id a ``Ref`` or ``Fn::GetAtt`` names, else None."""
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return str(value["Ref"])
    if isinstance(value, dict) and set(value) == {"Fn::GetAtt"}:
        target = value["Fn::GetAtt"]
        return str(target[0] if isinstance(target, list) else target.split(".", 1)[0])
    return None
