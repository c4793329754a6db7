"""The adapter value: which LoRA adapter is served, named once and handed to every engine.

``Adapter`` carries what the rest of the stack reports or needs about it: its folder, its
name (the folder name; vLLM serves it under that name, ``--lora-modules NAME=PATH``), its
revision (a content hash: names the exact weights in responses and cache keys) and the
hybrid ensemble weights tuned beside it (``hybrid_weights.json``, one set per hint setting). It is built once by
``load_adapter`` (the composition root, ``stack.build``, calls it from the settings).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from common.checksum import sha256_files
from ranker.ensemble import EnsembleWeights, WeightSet, load_weight_set
from ranker.model import ModelError
from ranker.prompts import INLINE, LAYOUTS

log = logging.getLogger(__name__)

CONFIG_FILE = "adapter_config.json"
TRAIN_CONFIG_FILE = "train_config.json"  # written by training.tune: what the adapter was tuned on


class AdapterError(ModelError):
    """The adapter folder is missing or not a PEFT adapter; the message says which."""


@dataclass(frozen=True)
class Adapter:
    path: Path
    name: str
    revision: str
    weight_set: WeightSet  # per hint setting, with the validation verdict
    item_genres: bool = False  # tuned with genres after titles: served with the same layout
    prompt_layout: str = INLINE  # the prompt layout its examples used (ranker.prompts.LAYOUTS)

    @property
    def weights(self) -> EnsembleWeights:
        """The hints-on weights (the served default)."""
        return self.weight_set.hints_on


def adapter_revision(path: Path) -> str:
    """Short content hash of an adapter's config and weights: names the exact adapter served."""
    path = Path(path)
    return sha256_files([path / CONFIG_FILE, *sorted(path.glob("adapter_model.*"))])[:16]


def recorded_prompt(train_config: dict) -> dict:
    """The prompt settings a ``train_config.json`` records for the tuning examples ({} when absent)."""
    try:
        return dict(train_config["dataset"]["manifest"]["config"]["prompt"])
    except (KeyError, TypeError, ValueError):
        return {}


def tuned_prompt(path: Path) -> dict:
    """The prompt settings the adapter's examples were rendered with ({} when not recorded)."""
    file = Path(path) / TRAIN_CONFIG_FILE
    if not file.is_file():
        return {}
    try:
        prompt = recorded_prompt(json.loads(file.read_text()))
    except ValueError:
        prompt = {}
    if not prompt:
        log.warning("%s: no prompt settings recorded; serving the default prompt layout", file)
    return prompt


def load_adapter(path: str | Path, name: str | None = None) -> Adapter:
    """Resolve an adapter folder: name (default: the folder's name), revision and weights."""
    folder = Path(path)
    if not folder.is_dir():
        raise AdapterError(f"adapter folder {folder} does not exist; train one, point RECRANKER_ADAPTER "
                           "at it, or set RECRANKER_ADAPTER=none to serve the base model")
    if not (folder / CONFIG_FILE).is_file():
        raise AdapterError(f"adapter folder {folder} has no {CONFIG_FILE}")
    revision, weight_set = adapter_revision(folder), load_weight_set(folder)
    for setting in weight_set.evidence:
        if chosen_for := weight_set.chosen_elsewhere(setting, adapter_revision=revision):
            log.warning("%s: the %s hybrid weights were chosen for adapter revision %s, this one is %s "
                        "(retrained in place?): choose them again with `recranker weights`",
                        folder, setting, chosen_for["adapter_revision"], revision)
    prompt = tuned_prompt(folder)
    layout = prompt.get("layout", INLINE)
    if layout not in LAYOUTS:
        raise AdapterError(f"adapter folder {folder}: its examples used prompt layout {layout!r}, which this "
                           f"version does not know (known: {', '.join(LAYOUTS)}); upgrade RecRanker")
    return Adapter(path=folder, name=name or folder.name, revision=revision, weight_set=weight_set,
                   item_genres=bool(prompt.get("genres", False)), prompt_layout=layout)
