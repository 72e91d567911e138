"""Policy = base denoiser + LoRA (peft); the reference policy is the same network with the adapters disabled,
so no second copy of the base weights is kept in memory (spec §1.3, §2.7)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

ADAPTER = "default"


def add_lora(module: nn.Module, targets: Sequence[str], rank: int = 8, alpha: float | None = None) -> list[nn.Parameter]:
    """Freeze ``module`` and inject LoRA adapters (rank ``rank``, ``lora_alpha = alpha`` or ``rank``, Gaussian
    init of A and zero B, so the policy starts equal to the base) into the sub-modules named by ``targets``.
    Returns the adapter parameters (the only trainable ones, kept in fp32)."""
    module.requires_grad_(False)
    config = LoraConfig(
        r=rank, lora_alpha=rank if alpha is None else alpha, target_modules=list(targets), init_lora_weights="gaussian"
    )
    try:
        inject_adapter_in_model(config, module, adapter_name=ADAPTER)
    except ValueError as err:
        raise ValueError(
            f"could not place LoRA adapters on {type(module).__name__} with targets {list(targets)}: {err}. "
            "Set the generator's lora_targets to names of its Linear/Conv sub-modules."
        ) from err
    params = [p for name, p in module.named_parameters() if "lora_" in name]
    for p in params:  # adapters train in fp32 even when the frozen weights are bf16/fp16 (spec §7)
        p.data = p.data.float()
        p.requires_grad_(True)
    return params


def lora_layers(module: nn.Module) -> Iterator[BaseTunerLayer]:
    """The adapter-carrying layers of ``module``."""
    return (m for m in module.modules() if isinstance(m, BaseTunerLayer))


@contextmanager
def adapters_disabled(module: nn.Module) -> Iterator[None]:
    """Run ``module`` as the base (reference) model: LoRA adapters off inside the block, back on after."""
    layers = list(lora_layers(module))
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield
    finally:
        for layer in layers:
            layer.enable_adapters(True)
