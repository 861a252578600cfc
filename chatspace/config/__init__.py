"""A run's configuration in parts: data, sampling, output, encoder (SentenceTransformer or OpenAI) and
executor, each frozen, validated when built and naming the fields that make a run's identity;
`RunConfig` composes them and hashes that identity."""

from chatspace.config.data import EXTRACT_MODES, SOURCES, DataConfig
from chatspace.config.encoder import (
    DEFAULT_MODEL,
    DEFAULT_OPENAI_MODEL,
    ENCODE_OPTION_FIELDS,
    MODEL_DTYPES,
    ON_LONG,
    EncoderConfig,
    Mode,
    OpenAIConfig,
    SentenceTransformerConfig,
)
from chatspace.config.executor import EXECUTORS, RAY_DEVICES, ExecutorConfig
from chatspace.config.files import load_config_file
from chatspace.config.output import (
    EMBEDDING_DTYPES,
    RUN_ID_PATTERN,
    OutputConfig,
    check_run_id,
    check_run_name,
    default_output_root,
    is_safe_run_id,
)
from chatspace.config.run import RunConfig, part_of
from chatspace.config.sampling import SamplingConfig

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_OPENAI_MODEL",
    "EMBEDDING_DTYPES",
    "ENCODE_OPTION_FIELDS",
    "EXECUTORS",
    "EXTRACT_MODES",
    "MODEL_DTYPES",
    "ON_LONG",
    "RAY_DEVICES",
    "RUN_ID_PATTERN",
    "SOURCES",
    "DataConfig",
    "EncoderConfig",
    "ExecutorConfig",
    "Mode",
    "OpenAIConfig",
    "OutputConfig",
    "RunConfig",
    "SamplingConfig",
    "SentenceTransformerConfig",
    "check_run_id",
    "check_run_name",
    "default_output_root",
    "is_safe_run_id",
    "load_config_file",
    "part_of",
]
