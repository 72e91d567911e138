"""save_pretrained / from_pretrained symmetry: same class (a user's subclass included), bit-identical outputs."""

from __future__ import annotations

import pytest
import torch
import yaml
from factories import TinyNet, TinyRewardRegression
from safetensors.torch import load_file

import zoo
from zoo.configurable import Configurable, instantiate, to_config


class UserVariant(TinyRewardRegression):
    """What a downstream project does: subclass an algorithm and override one documented hook."""

    def __init__(self, net: TinyNet, target: float = 0.5, lr: float = 0.1, bonus: float = 1.0) -> None:
        super().__init__(net, target=target, lr=lr)
        self.bonus = bonus

    def compute_rewards(self, samples, batch):
        return super().compute_rewards(samples, batch) + self.bonus


def _trained(module: TinyRewardRegression, steps: int = 5) -> TinyRewardRegression:
    opt = module.configure_optimizers()
    x = torch.randn(16, 8, generator=torch.Generator().manual_seed(1))
    for _ in range(steps):
        opt.zero_grad()
        (-module.compute_rewards(module(x), x).mean()).backward()
        opt.step()
    return module


def test_round_trip_user_subclass_bit_identical(tmp_path):
    torch.manual_seed(0)
    module = _trained(UserVariant(TinyNet(width=8, depth=3), target=0.25, bonus=2.0))
    module.save_pretrained(tmp_path / "release", metrics={"reward": 0.5})

    files = sorted(p.name for p in (tmp_path / "release").iterdir())
    assert files == ["README.md", "config.yaml", "model.safetensors"]
    config = yaml.safe_load((tmp_path / "release" / "config.yaml").read_text())
    assert config["model"]["class_path"] == "test_save_load.UserVariant"
    assert config["model"]["init_args"]["net"] == {
        "class_path": "factories.TinyNet",
        "init_args": {"width": 8, "depth": 3},
    }
    assert config["model"]["init_args"]["bonus"] == 2.0

    torch.manual_seed(123)  # a different init: equality below can only come from the loaded weights
    loaded = zoo.from_pretrained(tmp_path / "release")
    assert type(loaded) is UserVariant
    x = torch.randn(4, 8)
    assert torch.equal(loaded(x), module(x))
    assert torch.equal(loaded.compute_rewards(loaded(x), x), module.compute_rewards(module(x), x))
    assert set(load_file(tmp_path / "release" / "model.safetensors")) == set(module.state_dict())


def test_card_carries_paper_and_metrics(tmp_path):
    from huggingface_hub import ModelCard

    TinyRewardRegression(TinyNet()).save_pretrained(tmp_path, metrics={"reward": 0.125})
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.library_name == "alignzoo"
    assert {"alignzoo", "tiny-regression", "arxiv:0000.00000"} <= set(card.data.tags)
    assert "| reward | 0.1250 |" in card.text
    assert "@misc{tiny" in card.text


def test_from_pretrained_checks_expected_class(tmp_path):
    TinyRewardRegression(TinyNet()).save_pretrained(tmp_path)
    with pytest.raises(TypeError, match="is not a test_save_load.UserVariant"):
        UserVariant.from_pretrained(tmp_path)


def test_missing_weights_are_an_error(tmp_path):
    from safetensors.torch import save_file

    module = TinyRewardRegression(TinyNet())
    module.save_pretrained(tmp_path)
    partial = {k: v for k, v in module.state_dict().items() if not k.startswith("net.body.0")}
    save_file(partial, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="lacks weights"):
        zoo.from_pretrained(tmp_path)


def test_unsaveable_argument_names_itself():
    module = TinyRewardRegression(TinyNet(), target=0.5)
    module._init_config["init_args"]["target"] = object()
    with pytest.raises(TypeError, match=r"model\.target: a builtins\.object cannot be written"):
        to_config(module, _where="model")


def test_configurable_records_defaults_and_kwargs_and_survives_deepcopy():
    import copy

    class_config = to_config(TinyNet(width=4))
    assert class_config == {"class_path": "factories.TinyNet", "init_args": {"width": 4, "depth": 2}}
    clone = copy.deepcopy(TinyNet(width=4))
    assert to_config(clone) == class_config
    rebuilt = instantiate(class_config)
    assert isinstance(rebuilt, TinyNet) and rebuilt.body[0].in_features == 4


def test_local_classes_are_refused():
    class Local(Configurable):
        pass

    with pytest.raises(TypeError, match="inside a function"):
        to_config(Local())


def test_unknown_source_lists_what_is_accepted(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a local folder, a registry name"):
        zoo.from_pretrained(str(tmp_path / "missing" / "deeper"))
