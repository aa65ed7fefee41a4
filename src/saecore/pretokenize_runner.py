"""SAELens's ``sae_lens.pretokenize_runner`` path: the pretokenizing runner.

Provided by ``saecore-source-llm``. In SAELens ``sae_lens.pretokenize_runner`` is both
this module and, as an attribute of the package, the deprecated function
``pretokenize_runner(cfg)``. Python binds ``saecore.pretokenize_runner`` to this module
once it is imported, so the module is callable: calling it calls that function.
"""

import sys
from types import ModuleType
from typing import Any

from saecore.plugin_exports import plugin_exports

__getattr__, __dir__ = plugin_exports(__name__, ("PretokenizeRunner", "pretokenize_runner"), "saecore-source-llm")


class _CallableModule(ModuleType):
    def __call__(self, cfg: Any) -> Any:
        return self.pretokenize_runner(cfg)


sys.modules[__name__].__class__ = _CallableModule
