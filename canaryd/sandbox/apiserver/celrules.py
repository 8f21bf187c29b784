"""`x-kubernetes-validations`: CEL rules, compiled when a CRD is written and evaluated on
every write of its custom resources, as apiextensions-apiserver does.

The `cel` package (the Rust CEL interpreter, whose parser uses cel-go's grammar, so syntax
errors read the same) does the work. What it does not do, and so neither does the sandbox:
type-check a rule against the schema (cel-go refuses `self.nope` when the schema has no
`nope`), estimate or limit cost, or offer the Kubernetes CEL libraries (quantity, url, ip,
extended strings and lists, regex find...): a rule calling one of those is not evaluated.
Ratcheting is followed for rules that do not use `oldSelf`: on an update, a value left
unchanged is not judged again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cel

from canaryd.sandbox.apiserver.errors import Obj

BLOCKED = ("some validation rules were not checked because the object was invalid; correct "
           "the existing errors to complete validation")
_UNSUPPORTED = "Undefined variable or function"


def syntax_error(expr: str) -> str | None:
    """cel-go's issues text for an expression that does not parse, else None."""
    try:
        cel.compile(expr)
    except ValueError as exc:
        text = str(exc)
        prefix = f"Failed to parse expression '{expr}': "
        if text.startswith(prefix):
            text = text[len(prefix):]
        return text.replace("\n| ", "\n | ")
    return None


@dataclass(frozen=True)
class RuleError:
    reason: str  # FieldValueInvalid, Forbidden, Required, Duplicate
    field: str
    body: str  # the cause's message, as field.Error.ErrorBody() words it


def _message(rule: Obj) -> str:
    if rule.get("message"):
        return str(rule["message"]).strip()
    return f"failed rule: {str(rule.get('rule', '')).strip()}"


def _rule_string(rule: Obj) -> str:
    return str(rule.get("message") or rule.get("rule", "")).strip()


def evaluate(rules: list[Obj], value: Any, schema_type: str, path: str, *, old: Any = None,
             has_old: bool = False, show: Any = None) -> list[RuleError]:
    """The errors of one schema node's rules for `value` (`old`: the same node's value
    before an update, when it can be correlated). `show` renders a scalar bad value."""
    errs: list[RuleError] = []
    for rule in rules:
        text = str(rule.get("rule", ""))
        uses_old = "oldSelf" in text
        if uses_old and not has_old:
            continue  # a transition rule: judged on updates only
        if has_old and not uses_old and old == value:
            continue  # ratcheting: an unchanged value is not judged again
        ctx: dict[str, Any] = {"self": value}
        if uses_old:
            ctx["oldSelf"] = old
        try:
            result = cel.evaluate(text, ctx)
        except RuntimeError as exc:
            if _UNSUPPORTED in str(exc):
                continue  # a Kubernetes CEL library function the interpreter lacks
            errs.append(RuleError("FieldValueInvalid", path, _invalid(
                value, schema_type, show, f"{exc} evaluating rule: {_rule_string(rule)}")))
            continue
        except KeyError as exc:
            key = exc.args[0] if exc.args else ""
            errs.append(RuleError("FieldValueInvalid", path, _invalid(
                value, schema_type, show,
                f"no such key: {key} evaluating rule: {_rule_string(rule)}")))
            continue
        except TypeError:
            errs.append(RuleError("FieldValueInvalid", path, _invalid(
                value, schema_type, show,
                "'no such overload': call arguments did not match a supported operator, "
                f"function or macro signature for rule: {_rule_string(rule)}")))
            continue
        if result is True:
            continue
        detail = _message(rule)
        if rule.get("messageExpression"):
            try:
                got = cel.evaluate(str(rule["messageExpression"]), ctx)
                if isinstance(got, str) and got.strip():
                    detail = got
            except (RuntimeError, KeyError, TypeError, ValueError):
                pass
        where = path
        if rule.get("fieldPath"):
            where = f"{path}.{str(rule['fieldPath']).lstrip('.')}"
        reason = rule.get("reason") or "FieldValueInvalid"
        if reason == "FieldValueForbidden":
            errs.append(RuleError(reason, where, f"Forbidden: {detail}"))
        elif reason == "FieldValueRequired":
            errs.append(RuleError(reason, where, f"Required value: {detail}"))
        elif reason == "FieldValueDuplicate":
            errs.append(RuleError(reason, where, f"Duplicate value: {_shown(value, show)}"))
        else:
            errs.append(RuleError("FieldValueInvalid", where,
                                  _invalid(value, schema_type, show, detail)))
    return errs


def _shown(value: Any, show: Any) -> str:
    return str(show(value)) if show is not None else repr(value)


def _invalid(value: Any, schema_type: str, show: Any, detail: str) -> str:
    if schema_type in ("object", "array"):
        return f"Invalid value: {detail}"  # Go leaves the value out for these
    return f"Invalid value: {_shown(value, show)}: {detail}"
