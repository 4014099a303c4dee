"""The one validator of settings read from files: a training config, a search space's sections, a deploy target.

pydantic checks a dataclass's field types and the rules annotated on them; every mistake becomes one UserError
worded one way: `<file>: <dotted key>: unknown key; known keys: ...`, `...: expected an integer, got 'abc'`,
`...: must be >= 1, got 0`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, AllowInfNan, BeforeValidator, Strict, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError, PydanticKnownError
from pydantic_core.core_schema import ErrorType

from core.errors import UserError

T = TypeVar("T")


def _refuse_bool(error_type: ErrorType) -> BeforeValidator:
    # pydantic's lax mode reads `true` as 1: a flag where a number belongs is a mistake, not a 1.
    def refuse(value: Any) -> Any:
        if isinstance(value, bool):
            raise PydanticKnownError(error_type)
        return value

    return BeforeValidator(refuse)


def _null_word(value: Any) -> Any:
    return None if isinstance(value, str) and value.lower() in ("null", "none", "") else value


# The field types of settings. Lax otherwise: a whole float is an integer, and a number may come as a string,
# since PyYAML reads `1e-4` (an exponent without a dot) as one.
Integer = Annotated[int, _refuse_bool("int_type")]
Number = Annotated[float, _refuse_bool("float_type"), AllowInfNan(False)]
Flag = Annotated[bool, Strict()]  # `yes` or 1 is not true or false
OptionalText = Annotated[str | None, BeforeValidator(_null_word)]  # `--set cache_dir=` or `none`: None
# A number as written: an int stays an int, so a space's `low: 0` reads back (and fingerprints) as it was.
NumberAsWritten = Number | Integer


def must(check: Callable[[Any], Any], rule: str | Callable[[], str]) -> AfterValidator:
    """A rule on a field (after its type is checked): when `check(value)` is false, the error reads
    "<key>: must be <rule>, got <value>". `rule` may be a function, for allowed values read when checked."""

    def apply(value: Any) -> Any:
        if not check(value):
            raise PydanticCustomError("rule", "must be {rule}", {"rule": rule() if callable(rule) else rule})
        return value

    return AfterValidator(apply)


def one_of(allowed: Collection[Any] | Callable[[], Collection[Any]]) -> AfterValidator:
    """The value must be one of `allowed` (a function: a registry read at each check, e.g. the KD losses)."""

    def values() -> Collection[Any]:
        return allowed() if callable(allowed) else allowed

    return must(lambda value: value in values(), lambda: choices(values()))


def at_least(low: float, why: str = "") -> AfterValidator:
    return must(lambda value: value >= low, _with_reason(f">= {low}", why))


def above(low: float, why: str = "") -> AfterValidator:
    return must(lambda value: value > low, _with_reason(f"> {low}", why))


def between(low: float, high: float, open_ends: bool = False, why: str = "") -> AfterValidator:
    """low <= value <= high, or with `open_ends` low < value < high."""
    if open_ends:
        return must(lambda value: low < value < high, _with_reason(f"in ({low}, {high})", why))
    return must(lambda value: low <= value <= high, _with_reason(f"in [{low}, {high}]", why))


def choices(values: Iterable[Any]) -> str:
    return "one of " + ", ".join("null" if v is None else str(v) for v in values)


def build(kind: type[T], values: Any, source: str, at: str = "") -> T:
    """`kind` (a dataclass, or a type such as dict[str, Any]) from the values found at dotted key `at` of
    `source`; None (an empty YAML section) is an empty mapping. Any mistake is one UserError."""
    values = {} if values is None else values
    if dataclasses.is_dataclass(kind) and isinstance(values, Mapping):
        # Checked here, not by pydantic's `extra="forbid"`: a stdlib dataclass ignores unknown keys unless
        # each class carries that config, and space files need the same check on plain mappings.
        check_keys(values, [f.name for f in dataclasses.fields(kind)], source, at)
    try:
        return _adapter(kind).validate_python(values)
    except ValidationError as err:
        raise _user_error(err.errors()[0], values, source, at) from None


def check_keys(values: Mapping[Any, Any], known: Collection[Any], source: str, at: str = "") -> None:
    for key in values:
        if key not in known:
            raise unknown_key(source, dotted(at, key), known)


def require(ok: bool, source: str, key: str, rule: str, value: Any) -> None:
    """A rule across fields, or on a value no annotation covers, worded as the annotated ones."""
    if not ok:
        raise invalid(source, key, rule, value)


def unknown_key(source: str, key: str, known: Iterable[Any]) -> UserError:
    return _located(source, key, f"unknown key; known keys: {', '.join(map(str, known))}")


def wrong_type(source: str, key: str, expected: str, value: Any) -> UserError:
    return _located(source, key, f"expected {expected}, got {value!r}")


def invalid(source: str, key: str, rule: str, value: Any) -> UserError:
    return _located(source, key, f"must be {rule}, got {value!r}")


def dotted(*keys: Any) -> str:
    return ".".join(str(k) for k in keys if k != "")


_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "dict_type": "a mapping",
    "dataclass_type": "a mapping",
    "list_type": "a list",
}


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _adapter(kind: Any) -> TypeAdapter[Any]:
    if kind not in _ADAPTERS:  # building one reads the class's annotations: once per class
        _ADAPTERS[kind] = TypeAdapter(kind)
    return _ADAPTERS[kind]


def _user_error(error: Mapping[str, Any], values: Any, source: str, at: str) -> UserError:
    key = dotted(at, *_key_path(error["loc"], values))
    if error["type"] == "rule":
        return invalid(source, key, error["ctx"]["rule"], error["input"])
    if error["type"] == "missing":
        return _located(source, key, "missing; this key is required")
    return wrong_type(source, key, _EXPECTED.get(error["type"], error["msg"].lower()), error["input"])


def _key_path(loc: tuple[Any, ...], values: Any) -> list[Any]:
    # pydantic's location also names union members and validators ('function-before[...]'): keep the part
    # that indexes into the mapping the user wrote.
    path, node = [], values
    for part in loc:
        if not isinstance(node, Mapping):
            break
        path.append(part)
        node = node.get(part)
    return path


def _with_reason(rule: str, why: str) -> str:
    return f"{rule} ({why})" if why else rule


def _located(source: str, key: str, problem: str) -> UserError:
    return UserError(f"{source}: {key}: {problem}" if key else f"{source}: {problem}")
