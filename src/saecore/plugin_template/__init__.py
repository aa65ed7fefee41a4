"""The plugin template behind ``saecore new-plugin``: a complete package, ready to install and test.

Each kind is a folder of ``*.tmpl`` files (``architecture/``, ``source/``). Generating
copies the folder, drops the ``.tmpl`` suffix, renames ``src/package`` to the import
name, and fills ``$placeholders`` with :class:`string.Template` (so a literal dollar sign
in a template is written ``$$``).

Names follow the convention of saecore's own plugins: architecture ``my_relu`` becomes
distribution ``saecore-sae-my-relu``, import ``saecore_sae_my_relu``, entry point
``sae_my_relu``; source ``my_model`` becomes ``saecore-source-my-model``,
``saecore_source_my_model``, ``source_my_model``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

from saecore.errors import ConfigError
from saecore.version import __version__

TEMPLATE_ROOT = Path(__file__).parent
KINDS = ("architecture", "source")
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
TEMPLATE_SUFFIX = ".tmpl"
PACKAGE_PLACEHOLDER = "package"
_PREFIXES = {"architecture": "sae", "source": "source"}


@dataclass(frozen=True)
class PluginNames:
    """Every name a generated package uses, derived from the registered name and the kind."""

    name: str
    kind: str

    @property
    def prefix(self) -> str:
        return _PREFIXES[self.kind]

    @property
    def distribution(self) -> str:
        return f"saecore-{self.prefix}-{self.name.replace('_', '-')}"

    @property
    def module(self) -> str:
        return f"saecore_{self.prefix}_{self.name}"

    @property
    def entry_point(self) -> str:
        return f"{self.prefix}_{self.name}"

    @property
    def class_prefix(self) -> str:
        return "".join(part.capitalize() for part in self.name.split("_") if part)

    def substitutions(self) -> dict[str, str]:
        major, minor = (int(part) for part in __version__.split(".")[:2])
        return {
            "name": self.name,
            "kind": self.kind,
            "distribution": self.distribution,
            "module": self.module,
            "entry_point": self.entry_point,
            "class_prefix": self.class_prefix,
            "saecore_requirement": f"saecore>={major}.{minor},<{major}.{minor + 1}",
        }


def plugin_names(name: str, kind: str) -> PluginNames:
    """Validate ``name`` and ``kind``; dashes in the name are read as underscores."""
    if kind not in KINDS:
        raise ConfigError(f"--kind {kind!r}: unknown plugin kind; allowed: {', '.join(KINDS)}")
    normalized = name.strip().replace("-", "_")
    if not NAME_PATTERN.match(normalized):
        raise ConfigError(
            f"NAME {name!r}: not a usable plugin name; allowed: lowercase letters, digits and underscores, "
            "starting with a letter (e.g. my_relu)"
        )
    return PluginNames(normalized, kind)


def template_files(kind: str) -> list[Path]:
    """The template files of one kind, relative to its folder, in a stable order."""
    folder = TEMPLATE_ROOT / kind
    return sorted(path.relative_to(folder) for path in folder.rglob(f"*{TEMPLATE_SUFFIX}"))


def generate_plugin(name: str, kind: str, output: Path) -> Path:
    """Write the package for ``name`` under ``output`` and return its folder.

    Refuses to write into an existing non-empty folder, so nothing is ever overwritten.
    """
    names = plugin_names(name, kind)
    target = output / names.distribution
    if target.exists() and any(target.iterdir()):
        raise ConfigError(f"{target}: already exists and is not empty; choose another --output or NAME")
    values = names.substitutions()
    for relative in template_files(kind):
        parts = [names.module if part == PACKAGE_PLACEHOLDER else part for part in relative.parts]
        destination = target.joinpath(*parts).with_name(parts[-1].removesuffix(TEMPLATE_SUFFIX))
        text = (TEMPLATE_ROOT / kind / relative).read_text(encoding="utf-8")
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(Template(text).substitute(values), encoding="utf-8")
    return target
