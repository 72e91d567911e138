"""DiffSplat-PixArt-Σ adapter: multi-view attention, the official cameras and Plücker rays, GS decoding, loading
from a folder in the Hub layout, and the real-size architecture (counted on the meta device)."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, PixArtTransformer2DModel
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from safetensors.torch import save_file

from preset_standins import TINY_DIFFSPLAT

from zoo.tasks.text_to_3d.diffsplat import (
    REAL_SIZE, DiffSplatGenerator, MultiViewSelfAttention, diffsplat_plucker, load_gsvae,
)

TINY = TINY_DIFFSPLAT  # the tiny DiffSplat architecture the preset tests use


def tiny_generator(**kwargs) -> DiffSplatGenerator:
    torch.manual_seed(0)
    return DiffSplatGenerator(configs=TINY, dtype="float32", render_size=16, max_text_length=16, **kwargs)


def test_multiview_attention_equals_joint_attention_over_the_views():
    # reference: diffusers' own processor on the tokens of the V views of each object concatenated
    torch.manual_seed(0)
    attn = Attention(query_dim=16, heads=2, dim_head=8)
    b, v, n = 2, 4, 5
    x = torch.randn(b * v, n, 16)
    expected = AttnProcessor2_0()(attn, x.reshape(b, v * n, 16)).reshape(b * v, n, 16)
    torch.testing.assert_close(MultiViewSelfAttention(v)(attn, x), expected)
    # with one view it is ordinary per-image self-attention
    torch.testing.assert_close(MultiViewSelfAttention(1)(attn, x), AttnProcessor2_0()(attn, x))


def test_views_of_one_object_exchange_information_and_objects_do_not():
    gen = tiny_generator()
    cond = gen.encode_prompts(["a red chair", "a blue car"])
    x = torch.randn(2, *gen.latent_shape)
    t = torch.tensor([500, 500])
    with torch.no_grad():
        out = gen.denoise(x, t, cond)
        y = x.clone()
        y[0, 0] += 1.0  # change view 0 of object 0
        changed = gen.denoise(y, t, cond)
    assert out.shape == x.shape
    assert not torch.allclose(changed[0, 2], out[0, 2])  # another view of the same object sees it
    torch.testing.assert_close(changed[1], out[1])  # the other object does not


def official_input_c2w(elevation: float = 10.0, radius: float = 1.4) -> np.ndarray:
    """``geo_util.default_4_cams``: orbit_camera(−elevation, azimuths) in OpenGL, then columns 1:3 negated."""
    out = []
    for azim in (0.0, 90.0, 180.0, 270.0):
        e, a = math.radians(-elevation), math.radians(azim)
        pos = np.array([radius * math.cos(e) * math.sin(a), -radius * math.sin(e), radius * math.cos(e) * math.cos(a)])
        forward = pos / np.linalg.norm(pos)  # target (origin) -> camera
        right = np.cross([0.0, 1.0, 0.0], forward)
        right /= np.linalg.norm(right)
        up = np.cross(forward, right)
        c2w = np.eye(4)
        c2w[:3, :3] = np.stack([right, up, forward], axis=1)
        c2w[:3, 3] = pos
        c2w[:3, 1:3] *= -1  # OpenGL -> OpenCV
        out.append(c2w)
    return np.stack(out)


def test_input_cameras_are_the_official_ones():
    cams = DiffSplatGenerator.input_cameras(1)
    np.testing.assert_allclose(cams.cam_to_world[0].double().numpy(), official_input_c2w(), atol=1e-6)
    assert torch.allclose(cams.fx, torch.tensor(1422.222 / 1024))


def test_plucker_reproduces_the_official_ray_grid():
    # geo_util.plucker_ray(bug=True), written out per pixel: x = (j/(w-1) + 0.5 - cx)/fx, rays rotated by C2W,
    # normalised; plucker = [o x d, d]
    size = 6
    cams = DiffSplatGenerator.input_cameras(1)[0]
    got = diffsplat_plucker(cams, size, size)  # same size: no resampling
    c2w = official_input_c2w()
    fx = 1422.222 / 1024
    for view in range(4):
        for i in range(size):
            for j in range(size):
                d_cam = np.array([(j / (size - 1) + 0.5 - 0.5) / fx, (i / (size - 1) + 0.5 - 0.5) / fx, 1.0])
                d = c2w[view, :3, :3] @ d_cam
                d /= np.linalg.norm(d)
                o = c2w[view, :3, 3]
                expected = np.concatenate([np.cross(o, d), d])
                np.testing.assert_allclose(got[view, :, i, j].double().numpy(), expected, atol=1e-5)


def test_plucker_is_resized_bilinearly_to_the_latents():
    cams = DiffSplatGenerator.input_cameras(1)[0]
    full = diffsplat_plucker(cams, 16, 16)
    small = diffsplat_plucker(cams, 16, 4)
    expected = torch.nn.functional.interpolate(full, size=(4, 4), mode="bilinear", align_corners=False)
    torch.testing.assert_close(small, expected)


def test_splatter_decoding_follows_diffsplat_activations():
    # GaussianRenderer: scale = s_min*u + s_max*(1-u) with u = (x+1)/2; camera depth = |camera position| + d;
    # rgb, opacity (x+1)/2; centre on the ray through the pixel
    gen = tiny_generator()
    splatter = torch.zeros(1, 4, 12, 8, 8)
    splatter[:, :, 3:6] = torch.tensor([-1.0, 0.0, 1.0]).view(1, 1, 3, 1, 1)
    splatter[:, :, 11] = 0.25
    splatter[:, :, 6] = 1.0  # quaternion w
    gen.splatter = lambda latents: splatter
    g = gen.gaussians(torch.zeros(1, *gen.latent_shape))
    s_min, s_max = 0.0005, 0.02
    expected = [s_min * u + s_max * (1 - u) for u in (0.0, 0.5, 1.0)]
    torch.testing.assert_close(g.scales[0, 0], torch.tensor(expected))
    assert g.num_gaussians == 4 * 8 * 8
    # centres: geo_util.unproject_depth of depth 1.4 + 0.25 with the official C2W, pixel j at x = j / (W - 1)
    c2w, fx, z = official_input_c2w(), 1422.222 / 1024, 1.65
    expected = np.zeros((4, 8, 8, 3))
    for view in range(4):
        for i in range(8):
            for j in range(8):
                cam = np.array([(j / 7 - 0.5) / fx * z, (i / 7 - 0.5) / fx * z, z, 1.0])
                expected[view, i, j] = (c2w[view] @ cam)[:3]
    np.testing.assert_allclose(g.means[0].double().numpy(), expected.reshape(-1, 3), atol=1e-5)
    torch.testing.assert_close(g.opacities, torch.full_like(g.opacities, 0.5))


def test_decode_renders_four_views_from_jittered_cameras():
    gen = tiny_generator()
    x = torch.randn(2, *gen.latent_shape)
    renders = gen.decode(x, generator=torch.Generator().manual_seed(0))
    assert renders.images.shape == (2, 4, 3, 16, 16)
    assert renders.alpha.shape == (2, 4, 1, 16, 16) and renders.normals.shape == (2, 4, 3, 16, 16)
    assert 0 <= renders.images.min() and renders.images.max() <= 1
    fixed = gen.decode(x, random_cameras=False).cameras.cam_to_world
    torch.testing.assert_close(fixed[0], DiffSplatGenerator.input_cameras(1).cam_to_world[0])
    assert not torch.allclose(renders.cameras.cam_to_world[0], fixed[0])


def test_training_renders_get_the_official_image_noise():
    gen, noisy = tiny_generator(), tiny_generator(image_noise_std=2e-3)
    x = torch.randn(1, *gen.latent_shape)
    with torch.no_grad():
        clean = gen.decode(x, generator=torch.Generator().manual_seed(0)).images
        got = noisy.decode(x, generator=torch.Generator().manual_seed(0)).images
    rng = torch.Generator().manual_seed(0)
    noisy.cameras(1, generator=rng)  # the noise is drawn after the cameras, from the same stream
    expected_noise = torch.randn(clean.shape, generator=rng)
    torch.testing.assert_close(got, clean + 2e-3 * expected_noise)
    with torch.no_grad():  # the fixed evaluation views stay clean
        torch.testing.assert_close(noisy.decode(x, random_cameras=False).images, gen.decode(x, random_cameras=False).images)


def test_reward_gradient_reaches_the_latents_through_vae_and_renderer():
    gen = tiny_generator()
    x = torch.randn(1, *gen.latent_shape, requires_grad=True)
    renders = gen.decode(x, generator=torch.Generator().manual_seed(0))
    renders.images.mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_gradient_checkpointing_gives_the_same_gradients():
    def grads(checkpointing: bool) -> tuple[torch.Tensor, torch.Tensor]:
        gen = tiny_generator(gradient_checkpointing=checkpointing)
        torch.manual_seed(1)
        x = torch.randn(1, *gen.latent_shape, requires_grad=True)
        cond = gen.encode_prompts(["a red chair"])
        eps = gen.denoise(x, torch.tensor([300]), cond)
        (g_denoise,) = torch.autograd.grad(eps.square().sum(), x)
        (g_decode,) = torch.autograd.grad(gen.splatter(x).square().sum(), x)
        return g_denoise, g_decode

    plain, checkpointed = grads(False), grads(True)
    assert tiny_generator(gradient_checkpointing=True).vae.decoder.gradient_checkpointing
    for a, b in zip(plain, checkpointed):
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b)


def t5_tokenizer_folder(folder):
    """A sentencepiece T5 tokenizer folder laid out like PixArt-Σ's (``spiece.model`` + ``tokenizer_config.json``)."""
    import sentencepiece

    folder.mkdir(parents=True)
    corpus = folder.parent / "corpus.txt"
    corpus.write_text("\n".join(["a red chair", "a blue car", "a wooden table"] * 30))
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(folder / "spiece"), vocab_size=30, model_type="unigram", pad_id=0,
        eos_id=1, unk_id=2, bos_id=-1, hard_vocab_limit=False, minloglevel=2,
    )
    (folder / "spiece.vocab").unlink()
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "T5Tokenizer", "extra_ids": 0}))


def test_loads_from_a_folder_in_the_official_layout(tmp_path):
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    transformer = PixArtTransformer2DModel(**TINY["transformer"])
    folder = tmp_path / "gsdiff" / "checkpoints" / "013020" / "transformer_ema"
    transformer.save_pretrained(folder)
    # the released config names DiffSplat's class and carries its extra options
    config = json.loads((folder / "config.json").read_text())
    config.update(_class_name="PixArtTransformerMV2DModel", view_concat_condition=False, input_concat_plucker=True,
                  input_concat_binary_mask=False)
    (folder / "config.json").write_text(json.dumps(config))
    vae = AutoencoderKL(**TINY["vae"])
    state = {f"vae.{k}": v.contiguous() for k, v in vae.state_dict().items()}
    state["tiny_decoder.layers.0.weight"] = torch.zeros(1)  # the official file also holds a tiny decoder
    (tmp_path / "gsvae").mkdir()
    save_file(state, str(tmp_path / "gsvae" / "model.safetensors"))
    AutoencoderKL(**{**TINY["vae"], "in_channels": 3, "out_channels": 3}).save_config(tmp_path / "vae-config")
    T5EncoderModel(T5Config(**TINY["text_encoder"])).save_pretrained(tmp_path / "text" / "text_encoder")
    t5_tokenizer_folder(tmp_path / "text" / "tokenizer")

    gen = DiffSplatGenerator(
        repo=str(tmp_path), transformer="gsdiff/checkpoints/013020/transformer_ema", gsvae="gsvae/model.safetensors",
        vae_config=str(tmp_path / "vae-config"), text_model=str(tmp_path / "text"), dtype="float32",
        render_size=16, max_text_length=8,
    )
    for name, p in transformer.state_dict().items():
        torch.testing.assert_close(gen.denoiser.state_dict()[name], p)
    z = torch.randn(1, *gen.latent_shape)
    with torch.no_grad():
        torch.testing.assert_close(gen.splatter(z)[0], vae.decode(z[0] / vae.config.scaling_factor).sample.clamp(-1, 1))
    cond = gen.encode_prompts(["a red chair", "", "a wooden table a red chair a blue car"])
    assert cond["embeds"].shape == (3, 8, 16)
    # PixArt-Σ's tokenisation: pad to max_length, truncate, "" is the end-of-sequence token alone
    expected = gen.tokenizer(["a red chair", "", "a wooden table a red chair a blue car"], padding="max_length",
                             max_length=8, truncation=True).attention_mask
    assert cond["mask"].tolist() == expected
    assert expected[1] == [1, 0, 0, 0, 0, 0, 0, 0] and expected[2] == [1] * 8
    ids = gen.tokenizer([""]).input_ids
    assert ids == [[gen.tokenizer.eos_token_id]]


def test_missing_sentencepiece_is_a_clear_error(monkeypatch):
    import zoo.tasks.text_to_3d.diffsplat as diffsplat

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sentencepiece" else real(name, *a))
    with pytest.raises(ImportError, match=r"alignzoo\[diffsplat\]"):
        diffsplat.require_sentencepiece()


def test_gsvae_loading_rejects_a_mismatched_file(tmp_path):
    (tmp_path / "gsvae").mkdir()
    save_file({"vae.encoder.conv_in.weight": torch.zeros(8, 3, 3, 3)}, str(tmp_path / "gsvae" / "model.safetensors"))
    AutoencoderKL(**{**TINY["vae"], "in_channels": 3, "out_channels": 3}).save_config(tmp_path / "vae-config")
    with pytest.raises(RuntimeError):
        load_gsvae(str(tmp_path), "gsvae/model.safetensors", str(tmp_path / "vae-config"))


def test_real_size_matches_the_released_model():
    # DiffSplat's README: the PixArt-Σ-based transformer has 0.61 B parameters; the SDXL VAE has 83.7 M (3 ch).
    with torch.device("meta"):
        transformer = PixArtTransformer2DModel(**REAL_SIZE["transformer"])
        vae = AutoencoderKL(**REAL_SIZE["vae"])
    n_transformer = sum(p.numel() for p in transformer.parameters())
    n_vae = sum(p.numel() for p in vae.parameters())
    assert 0.605e9 < n_transformer < 0.615e9, n_transformer
    assert 83.6e6 < n_vae < 83.8e6, n_vae
    assert transformer.config.caption_channels == REAL_SIZE["text_encoder"]["d_model"]
