"""VPRModel: the LightningModule that trains and validates a backbone + aggregator.

Its state dict holds only ``backbone.*`` and ``aggregator.*``, the layout of the released
SALAD checkpoints; its hyperparameters (saved in every Lightning checkpoint) carry the
architecture, so ``eval.py`` rebuilds the model from the checkpoint alone.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch

from models.architecture import WEIGHT_SOURCE_ARGUMENTS, Architecture
from models.image_size import VALIDATION_SIZE_KEY
from models.registry import BACKBONES
from utils.errors import UserError
from utils.training.metric_learning import DEFAULT_LOSS, DEFAULT_MINER, DEFAULT_MINER_MARGIN, MetricLearningObjective
from models.released import released_model
from models.vpr_net import VPRNet, build_network
from utils.evaluation.retrieval import retrieve
from utils.evaluation.metrics import RECALL_KS
from utils.evaluation.results import format_recall_table

log = logging.getLogger(__name__)


class NonFiniteError(UserError, RuntimeError):
    """A NaN or infinity in descriptors or loss: training stops at that step."""


@dataclass
class WarmupMultiStep:
    """The learning-rate factor of optimizer step ``step``: a linear warmup from ``1/warmup_steps``
    to 1 over ``warmup_steps`` steps, times ``gamma`` for each of ``milestone_epochs`` passed
    (an epoch being ``steps_per_epoch`` steps). A plain object, so the schedule's state is saved
    in checkpoints as numbers.
    """

    warmup_steps: int = 0
    milestone_epochs: list[int] = field(default_factory=list)
    gamma: float = 0.1
    steps_per_epoch: int = 1

    def __call__(self, step: int) -> float:
        warmup = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps > 0 else 1.0
        passed = sum(step >= epoch * self.steps_per_epoch for epoch in self.milestone_epochs)
        return warmup * self.gamma**passed


def warn_if_random_backbone(network: VPRNet) -> None:
    """One warning line when training starts from a backbone without pretrained weights."""
    config = network.architecture.backbone_config if network.architecture else {}
    if not any(config.get(name) for name in WEIGHT_SOURCE_ARGUMENTS):
        log.warning(
            "%s starts from random weights (training from scratch); %s",
            network.architecture.backbone_arch, network.backbone.pretrained_weights_hint(),
        )


def training_backbone_config(backbone_arch: str, backbone_config: dict[str, Any] | None) -> dict[str, Any]:
    """The backbone arguments a training run builds with.

    ``None`` gives the paper's (for its backbone) or the backbone's defaults. Arguments of another
    backbone family (a ResNet's ``layers_to_crop`` kept from a config file when ``backbone_arch``
    names a ViT) are left out, with one notice line naming them. The backbone starts from its
    pretrained weights unless ``pretrained`` (or ``pretrained_path``) is given.
    """
    paper = released_model("dinov2_salad").architecture
    if backbone_config is None:
        backbone_config = dict(paper.backbone_config) if backbone_arch == paper.backbone_arch else {}
    own = BACKBONES.arguments(backbone_arch)
    of_others = {key for name in BACKBONES.names() for key in BACKBONES.arguments(name)}
    foreign = [key for key in backbone_config if key not in own and key in of_others]
    if foreign:
        log.warning("backbone_config: %s left out (another backbone family's arguments, not %s's)",
                    ", ".join(foreign), backbone_arch)
    config = {key: value for key, value in backbone_config.items() if key not in foreign}
    if "pretrained" in own and not any(key in config for key in WEIGHT_SOURCE_ARGUMENTS):
        config["pretrained"] = True
    return config


class VPRModel(pl.LightningModule):
    """Backbone + aggregator trained with a metric-learning loss on P places x K images.

    The defaults are the paper's recipe: the released DINOv2 SALAD architecture, starting from
    DINOv2's pretrained weights.

    Args:
        backbone_arch, backbone_config: a name of ``models.BACKBONES`` and its arguments
            (``None``: the paper's for DINOv2 SALAD, else the backbone's defaults; the backbone
            starts from its pretrained weights unless ``pretrained`` is false; another family's
            arguments are left out: :func:`training_backbone_config`).
        agg_arch, agg_config: a name of ``models.AGGREGATORS`` and its arguments (``None``: the
            paper's for SALAD, else the aggregator's defaults).
        lr, optimizer, weight_decay, momentum: the optimizer (``adamw``, ``adam`` or ``sgd``).
        backbone_lr_factor: the backbone's learning rate is ``lr`` times this (BoQ's recipe: 0.1).
        lr_sched: ``linear`` (factor from ``start_factor`` to ``end_factor`` over ``total_iters``
            optimizer steps, stepped every batch, as published), ``cosine``, ``multistep`` (a linear
            warmup over ``warmup_steps``, then the lr times ``gamma`` at each of ``milestone_epochs``)
            or ``none``.
        lr_sched_args: the scheduler's arguments.
        loss_name: a name of ``utils.training.metric_learning.LOSSES`` (pytorch-metric-learning).
        loss_config: the loss's arguments, e.g. ``{"alpha": 2.0}`` (``None``: its defaults, the
            published ones; a checkpoint records them all).
        miner_name: a name of ``utils.training.metric_learning.MINERS``; ``None``: no mining.
        miner_config: the miner's arguments other than its margin, e.g. ``{"type_of_triplets":
            "hard"}`` (``None``: its defaults).
        miner_margin: the miner's margin (MultiSimilarityMiner's epsilon, TripletMarginMiner's margin).
        recall_ks: the K of the Recall@K logged at validation.
        compile_network: ``torch.compile`` the backbone and the aggregator in place
            (``nn.Module.compile``: the state dict and checkpoints keep their keys).
    """

    def __init__(
        self,
        backbone_arch: str = "dinov2_vitb14",
        backbone_config: dict[str, Any] | None = None,
        agg_arch: str = "SALAD",
        agg_config: dict[str, Any] | None = None,
        lr: float = 6e-5,
        optimizer: Literal["adamw", "adam", "sgd"] = "adamw",
        weight_decay: float = 9.5e-9,
        momentum: float = 0.9,
        backbone_lr_factor: float = 1.0,
        lr_sched: Literal["linear", "cosine", "multistep", "none"] = "linear",
        lr_sched_args: dict[str, Any] | None = None,
        loss_name: str = DEFAULT_LOSS,
        loss_config: dict[str, Any] | None = None,
        miner_name: str | None = DEFAULT_MINER,
        miner_config: dict[str, Any] | None = None,
        miner_margin: float = DEFAULT_MINER_MARGIN,
        recall_ks: list[int] | None = None,
        compile_network: bool = False,
    ) -> None:
        super().__init__()
        paper = released_model("dinov2_salad").architecture
        backbone_config = training_backbone_config(backbone_arch, backbone_config)
        if agg_config is None:
            agg_config = dict(paper.agg_config) if agg_arch == paper.agg_arch else {}
        if lr_sched_args is None:
            lr_sched_args = {"start_factor": 1.0, "end_factor": 0.2, "total_iters": 4000}
        self.save_hyperparameters()
        # Built first: an unknown loss or miner is refused before the network (and its weights) is.
        objective = MetricLearningObjective(loss_name, miner_name, miner_margin, loss_config, miner_config)
        network = build_network(Architecture(backbone_arch, backbone_config, agg_arch, agg_config))
        warn_if_random_backbone(network)
        # The network's two parts are this module's own, so checkpoints read backbone.* and aggregator.*.
        self.backbone = network.backbone
        self.aggregator = network.aggregator
        if compile_network:
            self.backbone.compile()
            self.aggregator.compile()
        # The resolved configuration is what a checkpoint must carry to rebuild this model.
        resolved = network.architecture
        self.architecture = resolved
        self.hparams.update(backbone_config=resolved.backbone_config, agg_config=resolved.agg_config, lr_sched_args=lr_sched_args)
        self.hparams.update(loss_config=objective.loss_config, miner_config=objective.miner_config)
        self.objective = objective
        self.recall_ks = tuple(sorted(set(recall_ks or RECALL_KS)))
        self._val_outputs: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    # ----------------------------------------------------------------------------- inference
    forward = VPRNet.forward  # the network's forward, on this module's backbone and aggregator

    @property
    def network(self) -> VPRNet:
        """The network this module trains: a ``VPRNet`` on the same backbone and aggregator (same
        parameters, no copy) that knows its architecture, for ``utils.evaluation`` and export."""
        return VPRNet(self.backbone, self.aggregator, self.architecture)

    def setup(self, stage: str) -> None:
        """Refuse, before any batch, an image size the backbone cannot take (the data module's
        ``image_size`` and ``val_image_size``)."""
        datamodule = self.trainer.datamodule if self.trainer is not None else None
        for name in ("image_size", "val_image_size"):
            size = getattr(datamodule, name, None)
            if size is not None:
                try:
                    self.backbone.check_image_size(*size)
                except ValueError as error:
                    raise UserError(f"{name}={list(size)}: {error}") from None

    # ----------------------------------------------------------------------------- training
    def configure_optimizers(self) -> Any:
        hp = self.hparams
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        rest = [p for name, p in self.named_parameters() if p.requires_grad and not name.startswith("backbone.")]
        params = [{"params": backbone, "lr": hp.lr * hp.backbone_lr_factor}, {"params": rest}]
        if hp.optimizer == "adamw":
            optimizer = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
        elif hp.optimizer == "adam":
            optimizer = torch.optim.Adam(params, lr=hp.lr, weight_decay=hp.weight_decay)
        elif hp.optimizer == "sgd":
            optimizer = torch.optim.SGD(params, lr=hp.lr, weight_decay=hp.weight_decay, momentum=hp.momentum)
        else:
            raise UserError(f"optimizer={hp.optimizer!r}; expected adamw, adam or sgd")
        if hp.lr_sched == "none":
            return optimizer
        if hp.lr_sched == "linear":
            scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, **hp.lr_sched_args)
        elif hp.lr_sched == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, **hp.lr_sched_args)
        elif hp.lr_sched == "multistep":
            steps_per_epoch = max(1, int(self.trainer.estimated_stepping_batches) // max(1, self.trainer.max_epochs or 1))
            schedule = WarmupMultiStep(steps_per_epoch=steps_per_epoch, **hp.lr_sched_args)
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        else:
            raise UserError(f"lr_sched={hp.lr_sched!r}; expected linear, cosine, multistep or none")
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor] | dict[str, tuple[torch.Tensor, torch.Tensor]],
                      batch_idx: int) -> torch.Tensor:
        """``batch``: images ``[P, K, 3, H, W]`` and place ids ``[P, K]``; or, with several training
        sets, a mapping set name -> such a pair: one forward pass, one loss per set, summed."""
        sets = batch if isinstance(batch, dict) else {"": batch}
        images = torch.cat([places.flatten(0, 1) for places, _ in sets.values()])  # [sum P*K, 3, H, W]
        descriptors = self(images)
        self._stop_if_not_finite(descriptors, "descriptors", batch_idx)
        loss, start = 0.0, 0
        for name, (places, labels) in sets.items():
            count = labels.numel()
            output = self.objective(descriptors[start:start + count], labels.flatten())
            start += count
            self._stop_if_not_finite(output.loss, "loss", batch_idx)
            suffix = f"/{name}" if name else ""
            if name:
                self.log(f"loss{suffix}", output.loss.detach() / max(self.trainer.world_size, 1), sync_dist=False)
            self.log(f"mined_fraction{suffix}", output.mined_fraction, prog_bar=True)
            loss = loss + output.loss
        self.log("loss", loss.detach() / max(self.trainer.world_size, 1), prog_bar=True, sync_dist=False)
        return loss

    def _stop_if_not_finite(self, values: torch.Tensor, what: str, batch_idx: int) -> None:
        if not torch.isfinite(values).all():
            raise NonFiniteError(
                f"non-finite {what} at optimizer step {self.global_step} (epoch {self.current_epoch}, "
                f"batch {batch_idx}); training stopped, no checkpoint written for this step"
            )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse to write a checkpoint whose weights hold a NaN or an infinity."""
        for name, tensor in checkpoint["state_dict"].items():
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise NonFiniteError(
                    f"non-finite weights in {name} at optimizer step {self.global_step}; "
                    f"training stopped, no checkpoint written"
                )
        datamodule = getattr(self._trainer, "datamodule", None)
        size = getattr(datamodule, "val_image_size", None) or getattr(datamodule, "image_size", None)
        if size is not None:  # the size tools default to (models.image_size)
            checkpoint[VALIDATION_SIZE_KEY] = [int(side) for side in size]

    # ----------------------------------------------------------------------------- validation
    def on_validation_epoch_start(self) -> None:
        self._val_outputs = {}

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        """``batch``: images ``[B, 3, H, W]`` and their indices in the set (database then queries)."""
        images, indices = batch
        descriptors = self(images).float()
        if not torch.isfinite(descriptors).all():  # NaN weights: say so, not "no descriptor for N images" later
            source = f"the weights of {self.trainer.ckpt_path}" if self.trainer.ckpt_path else "the weights"
            raise NonFiniteError(f"non-finite descriptors in validation (set {dataloader_idx}, batch {batch_idx}): "
                                 f"{source} hold NaN or infinite values; use an earlier checkpoint")
        self._val_outputs.setdefault(dataloader_idx, []).append((indices, descriptors))

    def on_validation_epoch_end(self) -> None:
        """Recall@K of every validation set: logged (``<set>/R<K>``; ``R1``, the first set's
        Recall@1, names the checkpoints) and printed as one table per set."""
        val_sets = getattr(self.trainer.datamodule, "val_sets", None) if self.trainer.datamodule else None
        if not val_sets:
            return
        trainer = self.trainer
        limit = trainer.limit_val_batches  # an int counts batches (1: one batch), a float is a fraction
        limited = trainer.sanity_checking or bool(trainer.fast_dev_run) or isinstance(limit, int) or limit != 1.0
        tables = []
        for dataloader_idx, eval_set in enumerate(val_sets):
            outputs = self._val_outputs.get(dataloader_idx, [])
            descriptors = self.gather_in_dataset_order(outputs, eval_set.num_db + eval_set.num_queries, limited)
            if descriptors is None:
                log.info("%s: validation saw part of the set (fast_dev_run, limit_val_batches or the sanity check): "
                         "no recall", eval_set.name)
                continue
            recalls = retrieve(eval_set, descriptors, self.recall_ks).recalls or {}
            for k, value in recalls.items():
                # every rank computed the same value from the gathered descriptors; syncing averages equals
                self.log(f"{eval_set.name}/R{k}", value, prog_bar=k == 1, sync_dist=True)
            if dataloader_idx == 0 and 1 in recalls:
                self.log("R1", recalls[1], logger=False, sync_dist=True)
            if recalls:
                title = f"{eval_set.name}, epoch {self.current_epoch}, step {self.global_step}"
                tables.append(format_recall_table(title, recalls))
        if tables:
            self.print("\n".join(tables))
        self._val_outputs = {}

    def gather_in_dataset_order(
        self, outputs: list[tuple[torch.Tensor, torch.Tensor]], total: int, partial_allowed: bool = False
    ) -> np.ndarray | None:
        """Descriptors of the whole set from every rank, in dataset order, without the
        duplicates a distributed sampler pads in.

        Args:
            outputs: this rank's ``(indices [b], descriptors [b, D])`` per batch.
            total: number of images in the set.

            partial_allowed: validation was limited to some batches: a set not fully described
                gives ``None`` instead of an error.

        Returns:
            ``[total, D]`` float32, or ``None`` (see ``partial_allowed``).
        """
        if not outputs:
            if partial_allowed:
                return None
            raise RuntimeError(f"validation produced no descriptor for the {total} images of a set")
        indices = torch.cat([i for i, _ in outputs])
        descriptors = torch.cat([d for _, d in outputs])
        if self.trainer.world_size > 1:
            indices = self.all_gather(indices).flatten(0, 1)
            descriptors = self.all_gather(descriptors).flatten(0, 1)
        ordered = torch.full((total, descriptors.shape[1]), math.nan, dtype=torch.float32, device=descriptors.device)
        ordered[indices] = descriptors  # padded duplicates write the same image twice
        if torch.isnan(ordered).any():
            if partial_allowed:
                return None
            missing = int(torch.isnan(ordered[:, 0]).sum())
            raise RuntimeError(f"validation produced no descriptor for {missing} of {total} images")
        return ordered.cpu().numpy()
