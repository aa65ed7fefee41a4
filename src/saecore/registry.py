"""The registry: names to classes, built once from every plugin's registration hooks.

Lookups by name happen here and only here; the trainer resolves its classes once
before the first step. Errors name the unknown thing, what is installed, and for our
own plugins the package that would provide it.

The registry is the lowest layer that knows plugins: the config models, SAE contracts,
sources and converters all sit above it (they look classes up here), so it checks each
registered class against its contract by the contract's qualified name rather than by
importing it.
"""

from __future__ import annotations

import difflib
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

from saecore.errors import DuplicateNameError, PluginLoadError, UnknownNameError
from saecore.hookspecs import RegisterArchitecture, RegisterTrainingRecipe, hookimpl
from saecore.known_plugins import (
    ARCHITECTURE_PACKAGES,
    CONVERTER_PACKAGES,
    SOURCE_PACKAGES,
    TRAINING_RECIPE_PACKAGES,
    install_hint,
)
from saecore.plugin_manager import (
    ENV_BLOCK,
    ENV_STRICT,
    LoadedPlugins,
    PluginFailure,
    PluginInfo,
    _env_flag,
    load_entry_point_plugins,
    register_plugin,
)

SAE_CONFIG_CONTRACT = "saecore.config.sae_config.SAEConfig"
TRAINING_SAE_CONFIG_CONTRACT = "saecore.config.sae_config.TrainingSAEConfig"
SAE_CONTRACT = "saecore.sae.SAE"
TRAINING_SAE_CONTRACT = "saecore.training_sae.TrainingSAE"
ACTIVATION_SOURCE_CONTRACT = "saecore.sources.base.ActivationSource"
SOURCE_CONFIG_CONTRACT = "saecore.sources.base.SourceConfig"
SAE_CONVERTER_CONTRACT = "saecore.io.converters.SAEConverter"


@dataclass(frozen=True)
class ArchitectureEntry:
    name: str
    sae_class: type
    config_class: type
    provider: PluginInfo


@dataclass(frozen=True)
class TrainingRecipeEntry:
    name: str
    training_sae_class: type
    training_config_class: type
    provider: PluginInfo

    @property
    def saves_as(self) -> str:
        return str(self.training_config_class.inference_config_class().architecture())


@dataclass(frozen=True)
class SourceEntry:
    name: str
    source_class: type
    config_class: type
    provider: PluginInfo


@dataclass(frozen=True)
class ReleaseEntry:
    name: str
    repo_id: str
    saes: Mapping[str, dict[str, Any]]
    fields: dict[str, Any]
    provider: PluginInfo


@dataclass(frozen=True)
class ConverterEntry:
    name: str
    converter: Any
    provider: PluginInfo


@dataclass(frozen=True)
class ExportEntry:
    """An exported object, or the ``"module:attribute"`` path it is imported from on first lookup."""

    name: str
    obj: Any
    provider: PluginInfo


class ExportedClasses(Mapping[str, Any]):
    """Exported objects by name; one registered as an import path is imported when looked up.

    Listing and membership tests import nothing, so an export whose module needs a heavy or
    version-bound dependency costs nothing until someone asks for it by name.
    """

    def __init__(self, objects: dict[str, Any], import_paths: dict[str, str]) -> None:
        self._objects = objects
        self._import_paths = import_paths

    def __getitem__(self, name: str) -> Any:
        if name in self._import_paths:
            module, _, attribute = self._import_paths[name].partition(":")
            return getattr(import_module(module), attribute)
        return self._objects[name]

    def __contains__(self, name: object) -> bool:
        return name in self._import_paths or name in self._objects

    def __iter__(self) -> Iterator[str]:
        return iter({**self._import_paths, **self._objects})

    def __len__(self) -> int:
        return len({**self._import_paths, **self._objects})


TABLES = ("architectures", "training_recipes", "sources", "releases", "converters", "exports")


@dataclass
class Registry:
    architectures: dict[str, ArchitectureEntry] = field(default_factory=dict)
    training_recipes: dict[str, TrainingRecipeEntry] = field(default_factory=dict)
    sources: dict[str, SourceEntry] = field(default_factory=dict)
    releases: dict[str, ReleaseEntry] = field(default_factory=dict)
    converters: dict[str, ConverterEntry] = field(default_factory=dict)
    exports: dict[str, ExportEntry] = field(default_factory=dict)
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)

    def architecture(self, name: str) -> ArchitectureEntry:
        return _lookup(self.architectures, name, "architecture", ARCHITECTURE_PACKAGES)

    def training_recipe(self, name: str) -> TrainingRecipeEntry:
        return _lookup(self.training_recipes, name, "training recipe", TRAINING_RECIPE_PACKAGES)

    def source(self, name: str) -> SourceEntry:
        return _lookup(self.sources, name, "activation source", SOURCE_PACKAGES)

    def converter(self, name: str) -> Any:
        return _lookup(self.converters, name, "converter", CONVERTER_PACKAGES).converter

    def exported_classes(self) -> ExportedClasses:
        """Every public class a registered plugin provides, by class name."""
        import_paths = {name: entry.obj for name, entry in self.exports.items() if isinstance(entry.obj, str)}
        classes: dict[str, Any] = {name: entry.obj for name, entry in self.exports.items() if name not in import_paths}
        for entry in self.architectures.values():
            classes.update({c.__name__: c for c in (entry.sae_class, entry.config_class)})
        for recipe in self.training_recipes.values():
            classes.update({c.__name__: c for c in (recipe.training_sae_class, recipe.training_config_class)})
        for source in self.sources.values():
            classes.update({c.__name__: c for c in (source.source_class, source.config_class)})
        return ExportedClasses(classes, import_paths)

    def registrations_of(self, plugin: str) -> dict[str, list[str]]:
        """What one plugin registered, by kind (for ``saecore plugins``)."""
        tables: dict[str, dict[str, Any]] = {name: getattr(self, name) for name in TABLES}
        return {
            kind: sorted(name for name, entry in table.items() if entry.provider.name == plugin)
            for kind, table in tables.items()
        }


def _lookup(table: dict[str, Any], name: str, kind: str, packages: dict[str, str]) -> Any:
    if name in table:
        return table[name]
    installed = ", ".join(sorted(table)) or "none"
    if name in packages:
        raise UnknownNameError(f"{kind} {name!r} is not installed: {install_hint(packages[name])} "
                               f"(installed: {installed})")
    close = difflib.get_close_matches(name, list(table), n=3)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownNameError(f"unknown {kind} {name!r}{hint} (installed: {installed})")


class _Builder:
    """Collects one plugin's registrations, validating each and rejecting duplicates."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def _claim(self, table: dict[str, Any], name: Any, kind: str, provider: PluginInfo) -> None:
        if not isinstance(name, str) or not name:
            raise PluginLoadError(f"registered a {kind} with an invalid name {name!r}")
        if name in table:
            other = table[name].provider
            raise DuplicateNameError(
                f"{kind} {name!r} is registered twice: by {other.describe()} and by {provider.describe()}. "
                f"Uninstall one, or block one with {ENV_BLOCK}={other.name} or {ENV_BLOCK}={provider.name}"
            )

    def architecture(self, provider: PluginInfo) -> Callable[..., None]:
        def register(name: str, sae_class: type, config_class: type) -> None:
            self._claim(self.registry.architectures, name, "architecture", provider)
            _require_subclass(sae_class, SAE_CONTRACT, f"architecture {name!r}: sae_class")
            _require_subclass(config_class, SAE_CONFIG_CONTRACT, f"architecture {name!r}: config_class")
            _require_architecture_name(config_class, name)
            self.registry.architectures[name] = ArchitectureEntry(name, sae_class, config_class, provider)

        return register

    def training_recipe(self, provider: PluginInfo) -> Callable[..., None]:
        def register(name: str, training_sae_class: type, training_config_class: type) -> None:
            self._claim(self.registry.training_recipes, name, "training recipe", provider)
            _require_subclass(training_sae_class, TRAINING_SAE_CONTRACT,
                              f"training recipe {name!r}: training_sae_class")
            _require_subclass(training_config_class, TRAINING_SAE_CONFIG_CONTRACT,
                              f"training recipe {name!r}: training_config_class")
            _require_architecture_name(training_config_class, name)
            self.registry.training_recipes[name] = TrainingRecipeEntry(
                name, training_sae_class, training_config_class, provider)

        return register

    def source(self, provider: PluginInfo) -> Callable[..., None]:
        def register(name: str, source_class: type, config_class: type) -> None:
            self._claim(self.registry.sources, name, "activation source", provider)
            _require_subclass(source_class, ACTIVATION_SOURCE_CONTRACT, f"source {name!r}: source_class")
            _require_subclass(config_class, SOURCE_CONFIG_CONTRACT, f"source {name!r}: config_class")
            self.registry.sources[name] = SourceEntry(name, source_class, config_class, provider)

        return register

    def release(self, provider: PluginInfo) -> Callable[..., None]:
        def register(name: str, repo_id: str, saes: Mapping[str, dict[str, Any]], **fields: Any) -> None:
            self._claim(self.registry.releases, name, "release", provider)
            # A dict is copied, as its plugin may change it later; another Mapping (a table read on first use) is kept.
            table = dict(saes) if isinstance(saes, dict) else saes
            self.registry.releases[name] = ReleaseEntry(name, repo_id, table, fields, provider)

        return register

    def converter(self, provider: PluginInfo) -> Callable[..., None]:
        def register(name: str, converter: Any) -> None:
            self._claim(self.registry.converters, name, "converter", provider)
            if not is_subclass_of(type(converter), SAE_CONVERTER_CONTRACT):
                raise PluginLoadError(f"converter {name!r} must be an SAEConverter instance, got {converter!r}")
            self.registry.converters[name] = ConverterEntry(name, converter, provider)

        return register

    def export(self, provider: PluginInfo) -> Callable[..., None]:
        def register(obj: Any, name: str | None = None) -> None:
            if isinstance(obj, str) and ":" not in obj:
                raise PluginLoadError(f"export {obj!r} must be an object or a 'module:attribute' import path")
            default_name = obj.rpartition(":")[2] if isinstance(obj, str) else getattr(obj, "__name__", None)
            export_name = name or default_name
            self._claim(self.registry.exports, export_name, "export", provider)
            assert isinstance(export_name, str)
            self.registry.exports[export_name] = ExportEntry(export_name, obj, provider)

        return register


def is_subclass_of(value: Any, contract: str) -> bool:
    """Whether ``value`` is a class deriving from the class whose qualified name is ``contract``."""
    return isinstance(value, type) and any(f"{base.__module__}.{base.__qualname__}" == contract
                                           for base in value.__mro__)


def _require_subclass(value: Any, contract: str, what: str) -> None:
    if not is_subclass_of(value, contract):
        raise PluginLoadError(f"{what} must be a subclass of {contract.rpartition('.')[2]}, got {value!r}")


def _require_architecture_name(config_class: Any, name: str) -> None:
    declared = config_class.architecture()
    if declared != name:
        raise PluginLoadError(
            f"{config_class.__name__}.ARCHITECTURE is {declared!r} but it is registered as {name!r}"
        )


_HOOKS = (
    ("saecore_register_architectures", "architecture"),
    ("saecore_register_training_recipes", "training_recipe"),
    ("saecore_register_sources", "source"),
    ("saecore_register_releases", "release"),
    ("saecore_register_converters", "converter"),
    ("saecore_register_exports", "export"),
)


def build_registry(loaded: LoadedPlugins, strict: bool = False) -> Registry:
    """Call each plugin's registration hooks, attributing every name to its plugin."""
    registry = Registry(plugins=dict(loaded.plugins), failures=list(loaded.failures))
    builder = _Builder(registry)
    manager = loaded.manager
    for plugin_name, info in loaded.plugins.items():
        plugin = manager.get_plugin(plugin_name)
        others = [p for p in manager.get_plugins() if p is not plugin]
        snapshot = {k: dict(getattr(registry, k)) for k in TABLES}
        try:
            for hook_name, kind in _HOOKS:
                caller = manager.subset_hook_caller(hook_name, remove_plugins=others)
                caller(register=getattr(builder, kind)(info))
        except DuplicateNameError:
            raise
        except Exception as error:  # a broken plugin is reported, the rest keep working
            for key, table in snapshot.items():
                setattr(registry, key, table)
            registry.plugins.pop(plugin_name, None)
            if strict:
                raise PluginLoadError(f"saecore plugin {info.describe()} failed to register: {error}") from error
            registry.failures.append(PluginFailure(info, f"{type(error).__name__}: {error}"))
    return registry


_lock = threading.RLock()
_registry: Registry | None = None
_in_process: list[tuple[Any, PluginInfo]] = []


def get_registry() -> Registry:
    """The registry, discovering plugins on first use and caching the result."""
    global _registry
    with _lock:
        if _registry is None:
            strict = _env_flag(ENV_STRICT)
            loaded = load_entry_point_plugins(strict=strict)
            for plugin, info in _in_process:
                register_plugin(loaded, plugin, info, strict=True)
            _registry = build_registry(loaded, strict=strict)
        return _registry


def reset_registry() -> None:
    """Forget discovered plugins; the next lookup rediscovers them."""
    global _registry
    with _lock:
        _registry = None


def add_in_process_plugin(plugin: Any, name: str) -> None:
    """Register a plugin object from Python (tests, notebooks) alongside entry points."""
    with _lock:
        _in_process.append((plugin, PluginInfo(name=name)))
        reset_registry()


def remove_in_process_plugin(name: str) -> None:
    with _lock:
        _in_process[:] = [(p, i) for p, i in _in_process if i.name != name]
        reset_registry()


PYTHON_REGISTRATIONS_PLUGIN = "register_sae_class"


class PythonRegistrations:
    """The architectures and training recipes registered by calling :func:`register_sae_class` and
    :func:`register_sae_training_class`.

    They join the registry as one in-process plugin, so every name lookup (``SAE.from_dict``,
    ``load_from_disk``, ``from_pretrained``, the trainer) finds them, ``saecore plugins``
    lists them, and they outlive :func:`reset_registry`, as SAELens's module-level tables do.
    """

    def __init__(self) -> None:
        self.architectures: dict[str, tuple[type, type]] = {}
        self.training_recipes: dict[str, tuple[type, type]] = {}

    @hookimpl
    def saecore_register_architectures(self, register: RegisterArchitecture) -> None:
        for name, (sae_class, config_class) in self.architectures.items():
            register(name, sae_class, config_class)

    @hookimpl
    def saecore_register_training_recipes(self, register: RegisterTrainingRecipe) -> None:
        for name, (training_sae_class, training_config_class) in self.training_recipes.items():
            register(name, training_sae_class, training_config_class)


def _python_registrations() -> PythonRegistrations:
    for plugin, info in _in_process:
        if info.name == PYTHON_REGISTRATIONS_PLUGIN:
            assert isinstance(plugin, PythonRegistrations)
            return plugin
    registrations = PythonRegistrations()
    add_in_process_plugin(registrations, PYTHON_REGISTRATIONS_PLUGIN)
    return registrations


def _refuse_duplicate(table: dict[str, Any], name: str, what: str) -> None:
    if name in table:
        raise DuplicateNameError(f"{what} for architecture {name!r} is already registered, by "
                                 f"{table[name].provider.describe()}; choose another architecture name")


def register_sae_class(architecture: str, sae_class: type, sae_config_class: type) -> None:
    """Register an inference SAE class and its config class under ``architecture`` (SAELens's function).

    The config class's ``architecture()`` must return ``architecture``, as cfg.json files
    name it. A name already registered, by a plugin or an earlier call, is a
    DuplicateNameError (a ValueError, as in SAELens).
    """
    with _lock:
        registrations = _python_registrations()
        registry = get_registry()
        _refuse_duplicate(registry.architectures, architecture, "SAE class")
        provider = registry.plugins[PYTHON_REGISTRATIONS_PLUGIN]
        _Builder(registry).architecture(provider)(architecture, sae_class, sae_config_class)
        registrations.architectures[architecture] = (sae_class, sae_config_class)


def register_sae_training_class(architecture: str, sae_training_class: type, sae_training_config_class: type) -> None:
    """Register a training SAE class and its config class as the training recipe ``architecture`` (SAELens's function).

    Duplicates and contract checks behave as in :func:`register_sae_class`.
    """
    with _lock:
        registrations = _python_registrations()
        registry = get_registry()
        _refuse_duplicate(registry.training_recipes, architecture, "SAE training class")
        provider = registry.plugins[PYTHON_REGISTRATIONS_PLUGIN]
        _Builder(registry).training_recipe(provider)(architecture, sae_training_class, sae_training_config_class)
        registrations.training_recipes[architecture] = (sae_training_class, sae_training_config_class)


def get_sae_class(architecture: str) -> tuple[type, type]:
    """``(SAE class, config class)`` of an inference architecture; a KeyError for an unknown name, as in SAELens."""
    try:
        entry = get_registry().architecture(architecture)
    except UnknownNameError as error:
        raise KeyError(str(error)) from None
    return entry.sae_class, entry.config_class


def get_sae_training_class(architecture: str) -> tuple[type, type]:
    """``(training SAE class, training config class)`` of a training recipe; a KeyError for an unknown name."""
    try:
        recipe = get_registry().training_recipe(architecture)
    except UnknownNameError as error:
        raise KeyError(str(error)) from None
    return recipe.training_sae_class, recipe.training_config_class
