"""docs/plugins.md stays true: every hook spec is documented by its signature, and every example runs.

Hook specs are read from ``saecore.hookspecs`` itself, so adding a hook without a section
in the guide, or changing a signature without updating it, fails here. Every ```python
block of the guide runs on its own (in a fresh module, with only saecore's built-in
plugins discovered, so it cannot lean on an installed plugin) and must leave no
in-process plugin registered behind it.
"""

from __future__ import annotations

import inspect
import re
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from saecore import hookspecs
from saecore.plugin_manager import ENV_BLOCK, ENV_ONLY, ENV_STRICT, ENV_TRACE
from saecore.registry import get_registry, reset_registry

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"
ONLY_THE_CORE = "no_plugin_but_the_core"
FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class CodeBlock:
    language: str
    code: str
    line: int

    @property
    def label(self) -> str:
        return f"plugins.md:{self.line}"


def guide_text() -> str:
    return GUIDE.read_text(encoding="utf-8")


def code_blocks(text: str) -> list[CodeBlock]:
    return [
        CodeBlock(match.group(1), match.group(2), text.count("\n", 0, match.start()) + 1)
        for match in FENCE.finditer(text)
    ]


def hook_specs() -> dict[str, Callable[..., Any]]:
    marker = f"{hookspecs.PROJECT_NAME}_spec"
    return {name: value for name, value in vars(hookspecs).items() if callable(value) and hasattr(value, marker)}


def hook_section(text: str, hook: str) -> str:
    """The guide's text from the hook's ``### `name``` heading to the next heading."""
    match = re.search(rf"^### `{hook}`\n(.*?)(?=^##)", text + "\n##", re.MULTILINE | re.DOTALL)
    assert match, f"docs/plugins.md has no '### `{hook}`' section"
    return match.group(1)


def _parameter(parameter: inspect.Parameter) -> str:
    text = parameter.name
    if parameter.annotation is not inspect.Parameter.empty:
        text += f": {parameter.annotation}"
    if parameter.default is not inspect.Parameter.empty:
        text += f" = {parameter.default!r}"
    if parameter.kind is inspect.Parameter.VAR_KEYWORD:
        text = "**" + text
    return text


def spec_signature(hook: Callable[..., Any]) -> str:
    """``def name(register: RegisterX) -> None``, from the spec's own annotations."""
    signature = inspect.signature(hook)
    params = ", ".join(_parameter(p) for p in signature.parameters.values())
    return f"def {hook.__name__}({params}) -> {signature.return_annotation}"


def register_signature(hook: Callable[..., Any]) -> str:
    """``register(name: str, ...) -> None``, from the callback protocol the spec names."""
    annotation = inspect.signature(hook).parameters["register"].annotation
    protocol = getattr(hookspecs, annotation)
    signature = inspect.signature(protocol.__call__)
    params = ", ".join(_parameter(p) for name, p in signature.parameters.items() if name != "self")
    return f"register({params}) -> {signature.return_annotation}"


def added_in(hook: Callable[..., Any]) -> str:
    match = re.search(r"Added in (\d+\.\d+\.\d+)", hook.__doc__ or "")
    assert match, f"the hook spec {hook.__name__} does not say which version added it"
    return match.group(1)


HOOKS = sorted(hook_specs())
EXAMPLES = [block for block in code_blocks(guide_text()) if block.language == "python"]


def test_there_are_hooks_and_examples() -> None:
    assert len(HOOKS) >= 6 and len(EXAMPLES) >= len(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented_with_its_signatures_and_version(hook: str) -> None:
    spec = hook_specs()[hook]
    section = hook_section(guide_text(), hook)
    assert spec_signature(spec) in section, f"section of {hook} lacks its signature: {spec_signature(spec)}"
    assert register_signature(spec) in section, f"section of {hook} lacks: {register_signature(spec)}"
    assert f"Added in {added_in(spec)}." in section


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_an_example_that_implements_it(hook: str) -> None:
    section = hook_section(guide_text(), hook)
    examples = [block for block in code_blocks(section) if block.language == "python"]
    assert any(f"def {hook}(" in block.code for block in examples), f"no ```python example implements {hook}"


def test_guide_documents_no_hook_that_does_not_exist() -> None:
    documented = re.findall(r"^### `(saecore_\w+)`", guide_text(), re.MULTILINE)
    assert sorted(documented) == HOOKS


@pytest.fixture
def only_the_core(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for variable in (ENV_BLOCK, ENV_STRICT, ENV_TRACE):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv(ENV_ONLY, ONLY_THE_CORE)
    reset_registry()
    yield
    reset_registry()


@pytest.mark.usefixtures("only_the_core")
@pytest.mark.parametrize("block", EXAMPLES, ids=[block.label for block in EXAMPLES])
def test_example_runs(block: CodeBlock, capsys: pytest.CaptureFixture[str]) -> None:
    name = f"plugins_md_line_{block.line}"
    module = types.ModuleType(name)
    sys.modules[name] = module
    try:
        exec(compile(block.code, f"docs/{block.label}", "exec"), module.__dict__)
    finally:
        del sys.modules[name]
    left_behind = sorted(n for n, info in get_registry().plugins.items() if info.distribution is None)
    assert left_behind == [], f"the example leaves in-process plugins registered: {left_behind}"
