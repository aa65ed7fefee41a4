"""Finding plugins: entry points in group ``saecore``, loaded once, each in its own try.

Environment switches for people debugging a plugin setup:

- ``SAECORE_PLUGINS=a,b``: load only these plugins (entry point or distribution names),
  besides the core's own built-ins.
- ``SAECORE_BLOCK_PLUGINS=a,b``: load everything except these.
- ``SAECORE_STRICT_PLUGINS=1``: re-raise a plugin's import error instead of reporting it.
- ``SAECORE_TRACE_HOOKS=1``: print every hook call to stderr.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import warnings
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from saecore import hookspecs
from saecore.errors import PluginLoadError

ENTRY_POINT_GROUP = "saecore"
ENV_ONLY = "SAECORE_PLUGINS"
ENV_BLOCK = "SAECORE_BLOCK_PLUGINS"
ENV_STRICT = "SAECORE_STRICT_PLUGINS"
ENV_TRACE = "SAECORE_TRACE_HOOKS"


@dataclass(frozen=True)
class PluginInfo:
    """Who provides a plugin: its entry point name, distribution and version."""

    name: str
    distribution: str | None = None
    version: str | None = None

    def describe(self) -> str:
        if self.distribution:
            return f"{self.distribution} {self.version or ''}".strip() + f" (entry point {self.name!r})"
        return f"in-process plugin {self.name!r}"


@dataclass(frozen=True)
class PluginFailure:
    plugin: PluginInfo
    error: str


@dataclass
class LoadedPlugins:
    manager: pluggy.PluginManager
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)


def normalized_name(name: str) -> str:
    """Compare plugin names the way pip compares distribution names (case, -, _ and . alike)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _names_from_env(variable: str) -> set[str]:
    return {normalized_name(part.strip()) for part in os.environ.get(variable, "").split(",") if part.strip()}


def _env_flag(variable: str) -> bool:
    return os.environ.get(variable, "").strip().lower() in ("1", "true", "yes", "on")


def _info_for(entry_point: EntryPoint) -> PluginInfo:
    dist = entry_point.dist
    return PluginInfo(
        name=entry_point.name,
        distribution=dist.metadata["Name"] if dist is not None else None,
        version=dist.version if dist is not None else None,
    )


def new_plugin_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    if _env_flag(ENV_TRACE):
        manager.trace.root.setwriter(lambda message: sys.stderr.write(message))
        manager.enable_tracing()
    return manager


def unknown_hook_names(manager: pluggy.PluginManager, plugin: Any) -> list[str]:
    """Hook implementations on ``plugin`` that match no spec (usually a misspelling)."""
    problems = []
    for caller in manager.get_hookcallers(plugin) or []:
        if not caller.has_spec():
            close = difflib.get_close_matches(caller.name, [n for n in dir(hookspecs) if n.startswith("saecore_")], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{caller.name!r}{hint}")
    return problems


def register_plugin(loaded: LoadedPlugins, plugin: Any, info: PluginInfo, strict: bool) -> None:
    """Register one plugin object; a misspelled hook is reported like an import failure."""
    try:
        loaded.manager.register(plugin, name=info.name)
        problems = unknown_hook_names(loaded.manager, plugin)
        if problems:
            loaded.manager.unregister(plugin)
            raise PluginLoadError(f"implements unknown hook(s) {', '.join(problems)}")
    except Exception as error:  # one broken plugin must not take the others down
        report(loaded, info, error, strict)
        return
    loaded.plugins[info.name] = info


def report(loaded: LoadedPlugins, info: PluginInfo, error: BaseException, strict: bool) -> None:
    message = f"{type(error).__name__}: {error}"
    if strict:
        raise PluginLoadError(f"saecore plugin {info.describe()} failed to load: {message}") from error
    loaded.failures.append(PluginFailure(info, message))
    warnings.warn(
        f"saecore plugin {info.describe()} failed to load and is skipped: {message} "
        f"(set {ENV_STRICT}=1 to see the traceback)",
        RuntimeWarning,
        stacklevel=3,
    )


def load_entry_point_plugins(strict: bool | None = None) -> LoadedPlugins:
    """Discover and register every entry point in group ``saecore`` that the switches allow."""
    strict = _env_flag(ENV_STRICT) if strict is None else strict
    only, blocked = _names_from_env(ENV_ONLY), _names_from_env(ENV_BLOCK)
    loaded = LoadedPlugins(manager=new_plugin_manager())
    for entry_point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name):
        info = _info_for(entry_point)
        names = {normalized_name(info.name), normalized_name(info.distribution or "")}
        is_core = info.distribution == hookspecs.PROJECT_NAME
        if (only and not is_core and not names & only) or names & blocked:
            continue
        if info.name in loaded.plugins:
            continue  # the same distribution seen twice on sys.path
        try:
            plugin = entry_point.load()
        except Exception as error:  # reported by name and version, others keep working
            report(loaded, info, error, strict)
            continue
        register_plugin(loaded, plugin, info, strict)
    return loaded
