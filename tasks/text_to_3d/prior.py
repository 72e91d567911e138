"""The toy splat prior: a class-conditional multi-view denoiser over splatter images of procedural shapes.

Design (chosen from the measurements in ``specs/toy_models.md``): 16 classes (4 primitives × 4 colours) with
small size/yaw/colour jitter; the model predicts only rgb + opacity + depth per view (5 channels, 16 × 16 per
view) and the scale/rotation channels are derived from depth (:func:`zoo.splat.gaussians.derive_splatter`);
the four views are tiled 2 × 2 into one 32 × 32 image so that convolutions and the self-attention at 8 × 8 see
all views, and fixed Plücker ray maps of the input cameras are concatenated to the input (view conditioning,
as DiffSplat does). It is trained with v-prediction (``zoo fit --config toy-splat-prior``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import UNet2DModel
from lightning.pytorch import LightningDataModule
from torch import nn
from torch.utils.data import DataLoader, Dataset

from zoo.configurable import Configurable
from zoo.splat.cameras import Cameras, focal_from_fov, input_cameras, plucker_rays
from zoo.tasks.text_to_3d.shapes import COLOURS, PRIMITIVES, ShapeBatch, sample_shapes, shape_splatter

#: The toy prior's fixed input cameras and value ranges.
TOY_VIEWS = 4
TOY_RESOLUTION = 16
TOY_ELEVATION_DEG = 30.0
TOY_RADIUS = 1.8
TOY_FOCAL = focal_from_fov(45.0)
TOY_DEPTH_RANGE = (1.0, 2.6)
TOY_SCALE_RANGE = (0.002, 0.15)
#: Predicted channels per view: rgb (3), opacity (1), depth (1).
TOY_CHANNELS = 5
NUM_CLASSES = len(PRIMITIVES) * len(COLOURS)


def toy_input_cameras(batch: int = 1) -> Cameras:
    """The toy prior's four input cameras ``[batch, 4]`` (elevation 30°, azimuths 0/90/180/270, radius 1.8, fov 45°)."""
    return input_cameras(batch, TOY_VIEWS, elevation_deg=TOY_ELEVATION_DEG, radius=TOY_RADIUS, focal=TOY_FOCAL)


def tile_views(x: torch.Tensor) -> torch.Tensor:
    """``[B, 4, C, H, W]`` → ``[B, C, 2H, 2W]`` (views 0 1 / 2 3)."""
    b, v, c, h, w = x.shape
    if v != 4:
        raise ValueError(f"tile_views expects 4 views, got {v}")
    return x.view(b, 2, 2, c, h, w).permute(0, 3, 1, 4, 2, 5).reshape(b, c, 2 * h, 2 * w)


def untile_views(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`tile_views`: ``[B, C, 2H, 2W]`` → ``[B, 4, C, H, W]``."""
    b, c, hh, ww = x.shape
    h, w = hh // 2, ww // 2
    return x.view(b, c, 2, h, 2, w).permute(0, 2, 4, 1, 3, 5).reshape(b, 4, c, h, w)


class MultiViewSplatDenoiser(Configurable, nn.Module):
    """Class-conditional denoiser of 4-view splatter channels ``[B, 4, C, H, W]``.

    The views are tiled 2 × 2, the input cameras' Plücker maps are concatenated, and a ``UNet2DModel`` (last level
    with self-attention) predicts the target of the diffusion parametrisation it was trained with. Label
    ``num_classes`` is the null (unconditional) label used for classifier-free guidance.
    """

    def __init__(
        self,
        num_classes: int = NUM_CLASSES,
        channels: int = TOY_CHANNELS,
        resolution: int = TOY_RESOLUTION,
        block_out_channels: tuple[int, ...] = (32, 64, 64),
        layers_per_block: int = 1,
    ) -> None:
        super().__init__()
        self.num_classes, self.channels, self.resolution = num_classes, channels, resolution
        levels = len(block_out_channels)
        self.unet = UNet2DModel(
            sample_size=2 * resolution,
            in_channels=channels + 6,
            out_channels=channels,
            block_out_channels=tuple(block_out_channels),
            layers_per_block=layers_per_block,
            down_block_types=("DownBlock2D",) * (levels - 1) + ("AttnDownBlock2D",),
            up_block_types=("AttnUpBlock2D",) + ("UpBlock2D",) * (levels - 1),
            norm_num_groups=8,
            attention_head_dim=32,
            num_class_embeds=num_classes + 1,
        )
        plucker = plucker_rays(toy_input_cameras(1), resolution, resolution)  # [1, 4, 6, H, W]
        self.register_buffer("plucker", tile_views(plucker), persistent=False)

    @property
    def null_label(self) -> int:
        return self.num_classes

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Prediction ``[B, 4, C, H, W]`` for noisy ``x`` ``[B, 4, C, H, W]``, integer ``timesteps`` and ``labels`` ``[B]``."""
        tiled = tile_views(x)
        inputs = torch.cat([tiled, self.plucker.to(tiled.dtype).expand(tiled.shape[0], -1, -1, -1)], dim=1)
        out = self.unet(inputs, timesteps, class_labels=labels).sample
        return untile_views(out)


class ShapePool(Dataset):
    """``size`` random shapes drawn from ``seed``; each shape's exact splatter channels are ray cast the first time
    it is requested (a whole batch at once, through ``__getitems__``) and cached. Items: ``(x0 [4, 5, 16, 16], label)``.
    """

    def __init__(self, size: int, seed: int = 0) -> None:
        self.shapes = sample_shapes(size, generator=torch.Generator().manual_seed(seed))
        self.cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.shapes.labels)

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        missing = sorted({i for i in indices if i not in self.cache})
        if missing:
            rows = torch.tensor(missing)
            part = ShapeBatch(*(t[rows] for t in vars(self.shapes).values()))
            x0 = shape_splatter(part, toy_input_cameras(len(missing)), TOY_RESOLUTION, depth_range=TOY_DEPTH_RANGE)
            self.cache.update(zip(missing, x0))
        return [(self.cache[i], self.shapes.labels[i]) for i in indices]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.__getitems__([index])[0]


class ProceduralShapes(LightningDataModule):
    """Exact splatter channels of a pool of random procedural shapes (:class:`ShapePool`), reshuffled each epoch
    from ``seed``. Batches are ``(x0 [B, 4, 5, 16, 16] in [-1, 1], labels [B])``.
    """

    def __init__(self, pool_size: int = 4096, batch_size: int = 32, seed: int = 0) -> None:
        super().__init__()
        self.pool_size, self.batch_size, self.seed = pool_size, batch_size, seed
        self.dataset: ShapePool | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is None:
            self.dataset = ShapePool(self.pool_size, self.seed)

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed + 1)
        return DataLoader(self.dataset, batch_size=self.batch_size, shuffle=True, drop_last=True, generator=generator)


def export_release(
    checkpoint: str | Path, output_dir: str | Path, *, metrics: dict[str, float] | None = None, notes: str = ""
) -> Path:
    """Write the release folder of a ``zoo fit --config toy-splat-prior`` checkpoint: the module is rebuilt from
    the run's saved ``config.yaml`` (beside ``checkpoints/``), its weights loaded from the checkpoint, and ``notes``
    (markdown) appended to the model card."""
    import yaml

    from zoo.configurable import instantiate

    checkpoint = Path(checkpoint)
    run_config = yaml.safe_load((checkpoint.parent.parent / "config.yaml").read_text())
    module = instantiate(run_config["model"])
    module.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"])
    folder = module.save_pretrained(output_dir, metrics=metrics, run_config=run_config)
    if notes:
        card = folder / "README.md"
        card.write_text(card.read_text().rstrip("\n") + "\n\n" + notes.strip() + "\n")
    return folder
