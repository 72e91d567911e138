"""``HubPublish``: publish releases of the model being trained to the Hugging Face Hub from a Lightning run.

Each release is first written locally with ``save_pretrained`` (``model.safetensors``, the run's resolved config,
a model card with the run's metrics), then uploaded as one Hub commit by :func:`zoo.hub.push_release` (create the
repo if needed, commit, optionally tag; transient failures retried with backoff). An upload that still fails is
reported with the command that retries it (``zoo push <folder> <repo>``); it never stops or loses the training run.
In a config::

    trainer:
      callbacks:
        - class_path: zoo.callbacks.HubPublish
          init_args: {repo_id: my-org/my-model, when: best, monitor: val/reward}
"""

from __future__ import annotations

import math
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.utilities import rank_zero_info

from zoo.hub import PushError, PushResult, push_release, save_pretrained


@dataclass(frozen=True)
class PublishedRelease:
    """One release of a run: its local folder and where it went (``result``) or why it did not (``error``)."""

    folder: Path
    result: PushResult | None = None
    error: str | None = None


def redact_tokens(config: Any) -> Any:
    """A copy of ``config`` with every value under a key named ``token`` blanked: tokens are never published."""
    if isinstance(config, dict):
        return {k: (None if k == "token" else redact_tokens(v)) for k, v in config.items()}
    if isinstance(config, list):
        return [redact_tokens(v) for v in config]
    return config


class HubPublish(Callback):
    """Publish the trained module to the Hub repo ``repo_id`` (rank 0 only).

    Args:
        repo_id: ``org/name`` of the Hub model repo (created if missing).
        when: ``fit_end`` (once, after training), ``best`` (each time ``monitor`` improves, checked at the end of
            every training epoch) or ``every_n_epochs``.
        monitor: metric in ``trainer.callback_metrics`` that ``when="best"`` follows.
        mode: whether a higher (``max``) or lower (``min``) ``monitor`` is better.
        every_n_epochs: period of ``when="every_n_epochs"``.
        private: visibility of the repo if this callback creates it.
        branch: branch that receives the release commits (created from ``main`` if missing; default ``main``).
        tag: tag to put on each release commit, formatted with ``{epoch}`` and ``{step}``, e.g. ``"epoch-{epoch}"``.
        create_pr: open a pull request with each release instead of committing to the branch.
        endpoint: Hub URL (default ``HF_ENDPOINT`` or huggingface.co).
        token: Hub token (default: ``HF_TOKEN`` or the saved login). It is never written into the release.
        local_dir: where release folders are written (default ``<log dir>/releases``); each release is a
            subfolder ``epoch=E-step=S``, kept whether or not the upload succeeds.
        retries: extra attempts after a transient upload failure (server error, rate limit, dropped connection).
        retry_wait_s: wait before the first retry, doubled after each.
        blocking: upload in the training thread (``True``) or in a background thread, so training continues while
            it uploads; pending uploads are awaited when fitting ends.

    Runs with ``fast_dev_run`` publish nothing (as ``ModelCheckpoint`` saves nothing).
    """

    def __init__(
        self,
        repo_id: str,
        when: Literal["fit_end", "best", "every_n_epochs"] = "fit_end",
        monitor: str | None = None,
        mode: Literal["max", "min"] = "max",
        every_n_epochs: int = 1,
        private: bool = True,
        branch: str | None = None,
        tag: str | None = None,
        create_pr: bool = False,
        endpoint: str | None = None,
        token: str | None = None,
        local_dir: str | None = None,
        retries: int = 3,
        retry_wait_s: float = 2.0,
        blocking: bool = True,
    ) -> None:
        super().__init__()
        if repo_id.count("/") != 1:
            raise ValueError(f"HubPublish: repo_id must be 'org/name', got {repo_id!r}")
        if when == "best" and monitor is None:
            raise ValueError("HubPublish(when='best') needs monitor=<a logged metric name>")
        if every_n_epochs < 1:
            raise ValueError(f"HubPublish: every_n_epochs must be >= 1, got {every_n_epochs}")
        self.repo_id, self.when, self.monitor, self.mode = repo_id, when, monitor, mode
        self.every_n_epochs = every_n_epochs
        self.private, self.branch, self.tag, self.create_pr = private, branch, tag, create_pr
        self.endpoint, self.token, self.local_dir = endpoint, token, local_dir
        self.retries, self.retry_wait_s, self.blocking = retries, retry_wait_s, blocking
        #: Every release of this run, in order (filled on rank 0).
        self.releases: list[PublishedRelease] = []
        self._best: float | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._pending: list[tuple[Path, Future]] = []

    # ------------------------------------------------------------------ hooks
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.when == "every_n_epochs" and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._publish(trainer, pl_module)
        elif self.when == "best" and self._improved(trainer):
            self._publish(trainer, pl_module)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.when == "fit_end":
            self._publish(trainer, pl_module)
        self._wait_for_uploads()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._wait_for_uploads()

    # ------------------------------------------------------------------ internals
    def _improved(self, trainer: Trainer) -> bool:
        if self.monitor not in trainer.callback_metrics:
            raise KeyError(
                f"HubPublish(monitor={self.monitor!r}): no such metric was logged; "
                f"available: {sorted(trainer.callback_metrics)}"
            )
        value = float(trainer.callback_metrics[self.monitor])
        if not math.isfinite(value):
            return False
        better = self._best is None or (value > self._best if self.mode == "max" else value < self._best)
        if better:
            self._best = value
        return better

    def _publish(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.fast_dev_run or not trainer.is_global_zero:
            return
        root = Path(self.local_dir) if self.local_dir else Path(trainer.log_dir or trainer.default_root_dir) / "releases"
        folder = root / f"epoch={trainer.current_epoch}-step={trainer.global_step}"
        metrics = {
            name: float(value)
            for name, value in trainer.callback_metrics.items()
            if isinstance(value, torch.Tensor) and value.numel() == 1
        }
        save_pretrained(pl_module, folder, metrics=metrics, run_config=run_config(trainer), repo_id=self.repo_id)
        rank_zero_info(f"HubPublish: release written to {folder}")
        tag = self.tag.format(epoch=trainer.current_epoch, step=trainer.global_step) if self.tag else None
        if self.blocking:
            self._report(folder, self._upload(folder, tag))
        else:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hub-publish")
            self._pending.append((folder, self._executor.submit(self._upload, folder, tag)))

    def _upload(self, folder: Path, tag: str | None) -> PushResult | PushError:
        try:
            return push_release(
                folder,
                self.repo_id,
                private=self.private,
                branch=self.branch,
                tag=tag,
                create_pr=self.create_pr,
                endpoint=self.endpoint,
                token=self.token,
                retries=self.retries,
                retry_wait_s=self.retry_wait_s,
            )
        except PushError as err:
            return err

    def _report(self, folder: Path, outcome: PushResult | PushError) -> None:
        if isinstance(outcome, PushError):
            self.releases.append(PublishedRelease(folder, error=str(outcome)))
            warnings.warn(f"HubPublish: {outcome}", stacklevel=2)
        else:
            self.releases.append(PublishedRelease(folder, result=outcome))
            rank_zero_info(f"HubPublish: published {outcome.pinned} ({outcome.pr_url or outcome.commit_url})")

    def _wait_for_uploads(self) -> None:
        for folder, future in self._pending:
            self._report(folder, future.result())
        self._pending.clear()
        if self._executor is not None:
            self._executor.shutdown()
            self._executor = None


def run_config(trainer: Trainer) -> dict[str, Any] | None:
    """The run's resolved LightningCLI config (from its ``SaveConfigCallback``), tokens redacted; ``None`` when
    the trainer was not built by the CLI."""
    for callback in trainer.callbacks:
        if isinstance(callback, SaveConfigCallback):
            return redact_tokens(yaml.safe_load(callback.parser.dump(callback.config, skip_none=False)))
    return None
