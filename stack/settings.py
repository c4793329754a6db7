"""The one settings object. Read from RECRANKER_* environment variables (or a .env file).

Library code takes explicit arguments; only entry points (CLI, service) build Settings.
The ranking defaults are not restated here: they come from ``ranker.ranker.RankerConfig``
(and the bundled model's name from ``ranker.model``), so the two cannot disagree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from candidate_gen.base import BACKBONE_NAMES, NUM_CANDIDATES
from ranker.model import BUNDLED_MODEL
from ranker.ranker import RankerConfig

_RANKER = RankerConfig()  # the ranking defaults' one home
# The largest candidate list anything accepts (settings, HTTP bodies): one number.
CANDIDATE_LIMIT = 200
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ADAPTER = REPO_ROOT / "models" / "recranker-smollm2-ml100k"


def adapter_or_none(value: str | None) -> str | None:
    """An adapter setting as given by a user: '', 'none' (any case) or None mean no adapter."""
    return None if value is None or value.strip().lower() in ("", "none") else value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RECRANKER_", env_file=".env", extra="ignore")

    # where things live
    home: Path = Field(Path("artifacts"), description="Folder for every runtime artifact (backbones, model cache, eval caches).")
    data_dir: Path | None = Field(None, description="Folder holding datasets (ml-100k/ ...); default <home>/data, downloaded if absent.")
    ml100k_url: str = Field("https://files.grouplens.org/datasets/movielens/ml-100k.zip", description="Official GroupLens archive.")

    # what is served
    dataset: str = Field("ml-100k", description="Dataset name, or a folder with interactions.csv + items.csv.")
    backbone: Literal[BACKBONE_NAMES] = "lightgcn"
    base_model: str = Field(BUNDLED_MODEL, description="Bundled model name, a Hugging Face id, or a local checkpoint path.")
    adapter: str | None = Field(str(DEFAULT_ADAPTER), description="PEFT adapter folder; 'none' serves the base model.")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # auto: bfloat16 on CUDA and on CPUs with bf16 matrix units (AMX / AVX512-BF16), float32 on
    # other CPUs (ranker.engines.hf.auto_dtype; the choice is logged at start-up). bf16 moves
    # label log-probabilities by ~0.02 between batch shapes (fp32: ~1e-6): pin float32 where
    # bit-identical rankings matter more than speed.
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    prefix_cache_mb: int = Field(256, ge=0, description="LRU of computed user-history prefixes (K/V) kept across "
                                 "requests, in MiB (about 46 KB a token in float32, half in bf16: "
                                 "256 MiB holds ~24 users' 230-token histories); 0 disables it.")
    engine: Literal["hf", "vllm"] = "hf"
    vllm_url: str = Field("http://127.0.0.1:8000", description="OpenAI-compatible vLLM server for engine=vllm.")
    vllm_model: str | None = Field(None, description="Model (or LoRA module) name to send to vLLM.")

    # ranking defaults (values from RankerConfig)
    num_candidates: int = Field(NUM_CANDIDATES, ge=1, le=CANDIDATE_LIMIT, description="Candidates the backbone retrieves per request.")
    recency_weight: float | None = Field(None, ge=0, le=100, description="Re-order the backbone's candidates by "
                                         "z(score) + this x z(co-likes with the user's latest likes); 0 = off; unset = "
                                         "the backbone's own choice, made on validation users when it was trained "
                                         "(candidate_gen.recency_choice).")
    recency_window: int | None = Field(None, ge=1, le=50, description="How many of the user's latest likes recency "
                                       "reads; unset = the backbone's choice.")
    top_k: int = Field(5, ge=1, le=CANDIDATE_LIMIT, description="Items a request returns by default.")
    use_hints: bool = _RANKER.use_hints
    pairwise_budget: int = Field(_RANKER.pairwise_budget, ge=0,
                                 description="Pairwise comparisons per request (each asked in both orders).")
    listwise_shuffles: int = Field(_RANKER.listwise_shuffles, ge=1)
    history_token_budget: int = Field(_RANKER.history_token_budget, ge=32)

    # service
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    redis_url: str | None = Field(None, description="redis://...; unset = in-process store (embedded default).")
    api_key: str | None = None
    cache_ttl_s: int = Field(300, ge=0)
    user_history_max: int = Field(200, ge=1)
    max_candidates: int = Field(50, ge=1, le=CANDIDATE_LIMIT,
                                description="Most candidates one request may send or ask the backbone for.")
    max_batch_requests: int = Field(32, ge=1)
    max_body_bytes: int = Field(1_000_000, ge=1024)
    body_timeout_s: float = Field(30.0, gt=0, description="Time a client has to send its whole request body (else 408).")
    request_timeout_s: float = Field(60.0, gt=0)
    microbatch: bool = True
    microbatch_max_wait_ms: float = Field(10.0, ge=0)
    microbatch_max_requests: int = Field(8, ge=1)
    queue_max: int = Field(64, ge=1)
    admission: bool = Field(True, description="Refuse (503 + Retry-After) a rank request when the engine work "
                            "queued ahead of it, in estimated forward tokens over the measured tokens/s, would "
                            "not let it finish within RECRANKER_REQUEST_TIMEOUT_S.")

    @field_validator("adapter")
    @classmethod
    def _none_adapter(cls, v: str | None) -> str | None:
        return adapter_or_none(v)

    @model_validator(mode="after")
    def _default_count_within_limit(self) -> Settings:
        if self.num_candidates > self.max_candidates:
            raise ValueError(f"RECRANKER_NUM_CANDIDATES ({self.num_candidates}) is more than RECRANKER_MAX_CANDIDATES "
                             f"({self.max_candidates}): every request without its own count would be refused")
        return self

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir if self.data_dir is not None else self.home / "data"

    @property
    def backbones_dir(self) -> Path:
        return self.home / "backbones"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"


def get_settings(**overrides) -> Settings:
    """Settings from the environment, with keyword overrides (entry points and tests)."""
    return Settings(**overrides)


def ranker_config(settings: Settings, **overrides) -> RankerConfig:
    """The ranker's config as the settings choose it (plus overrides)."""
    base = dict(pairwise_budget=settings.pairwise_budget, listwise_shuffles=settings.listwise_shuffles,
                history_token_budget=settings.history_token_budget, use_hints=settings.use_hints)
    return RankerConfig(**(base | overrides))


def describe_settings_error(error: ValidationError) -> str:
    """One line naming the environment variable at fault, e.g.
    'invalid setting RECRANKER_TOP_K=0: Input should be greater than or equal to 1'."""
    parts = []
    for err in error.errors():
        if not err["loc"]:  # a check across settings: its message names them
            parts.append(err["msg"].removeprefix("Value error, "))
            continue
        name = "RECRANKER_" + "_".join(str(x) for x in err["loc"]).upper()
        parts.append(f"{name}={err['input']!r}: {err['msg']}" if "input" in err else f"{name}: {err['msg']}")
    return "invalid setting " + "; ".join(parts)
