"""SAELens's ``sae_lens.analysis.neuronpedia_integration`` links: Neuronpedia pages of an SAE's features.

An SAE loaded with ``SAE.from_pretrained`` from a release that Neuronpedia hosts carries
``cfg.metadata.neuronpedia_id`` (``"<model>/<layer>-<set>"``); the page of feature ``i``
is ``https://neuronpedia.org/<neuronpedia_id>/<i>``.
"""

from __future__ import annotations

import json
import urllib.parse
import webbrowser
from typing import Any

NEURONPEDIA_DOMAIN = "https://neuronpedia.org"
_JSON_CONSTANT_REPLACEMENTS = {"-Infinity": -9999.0, "Infinity": 9999.0, "NaN": 0.0}


def NanAndInfReplacer(value: str) -> float:
    """A ``json.loads(parse_constant=...)`` hook: ±Infinity become ±9999 and NaN 0, as Neuronpedia's exports expect."""
    return _JSON_CONSTANT_REPLACEMENTS.get(value, 0.0)


def _neuronpedia_id(sae: Any) -> str:
    neuronpedia_id = sae.cfg.metadata.neuronpedia_id
    if neuronpedia_id is None:
        raise ValueError(
            "sae.cfg.metadata.neuronpedia_id is None: Neuronpedia has no dashboards for this SAE, or it was not "
            "loaded with SAE.from_pretrained from a release that lists one"
        )
    return str(neuronpedia_id)


def open_neuronpedia_feature_dashboard(sae: Any, index: int) -> str:
    """Open the Neuronpedia page of feature ``index`` in a browser; return its URL."""
    url = f"{NEURONPEDIA_DOMAIN}/{_neuronpedia_id(sae)}/{index}"
    webbrowser.open(url)
    return url


def get_neuronpedia_quick_list(sae: Any, features: list[int], name: str = "temporary_list") -> str:
    """Open a Neuronpedia quick list of ``features`` named ``name`` in a browser; return its URL."""
    neuronpedia_id = _neuronpedia_id(sae)
    layer = neuronpedia_id.split("/")[1]
    listed = [
        {"modelId": sae.cfg.metadata.model_name, "layer": layer, "index": str(feature)} for feature in features
    ]
    url = (
        f"{NEURONPEDIA_DOMAIN}/quick-list/?name={urllib.parse.quote(name)}"
        f"&features={urllib.parse.quote(json.dumps(listed))}"
    )
    webbrowser.open(url)
    return url

