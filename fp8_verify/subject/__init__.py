"""Stage 2: what is under test. The installed vLLM (:mod:`.vllm`), what changed in which release
(:mod:`.releases`), the registry of paths through it (:mod:`.registry`), the compile wrapper
(:mod:`.compiled`) and the CPU double of the SM90 kernel that stands in where no Hopper GPU is
(:mod:`.cpu_kernel`)."""

from .registry import PATHS, GemmPath, PathSpec, Registry, get
from .releases import MRule, Span, kernel_m_rule
from .vllm import Subject, load

__all__ = [
    "PATHS",
    "GemmPath",
    "MRule",
    "PathSpec",
    "Registry",
    "Span",
    "Subject",
    "get",
    "kernel_m_rule",
    "load",
]
