"""Procedural shapes, the toy prior's data and network, the denoising-pretraining loss, the splat generator."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDPMScheduler

from zoo.algorithms.denoising_pretraining import DenoisingPretraining, diffusion_target
from zoo.splat.cameras import orbit_cameras
from zoo.tasks.text_to_3d.generators import ToySplatGenerator, label_of
from zoo.tasks.text_to_3d.prior import (
    TOY_DEPTH_RANGE, MultiViewSplatDenoiser, ProceduralShapes, ShapePool, tile_views, toy_input_cameras, untile_views,
)
from zoo.tasks.text_to_3d.shapes import ShapeBatch, class_names, prompts_for, raycast, sample_shapes, shape_splatter


def test_sphere_depth_matches_the_analytic_ray_sphere_intersection():
    shapes = ShapeBatch(torch.tensor([0]), torch.tensor([0.9]), torch.tensor([0.3]), torch.tensor([[0.8, 0.1, 0.1]]))
    cams = orbit_cameras(torch.tensor([[25.0]]), torch.tensor([[40.0]]), 2.0, 1.0)
    out = raycast(shapes, cams, 12, 12)
    from zoo.splat.cameras import pixel_rays

    o, d = pixel_rays(cams, 12, 12)  # camera-z-normalised directions: |o + z d|² = r² is a quadratic in z
    r = 0.5 * 0.9
    a, b, c = (d * d).sum(-1), 2 * (o * d).sum(-1), (o * o).sum(-1) - r * r
    disc = b * b - 4 * a * c
    hit = disc > 0
    z = (-b - disc.clamp(min=0).sqrt()) / (2 * a)
    assert torch.equal(out["mask"][0, 0, 0], hit[0, 0])  # no pixel centre lies near the silhouette at this size
    torch.testing.assert_close(out["depth"][0, 0, 0][hit[0, 0]], z[0, 0][hit[0, 0]], atol=2e-3, rtol=0)  # 1e-3 hit tolerance
    normals = out["normals"][0, 0].movedim(0, -1)[hit[0, 0]]
    points = (o + z[..., None] * d)[0, 0][hit[0, 0]]
    torch.testing.assert_close(normals, points / r, atol=1e-2, rtol=0)


def test_every_class_renders_and_prompts_name_it():
    names = class_names()
    assert len(names) == 16 and names[0] == "red sphere" and names[-1] == "yellow torus"
    shapes = sample_shapes(16, labels=torch.arange(16), generator=torch.Generator().manual_seed(0))
    x = shape_splatter(shapes, toy_input_cameras(16), 8, depth_range=TOY_DEPTH_RANGE)
    assert x.shape == (16, 4, 5, 8, 8) and x.min() >= -1 and x.max() <= 1
    assert ((x[:, :, 3] > 0).float().mean((1, 2, 3)) > 0.05).all()  # every shape covers some pixels
    assert [label_of(p) for p in prompts_for(torch.arange(16))] == list(range(16))
    assert label_of("") is None


def test_tiling_round_trip():
    x = torch.randn(2, 4, 5, 6, 6)
    assert tile_views(x).shape == (2, 5, 12, 12)
    torch.testing.assert_close(untile_views(tile_views(x)), x)
    torch.testing.assert_close(tile_views(x)[:, :, 6:, :6], x[:, 2])
    with pytest.raises(ValueError, match="4 views"):
        tile_views(torch.zeros(1, 3, 5, 4, 4))


def test_shape_pool_is_deterministic_and_cached():
    pool = ShapePool(8, seed=3)
    items = pool.__getitems__([5, 1])
    again = ShapePool(8, seed=3)[1]
    torch.testing.assert_close(items[1][0], again[0])
    assert set(pool.cache) == {1, 5}
    dm = ProceduralShapes(pool_size=8, batch_size=4, seed=3)
    dm.setup()
    x0, labels = next(iter(dm.train_dataloader()))
    assert x0.shape == (4, 4, 5, 16, 16) and labels.shape == (4,)


class Recorder(torch.nn.Module):
    """Returns a fixed prediction and records what it was called with."""

    null_label = 16

    def __init__(self, prediction: torch.Tensor) -> None:
        super().__init__()
        self.prediction, self.calls = prediction, []

    def forward(self, x, t, labels):
        self.calls.append((x, t, labels))
        return self.prediction


@pytest.mark.parametrize("prediction_type", ["v_prediction", "epsilon", "sample"])
def test_pretraining_loss_matches_diffusers(prediction_type):
    # x_t from DDPMScheduler.add_noise and the target from its get_velocity / noise / x0 (independent code)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(3, 4, 5, 2, 2, generator=g), torch.randn(3, 4, 5, 2, 2, generator=g)
    t = torch.tensor([0, 500, 999])
    pred = torch.randn(3, 4, 5, 2, 2, generator=g)
    module = DenoisingPretraining(Recorder(pred), prediction_type=prediction_type)
    loss = module.loss(x0, torch.tensor([1, 2, 3]), t, noise)
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type=prediction_type)
    x_t = sched.add_noise(x0, noise, t)
    torch.testing.assert_close(module.denoiser.calls[0][0], x_t)
    target = {"v_prediction": sched.get_velocity(x0, noise, t), "epsilon": noise, "sample": x0}[prediction_type]
    torch.testing.assert_close(loss, ((pred - target) ** 2).mean())
    with pytest.raises(ValueError, match="prediction_type"):
        diffusion_target(x0, noise, torch.ones(()), torch.ones(()), "x")


def test_pretraining_step_drops_labels_to_null():
    module = DenoisingPretraining(Recorder(torch.zeros(64, 1)), label_dropout=0.5)
    module.log_metrics = lambda *a, **k: None
    torch.manual_seed(0)
    module.training_step((torch.zeros(64, 1), torch.zeros(64, dtype=torch.long)), 0)
    labels = module.denoiser.calls[0][2]
    frac = (labels == 16).float().mean().item()
    assert 0.3 < frac < 0.7 and set(labels.tolist()) <= {0, 16}  # Binomial(64, 0.5): ±0.2 is > 3 sd


def test_denoiser_output_shape_and_class_embeddings():
    net = MultiViewSplatDenoiser()
    x = torch.randn(2, 4, 5, 16, 16)
    out = net(x, torch.tensor([10, 900]), torch.tensor([0, net.null_label]))
    assert out.shape == x.shape
    assert net.unet.class_embedding.num_embeddings == 17


def test_generator_decodes_renders_with_aux_maps_and_gradients():
    gen = ToySplatGenerator(prior=None, render_size=16)
    assert gen.prediction_type == "v_prediction"
    assert gen.encode_prompts(["a blue box", ""]).tolist() == [6, 16]
    x0 = torch.zeros(2, *gen.latent_shape)
    x0[:, :, 3] = 1.0  # opaque everywhere, mid depth, grey
    x0.requires_grad_(True)
    renders = gen.decode(x0, generator=torch.Generator().manual_seed(0))
    assert renders.images.shape == (2, 4, 3, 16, 16)
    for aux in (renders.alpha, renders.depth, renders.normals):
        assert aux.shape[:2] == (2, 4) and torch.isfinite(aux).all()
    assert renders.alpha.mean() > 0.5
    renders.images.mean().backward()
    assert x0.grad.abs().sum() > 0
    fixed = gen.decode(x0.detach(), random_cameras=False)
    azim = torch.rad2deg(torch.atan2(fixed.cameras.centers[..., 0], fixed.cameras.centers[..., 2]))
    torch.testing.assert_close(torch.remainder(azim[0], 360), torch.tensor([45.0, 135.0, 225.0, 315.0]), atol=1e-3, rtol=0)
    with pytest.raises(FileNotFoundError, match="zoo fit --config toy-splat-prior"):
        ToySplatGenerator(prior="/no/such/folder")


def test_template_classifier_recognises_ground_truth_shapes_from_novel_views():
    from zoo.tasks.text_to_3d.metrics import classify, template_alphas

    gen = ToySplatGenerator(prior=None)
    labels = torch.arange(16)
    shapes = sample_shapes(16, labels=labels, generator=torch.Generator().manual_seed(1))
    cams = gen.cameras(16, random_cameras=False)
    renders = gen.render_views(shape_splatter(shapes, toy_input_cameras(16), 16, depth_range=TOY_DEPTH_RANGE), cams, 32)
    primitive, colour = classify(renders.images, renders.alpha, template_alphas(gen, cams, 32))
    assert (primitive == labels // 4).all() and (colour == labels % 4).all()
    # a ball of the right colour and size is classified a sphere, whatever the prompt said
    balls = sample_shapes(4, labels=torch.tensor([0, 1, 2, 3]), generator=torch.Generator().manual_seed(2))
    ball_renders = gen.render_views(shape_splatter(balls, toy_input_cameras(4), 16, depth_range=TOY_DEPTH_RANGE), cams[:4], 32)
    assert (classify(ball_renders.images, ball_renders.alpha, template_alphas(gen, cams, 32))[0] == 0).all()


def test_export_release_rebuilds_the_run_and_appends_notes(tmp_path):
    import yaml

    from zoo.configurable import to_config
    from zoo.tasks.text_to_3d.prior import export_release

    module = DenoisingPretraining(MultiViewSplatDenoiser(block_out_channels=(8, 16, 16)))
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"seed_everything": 0, "model": to_config(module)}))
    torch.save({"state_dict": module.state_dict()}, tmp_path / "checkpoints" / "step.ckpt")
    folder = export_release(tmp_path / "checkpoints" / "step.ckpt", tmp_path / "release", metrics={"acc": 0.5}, notes="## Notes\ntext")
    back = DenoisingPretraining.from_pretrained(folder)
    assert all(torch.equal(back.state_dict()[k], v) for k, v in module.state_dict().items())
    assert (folder / "README.md").read_text().endswith("## Notes\ntext\n")
