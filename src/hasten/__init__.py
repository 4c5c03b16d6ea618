"""hasten: make generative models produce their output faster without changing it.

LLM side: :func:`generate` with a speculative decoding ``method`` (:func:`list_methods`)
is token-identical to plain greedy decoding and distribution-identical when sampling.
Diffusion side: :mod:`hasten.diffusion`.
"""

from .budget import BudgetConfig
from .compile import CompileConfig, CompiledModel, compile_model
from .drafters import Drafter, UnknownMethodError, list_methods
from .engine import GenerationResult, GenerationStats, generate
from .models import ModelNotInstalledError, load_gguf, load_model
from .sampling import SamplingParams
from .tree import DraftTree

__version__ = "0.1.0"

__all__ = [
    "generate",
    "load_model",
    "load_gguf",
    "list_methods",
    "GenerationResult",
    "GenerationStats",
    "SamplingParams",
    "BudgetConfig",
    "CompileConfig",
    "CompiledModel",
    "compile_model",
    "DraftTree",
    "Drafter",
    "UnknownMethodError",
    "ModelNotInstalledError",
]
