"""Recording and replaying constructor arguments, so that any zoo object can be written as
``{class_path, init_args}`` (the LightningCLI / jsonargparse convention) and rebuilt from it.

``save_pretrained`` writes that form to ``config.yaml``; ``from_pretrained`` calls :func:`instantiate` on it.
Nothing is pickled: only plain YAML values and nested ``class_path`` blocks are allowed.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

_PLAIN = (str, int, float, bool, type(None))


class Configurable:
    """Mixin that records the arguments an object was constructed with.

    Subclass it (``class MyReward(Configurable, nn.Module)``) and :func:`to_config` can write the object as a
    ``class_path``/``init_args`` block, whether it was built by the CLI or in plain Python. Arguments that are
    themselves objects must be ``Configurable`` too (or plain YAML values) for the parent to be saveable.
    """

    _init_config: dict[str, Any]

    def __new__(cls, *args: Any, **kwargs: Any):
        obj = super().__new__(cls)
        params = inspect.signature(cls.__init__).parameters
        try:
            bound = inspect.signature(cls.__init__).bind(None, *args, **kwargs)
        except TypeError:
            # copy/pickle protocols call cls.__new__(cls) bare; the copied __dict__ brings _init_config back
            return obj
        bound.apply_defaults()
        init_args: dict[str, Any] = {}
        for name, value in list(bound.arguments.items())[1:]:  # [0] is self
            kind = params[name].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                init_args.update(value)
            elif kind is inspect.Parameter.VAR_POSITIONAL:
                if value:
                    raise TypeError(f"{cls.__name__}: *args cannot be recorded in a config; use named arguments")
            else:
                init_args[name] = value
        # object.__setattr__ so that nn.Module's __setattr__ (not yet initialised) is bypassed
        object.__setattr__(obj, "_init_config", {"class": cls, "init_args": init_args})
        return obj

def class_path_of(cls: type) -> str:
    """The importable dotted path of a class (what LightningCLI calls ``class_path``)."""
    if "<locals>" in cls.__qualname__:
        raise TypeError(f"{cls.__qualname__} is defined inside a function and cannot be re-imported from a config")
    return f"{cls.__module__}.{cls.__qualname__}"


def to_config(value: Any, *, _where: str = "config") -> Any:
    """Convert a value (a :class:`Configurable`, or plain data holding them) to YAML-safe data."""
    if isinstance(value, Configurable):
        cfg = value._init_config
        return {
            "class_path": class_path_of(cfg["class"]),
            "init_args": {k: to_config(v, _where=f"{_where}.{k}") for k, v in cfg["init_args"].items()},
        }
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): to_config(v, _where=f"{_where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_config(v, _where=f"{_where}[{i}]") for i, v in enumerate(value)]
    raise TypeError(
        f"{_where}: a {type(value).__module__}.{type(value).__qualname__} cannot be written to a config. "
        "Pass plain values, or an object whose class subclasses zoo.Configurable (or was given as a class_path)."
    )


def import_class(class_path: str) -> type:
    """Import ``pkg.module.Class`` (nested classes allowed)."""
    module_name, _, attr = class_path.rpartition(".")
    while module_name:
        try:
            obj: Any = importlib.import_module(module_name)
        except ModuleNotFoundError:
            module_name, _, head = module_name.rpartition(".")
            attr = f"{head}.{attr}"
            continue
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj
    raise ImportError(f"cannot import class_path {class_path!r}")


def instantiate(config: Any) -> Any:
    """Rebuild objects from :func:`to_config` output: every ``{class_path, init_args}`` mapping is constructed."""
    if isinstance(config, Mapping):
        if "class_path" in config:
            extra = set(config) - {"class_path", "init_args", "dict_kwargs"}
            if extra:
                raise ValueError(f"unexpected keys {sorted(extra)} beside class_path {config['class_path']!r}")
            cls = import_class(config["class_path"])
            kwargs = {k: instantiate(v) for k, v in (config.get("init_args") or {}).items()}
            kwargs.update(config.get("dict_kwargs") or {})
            return cls(**kwargs)
        return {k: instantiate(v) for k, v in config.items()}
    if isinstance(config, list):
        return [instantiate(v) for v in config]
    return config
