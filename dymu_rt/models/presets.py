"""Named configurations: the paper's benchmarks and small CPU presets.

Paper configurations (Raychaudhuri et al., CVPR 2022, Sec. 5; the dense nets of its supplement G,
BMTAS's recipe: shared stem, per-task backbone at output stride 16, R-ASPP, light decoder): NYU-v2 with ResNet-34 +
DeepLabv3+, PASCAL-Context (3 and 5 tasks) with MobileNetV2 + DeepLabv3+, CIFAR-100 as 20
five-way tasks with ResNet-9 + linear heads. The ``synth-*`` presets are the same code at
CPU scale, trained on the procedural scenes (``dymu_rt.data.synth``) in minutes.
Training defaults are the paper's where it gives them (Adam 1e-3, ×0.3 every 14K of 30K
steps, λ_A = 1, λ_I = 0.1; CIFAR 0.2 / 0.02) and far shorter for the CPU presets.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from dymu_rt.core.labels import CIFAR100_SUPERCLASSES
from dymu_rt.core.errors import ValidationError
from dymu_rt.models.anchor import AnchorNet, TaskSpec
from dymu_rt.models.backbones import BackboneSpec
from dymu_rt.models.heads import HeadSpec



@dataclasses.dataclass(frozen=True)
class TrainDefaults:
    """Default schedules; every value can be overridden on the command line."""

    anchor_steps: int = 20000
    anchor_batch: int = 8
    anchor_lr: float = 1e-3
    anchor_weight_decay: float = 1e-4
    # Anchor optimizer: adamw | adam | sgd (momentum 0.9); schedule: cosine (decay to 1% with
    # a short warm-up) | step (×anchor_decay_gamma every anchor_decay_every steps; 0 = every
    # 14/30 of anchor_steps, the paper's controller ratio).
    anchor_optimizer: str = "adamw"
    anchor_schedule: str = "cosine"
    anchor_decay_every: int = 0
    anchor_decay_gamma: float = 0.3
    # How the anchor's streams start (issue 22): "independent" (each stream at random, as
    # dymu-rt did before), "shared" (a shared-encoder multi-task net — stream 0 on the shared
    # tree, every head reading it — is trained first for anchor_pretrain_steps, then copied
    # into every stream: one backbone every stream starts from, where no ImageNet weights
    # exist), or "pretrained:/abs/FILE" (ImageNet weights in torchvision's / timm's layout,
    # dymu_rt.models.pretrained, copied into the stem and every stream: the paper's recipe).
    anchor_init: str = "independent"
    anchor_pretrain_steps: int = 0     # 0 = two thirds of anchor_steps
    # The single-task fine-tune after a shared or pretrained init (issue 22's retention levers):
    # its peak learning rate (0 = anchor_lr) and an L2-SP proximity term
    # anchor_l2sp/2 * sum_j ||theta_stream_j - theta_init||^2 that keeps every stream near the
    # shared weights it started from (0 = off; ignored with anchor_init "independent").
    anchor_finetune_lr: float = 0.0
    anchor_l2sp: float = 0.0

    edge_steps: int = 30000
    weight_steps: int = 30000
    phn_steps: int = 0            # PHN-BN baseline steps; 0 = weight_steps
    controller_batch: int = 8
    controller_lr: float = 1e-3
    decay_every: int = 14000
    decay_gamma: float = 0.3
    lambda_active: float = 1.0
    lambda_inactive: float = 0.1
    # Branching regularizer (dymu_rt.control.regularizer.RegularizerConfig): τ (None = 0.6/N)
    # and the paper's ablation switches (Table 5); all on by default.
    tau: Optional[float] = None
    inactive_loss: bool = True
    layer_weighting: bool = True
    use_affinity: bool = True
    dichotomy: bool = True
    # L_inactive with the active tasks' ν as a fixed target (gradient only into the inactive
    # nodes, which branch off the closest active task). The paper does not say; False is the
    # literal formula. On short schedules the literal form's symmetric pull drags the active
    # task's own parents onto a common stream for every (r, c) (see RegularizerConfig).
    inactive_detach: bool = False
    # Eq. 3's indices (RegularizerConfig.active_reading): "printed" (the paper as printed:
    # P_use of the parent row, the lowest choice weighs 0) or "child" (dymu-rt's reading
    # before issue 22: P_use of the choosing row, the top choice weighs 0).
    active_reading: str = "printed"
    # The edge hypernet's identity prior (issue 22; not in the paper): a logit margin added to
    # every node's own stream, so that stage 1 starts from the anchor's N single-task streams
    # for every (r, c). identity_prior is its size (0 = off, the paper's plain heads) and
    # identity_prior_learnable whether stage 1 may change it (True: a learnable parameter
    # initialized at identity_prior; False: a fixed margin).
    identity_prior: float = 4.0
    identity_prior_learnable: bool = True
    # How the prior's size falls with c: identity_prior × (1 − identity_prior_c_slope·c).
    # 0 = constant (the third session's prior); 1 = the full prior at c = 0, none at c = 1.
    identity_prior_c_slope: float = 0.0
    # Dirichlet parameter η of the task preferences r ~ Dir(η) drawn in stage 1 (edge
    # hypernet); the paper's 0.2 (supplement G, Table A-2). Stage 2 keeps 0.2.
    edge_eta: float = 0.2
    # Stage 1's supernet forward: False (the paper's Eq. 4) mixes every node's parents with
    # the soft Gumbel-softmax sample ν; True runs the sampled discrete tree (one-hot argmax of
    # the same sample) with the soft sample's gradient (straight-through). Ω always uses the
    # soft ν.
    edge_hard_gumbel: bool = False
    # Preferences (r, c) per stage-1 step: Eq. 2's expectation over (r, c) estimated with
    # one sample per step (the paper's Algorithm 1) or with k, each on controller_batch / k
    # of the step's images (the same images per step, k times as many preferences).
    edge_prefs_per_step: int = 1
    # Share of the controller stages' (r, c) draws (stage 1 and stage 2) taken at c = 0
    # exactly instead of c ~ U(0, 1) (issue 22, fourth session; not in the paper, whose c is
    # uniform). c = 0 asks for no sharing (Eq. 2's Ω has a factor c), but under U(0, 1) it has
    # measure zero: the hypernets only learn it as the limit of c > 0, where c*lambda_A's
    # pressure to share already acts. 0 = the paper's sampling.
    c_zero_share: float = 0.0
    affinity_samples: int = 64
    eval_every: int = 0
    # Gumbel temperature ζ: 5, ×0.97 every ``gumbel_every`` steps (paper: 300 of 30K steps,
    # ending near 0.24). 0 = scale the interval to the edge stage's length (edge_steps/100),
    # which reaches the paper's final temperature on short CPU schedules.
    gumbel_every: int = 300

    def gumbel_interval(self) -> int:
        """Steps between temperature decays for this schedule."""
        return self.gumbel_every if self.gumbel_every > 0 else max(1, self.edge_steps // 100)


# Settings added after runs were already stored: a run whose config lacks one was trained
# with the behaviour before the setting existed (not with today's default).
_OLD_RUN_TRAIN = {"active_reading": "child", "anchor_init": "independent", "anchor_pretrain_steps": 0}


@dataclasses.dataclass(frozen=True)
class Preset:
    """Everything needed to build an anchor net and train it."""

    name: str
    description: str
    dataset: str                 # nyuv2 | pascal | cifar100 | synth-nyuv2 | synth-pascal
    tasks: tuple[TaskSpec, ...]
    backbone: BackboneSpec
    head: HeadSpec
    input_size: tuple[int, int]
    train: TrainDefaults = TrainDefaults()
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    # Fixed hypervolume reference point, one loss per task (None: `dymu-rt eval` falls back
    # to 1.1 x the worst loss it sees, which is not comparable across runs).
    hv_reference: Optional[tuple[float, ...]] = None

    def build(self) -> AnchorNet:
        """A freshly initialized anchor net for this preset."""
        return AnchorNet(self.backbone, self.head, self.tasks, self.input_size, self.mean, self.std)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (stored in checkpoints and bundles)."""
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "Preset":
        """Inverse of :meth:`to_dict`."""
        try:
            return Preset(
                name=d["name"], description=d["description"], dataset=d["dataset"],
                tasks=tuple(TaskSpec(**t) for t in d["tasks"]),
                backbone=BackboneSpec(**d["backbone"]),
                head=HeadSpec(**{**d["head"], "aspp_rates": tuple(d["head"]["aspp_rates"])}),
                input_size=tuple(d["input_size"]), train=TrainDefaults(**{**_OLD_RUN_TRAIN, **d["train"]}),
                mean=tuple(d["mean"]), std=tuple(d["std"]),
                hv_reference=tuple(d["hv_reference"]) if d.get("hv_reference") is not None else None,
            )
        except (KeyError, TypeError) as e:
            raise ValidationError(f"preset description is malformed ({e})") from None

    def with_train(self, **overrides) -> "Preset":
        """A copy with some training defaults replaced."""
        return dataclasses.replace(self, train=dataclasses.replace(self.train, **overrides))


def _nyu_tasks(w=(1.0, 10.0, 3.0)) -> tuple[TaskSpec, ...]:
    return (TaskSpec("semseg", "segmentation", 13, w[0], 13),
            TaskSpec("normals", "normals", 3, w[1]),
            TaskSpec("depth", "depth", 1, w[2]))


def _pascal_tasks(n: int) -> tuple[TaskSpec, ...]:
    tasks = (TaskSpec("semseg", "segmentation", 21, 1.0, 21),
             TaskSpec("human_parts", "parts", 7, 2.0, 7),
             TaskSpec("saliency", "saliency", 1, 5.0),
             TaskSpec("normals", "normals", 3, 10.0),
             TaskSpec("edges", "edges", 1, 50.0))
    return tasks[:n]


# CPU presets: ~1/75 of the paper's steps. Three settings differ from the paper's defaults
# (which the paper presets keep), all measured on synth-nyu (the first two on the earlier,
# head-dominated synth-nyu: issue 4 note; the third on the BMTAS recipe: issue 12):
# * inactive_detach: the literal L_inactive also pulls the *active* task's nodes toward the
#   inactive ones; with r ~ Dir(0.2) 98% of steps have an inactive task, and every tree
#   collapsed onto one stream whatever (r, c). Detached, only inactive nodes move.
# * lambda_active = 5: with 400 edge steps and weak RSA affinities (0.06-0.19 off-diagonal),
#   c·λ_A·L_active at λ_A = 1 was ~0.007 per step against a task loss of ~1.5, and c had no
#   measurable effect on the trees; at 5, mean params fall monotonically with c and uniform r
#   goes from 0.527 M (c = 0) to 0.411 M (c >= 0.5), with a slightly higher HV.
# * lambda_inactive = 0.02 (the paper's CIFAR value), measured on the BMTAS-recipe synth-nyu
#   (issue 12; benchmarks/ablate_edge_stage.py --eval from one anchor, 16-core device, torch
#   2.11): at 0.1 the inactive-task pull collapsed most Dir(0.2) trees to the smallest one at
#   c = 0 already (mean 0.0198 GMACs, smallest 0.0181, anchor 0.0413; grid span 1.93x, 84.8 %
#   of grid r's monotone in c, HV 0.835/0.828 at c = 0/1); at 0.02 trees span 2.15x, 95.5 %
#   of r's are monotone, HV 0.852/0.842 at 0.0246/0.0239 GMACs. Neither moves the Dir(0.2)
#   mean much with c (c = 1 / c = 0: 0.987 and 0.974): c acts only through L_active, which is
#   0 whenever a single task is active (most Dir(0.2) samples at τ = 0.2).
# * anchor_init = "shared" (issue 22): no ImageNet weights exist at CPU width (x0.125 /
#   x0.35), so the paper's "every stream from the same pre-trained weights" is realized by a
#   shared-encoder multi-task net (PHN's shared encoder: stream 0, every head reading it)
#   trained for 2/3 of anchor_steps and copied into every stream before the single-task
#   fine-tune. Chosen over alternatives because it needs no extra data or model, is the same
#   code as the PHN-BN baseline's encoder, and costs ~0.45 anchor steps per step. Measured
#   (issue 22 note, docs/method-quality.md; short runs: 150 anchor steps, seed 0, 200 val
#   scenes, shared anchor +120 one-stream steps ≈ +36 % anchor compute): pure streams semseg
#   mIoU 25.6 -> 44.1, normals 28.5° -> 21.7°, depth RMSE 0.804 -> 0.729; one cross edge keeps
#   0.48 -> 0.83 of the pure stream's metric (0.56 -> 0.86 with the weight hypernet); same-index
#   channel correlation beyond layer 1 ~0 -> 0.48-0.76; HV of DYMU at c = 0 / 1: 0.567 / 0.473
#   -> 0.798 / 0.733 (with inactive_loss off, below).
# * inactive_loss = False (issue 22): on the shared anchor (cross edges now cheap) L_inactive
#   pulled every tree onto the smallest one for every (r, c): c-ratio 1.0, span 1.0x, at
#   λ_I = 0.02 and at 0.005 alike (printed or child reading). Without it: mean GMACs c=1/c=0
#   over r ~ Dir(1) 0.746, span 2.28x, 100 % of grid r monotone in c, HV at c = 0 0.798 (1.01x
#   the single-task anchor's 0.788), at c = 1 0.733 (PHN-BN 0.695). One seed, short stages:
#   benchmarks/results/issue22/, docs/method-quality.md.
# * Full length (issue 22, second session; 600/400/400/300 steps, 400 val scenes, r ~ Dir(1),
#   docs/method-quality.md): over 3 seeds the new default gives HV at c = 0 0.987x the
#   single-task anchor's, HV at c = 1 1.057 vs PHN-BN 1.005, deployed Δ_T at c = 0 -7.0 +- 1.1 %
#   (PHN-BN -7.9 +- 1.3 %), one cross edge keeps 0.885 with the weight hypernet, but c controls
#   less than on the short runs: c-ratio 0.933 +- 0.053, span 1.39x (c = 0 trees are already
#   0.51-0.64x the anchor). The settings before issue 22 (seed 0): HV 0.825 / 0.820 vs PHN-BN
#   0.882, Δ_T -10.0 % (c = 1: -30.8 %), cross edge 0.48.
# * synth-pascal shares these settings; at full length (seed 0) the new default lifts every
#   anchor task (semseg mIoU 53.4 -> 62.3, parts 23.8 -> 46.5) and DYMU's Δ_T at c = 0
#   (-22.6 -> -14.0 %; PHN-BN -5.6 %), but with 5 tasks and no L_inactive every (r, c) got
#   one tree (c-ratio 1.0, span 1.0x; before: 0.893, 1.45x). L_inactive on synth-pascal with
#   the shared anchor is untested.
# * anchor_finetune_lr = 0 (= anchor_lr) and anchor_l2sp = 0, i.e. the retention levers off:
#   a gentler fine-tune (5e-4 instead of 2e-3, 2 seeds) raised cross-edge retention to 0.94
#   but weakened the pure streams (-6 to -7 mIoU, +2.5° normals), single-task HV 1.08 -> 0.99,
#   DYMU HV at c = 1 0.968 < PHN-BN 1.007: not kept. L2-SP 0.01 (2 seeds): retention 0.92,
#   anchor -1.4 mIoU, DYMU HV at c = 0 1.031 vs 1.060, Δ_T -5.5 % behind its PHN-BN's -2.4 %,
#   c-ratio 0.96, span 1.13x: not kept. BN
#   statistics re-estimated per cross edge: 0.891 vs 0.897 (seed 0), no gain. lambda_active
#   10 / 20 (stage 1 retrained, 2 seeds): c-ratio 0.933 / 0.952 (seed 0, 5 gave 0.875) and
#   0.871 / 0.905 (seed 1, 5 gave 0.945): no consistent gain, 5 kept.
# * Stage lengths kept (600 anchor, 2/3 of it shared pre-training, 400 edge, 300 weight): the
#   controller stages' training loss is flat after ~200 steps within the (r, c) noise; the
#   anchor stages still fall ~7 % over their last quarter (not converged; longer not measured)
#   and a full run already takes ~8 min on one thread (scripts/make_default_model.sh).
# * active_reading = "printed" (TrainDefaults' default, the paper's text) is kept without a
#   measured gain here: on the independent anchor the child reading gave c-ratio 0.718 /
#   span 1.56x vs printed 0.765 / 1.49x (one seed, short stage 1); the full-length
#   paired run went the other way (0.905 -> 0.866, span 1.63x -> 2.04x).
# * identity_prior = 8, fixed (issue 22, third session; was 4, learnable). Why the c = 0
#   trees were already cheap: with lambda_active = 0 stage 1 keeps the anchor's own streams
#   for every (r, c), and the c = 0 tree of the old default has a 19 % higher weighted task
#   loss than the identity tree (benchmarks/tree_loss.py): the sharing that c·λ_A·L_active asks
#   for at c > 0 leaks into c = 0 through the hypernet, it is not chosen by the task loss. A
#   larger fixed margin on each node's own stream holds c = 0 nearer the anchor. Stage 1+2
#   retrained from the full-length anchors of seeds 0, 1, 2 (400 val scenes, r ~ Dir(1);
#   old -> new): c-ratio 0.875/0.945/0.980 -> 0.909/0.749/0.879 (mean 0.933 -> 0.846), span
#   1.64/1.27/1.28x -> 2.28/1.64/1.56x, monotone 100/100/89.4 -> 100/100/83.3 %, HV at c = 0
#   0.992/0.973/0.998x -> 1.002/0.999/0.986x the single-task anchor's, HV at c = 1 still above
#   PHN-BN on every seed, deployed Δ_T at c = 0 -8.0/-7.2/-5.8 -> -7.9/-6.5/-2.7 % (PHN-BN
#   -9.2/-6.6/-8.0 %). A learnable prior of 8 screens nearly the same (c-ratio 0.903/0.776,
#   span 2.28/1.64x) but less monotone (97.0/93.9 %), so it is fixed.
#   Not kept (same protocol, seeds 0 and 1, docs/method-quality.md):
#   edge_eta 1 (c-ratio 0.868/0.693, and seed 2 0.830, but HV at c = 0 0.963x < 0.97x),
#   prior 8 or 12 with edge_eta 1 (seed 0: one tree for every c), L_inactive at λ_I 0.005
#   (c-ratio 0.976/0.949), lambda_active 1 (0.922/1.000), 4 preferences per step
#   (0.946/0.913), a straight-through discrete tree in stage 1 (seed 1: 0.968). Measured on
#   synth-nyu only; synth-pascal shares it (seed 0 edge stage: docs/method-quality.md).
# * identity_prior_c_slope = 1, c_zero_share = 0.25 and anchor_l2sp = 0.003 (issue 22, fourth
#   session; none is in the paper). The fixed prior still left c = 0 trees shared (0.61-0.73x
#   the anchor) and c = 1 trees large (the hypernet is smooth in c, so the prior holds c = 1
#   as firmly as c = 0). A prior that falls with c, 8 x (1 - c), holds the anchor's streams
#   where the user asks for no saving and leaves the heads alone to choose at c = 1; drawing
#   c = 0 exactly in a quarter of the controller steps teaches both hypernets the c = 0 end
#   (under U(0, 1) it has measure zero). Stages 1+2 retrained from the full-length anchors of
#   seeds 0, 1, 2 (400 val scenes, r ~ Dir(1); prior 8 fixed -> slope 1 + c0 0.25, means):
#   c-ratio 0.846 -> 0.506, span 1.83 -> 2.26x, monotone 94.4 -> 94.4 %, deployed Δ_T at
#   c = 0 -5.7 -> +0.0 % (PHN-BN -7.9 %), HV at c = 0 0.995 -> 1.011x the single-task's, at
#   c = 1 1.032 vs PHN-BN 1.005. Each alone helps less (slope 1: c-ratio 0.698, span 2.00x,
#   Δ_T -5.5 %; c0 0.25: 0.790, 1.80x, -4.7 %). Cross-edge retention stays an anchor
#   property (0.883 with the weight hypernet), so L2-SP toward the shared weights is on at
#   0.003 (0.01 cost too much, above): anchors -0.7 mIoU, +0.6° normals, +0.008 depth RMSE
#   (3 seeds), and with slope 1 + c0 0.25 on those anchors: retention 0.902 (0.918 / 0.886
#   / 0.901), Δ_T at c = 0 -3.3 % (PHN-BN on the same anchors -5.3 %), HV 1.011x the
#   single-task's at c = 0 and 1.036 vs PHN-BN 1.011 at c = 1, c-ratio 0.703, span 2.12x,
#   monotone 92.9 % (seed 1: 78.8 %). Without L2-SP the deployed trees are absolutely a
#   little better (HV at c = 0 1.090 vs 1.074) and more robust per seed, but one cross edge
#   keeps 0.883 < 0.90: `--l2sp 0` is that choice. docs/method-quality.md "Fourth session".
_SYNTH_TRAIN = TrainDefaults(anchor_steps=600, anchor_batch=16, anchor_lr=2e-3,
                             edge_steps=400, weight_steps=300, controller_batch=16,
                             controller_lr=1e-3, decay_every=250, decay_gamma=0.3,
                             affinity_samples=32, gumbel_every=0, inactive_detach=True,
                             lambda_active=5.0, lambda_inactive=0.02, anchor_init="shared",
                             inactive_loss=False, identity_prior=8.0, identity_prior_learnable=False,
                             identity_prior_c_slope=1.0, c_zero_share=0.25, anchor_l2sp=0.003)


def _bmtas(kind: str, depth: int, width: float, affine_last_bn: bool, raspp: int = 128) -> BackboneSpec:
    """The paper's dense-net recipe (BMTAS): shared stem, per-task backbone at output
    stride 16, R-ASPP as the last branchable node."""
    return BackboneSpec(kind, depth, width, 16, "imagenet", shared_stem=True, raspp_channels=raspp,
                        affine_last_bn=affine_last_bn)


# BMTAS's light DeepLabv3+ decoder: 48-channel skip, two separable 3x3 convs at 128.
_LIGHT = HeadSpec("light", 0, (), 48, 128)

def _synth_backbone(kind: str, depth: int, width: float, raspp: int, affine_last_bn: bool) -> BackboneSpec:
    """The same recipe at CPU scale. Output stride 8, not 16: at a 64x64 input OS 16 leaves a
    4x4 top map (the paper's 512x512 at OS 16 has 32x32); OS 8 keeps 8x8 and makes the
    backbone, the part branching can prune, dominate even more (docs/INTERFACES.md)."""
    return BackboneSpec(kind, depth, width, 8, "imagenet", shared_stem=True, raspp_channels=raspp,
                        affine_last_bn=affine_last_bn)


# The light decoder at CPU width: 16-channel skip, separable convs at 48. Wider than the
# paper's ratio (decoder = R-ASPP width) because at 1/8 width the heads need a floor: with a
# 16-channel R-ASPP, 8-channel skip and 16-channel decoder the synth-nyu anchor reached mIoU
# 34.7 / δ1 74.7 / 60-within-11.25° 50.9 (600 steps; the old full-ASPP heads: 47.5 / 82.4 /
# 60.3). Stem + decoders stay ≤ 20 % of the anchor's params and GMACs (13.8 % of GMACs).
_SYNTH_LIGHT = HeadSpec("light", 0, (), 16, 48)

# The paper's schedule (Sec. 4 and Algorithm 1): Adam at 1e-3, ×0.3 every 14K steps, 30K
# steps, for the anchor streams as for both controller stages.
_PAPER_TRAIN = TrainDefaults(anchor_steps=30000, anchor_lr=1e-3, anchor_optimizer="adam",
                             anchor_weight_decay=0.0, anchor_schedule="step", anchor_decay_every=14000,
                             anchor_decay_gamma=0.3, edge_steps=30000, weight_steps=30000,
                             controller_lr=1e-3, decay_every=14000, decay_gamma=0.3)

# The DAG paper's network (Choi & Im 2023, Sec. 4.1): VGG-16's layers as the 12 hidden states
# (DeepLab-v2's VGG-16, output stride 8) and DeepLab-v2 heads (ASPP-L, 1024 wide, rates
# 6/12/18/24) for every task; Adam for weights and upper-level parameters, from scratch.
_VGG16 = BackboneSpec("vgg16", 16, 1.0, 8, "imagenet", shared_stem=True)
_DEEPLABV2 = HeadSpec("deeplabv2", 1024, (6, 12, 18, 24), 0, 0)
# Its stage lengths are in the paper's supplement, which we do not have: AdaShare's NYU-v2
# schedule (the setup the DAG paper follows: its public nyu_v2_3task config) — batch 16,
# 20K iterations, Adam 1e-3 halved every 4K — for the warm-up, the search and the fine-tune.
_DAG_PAPER_TRAIN = TrainDefaults(anchor_steps=20000, anchor_batch=16, anchor_lr=1e-3, anchor_optimizer="adam",
                                 anchor_weight_decay=0.0, anchor_schedule="step", anchor_decay_every=4000,
                                 anchor_decay_gamma=0.5, edge_steps=20000, weight_steps=20000,
                                 controller_batch=16)
# The same network at CPU scale for the synth scenes: VGG-16 x0.125 (8-64 channels) and
# DeepLab-v2 heads 64 wide. At 64x64 the stride-8 map is 8x8, where rates 6-24 would read
# almost only padding: the rates scale with the map (paper: 41x41 map, rates up to 24).
_SYNTH_VGG16 = BackboneSpec("vgg16", 16, 0.125, 8, "imagenet", shared_stem=True)
_SYNTH_DEEPLABV2 = HeadSpec("deeplabv2", 64, (1, 2, 3, 4), 0, 0)

PRESETS: dict[str, Preset] = {
    "nyuv2": Preset(
        "nyuv2", "NYU-v2 (paper): shared stem, ResNet-34 (OS 16) + R-ASPP + light DeepLabv3+ decoder "
        "per task (BMTAS), seg/normals/depth, 288x384",
        "nyuv2", _nyu_tasks(), _bmtas("resnet", 34, 1.0, affine_last_bn=True),
        _LIGHT, (288, 384), _PAPER_TRAIN),
    "pascal5": Preset(
        "pascal5", "PASCAL-Context 5 tasks (paper): shared stem, MobileNetV2 (OS 16) + R-ASPP + light "
        "DeepLabv3+ decoder per task (BMTAS), 512x512",
        "pascal", _pascal_tasks(5), _bmtas("mobilenetv2", 0, 1.0, affine_last_bn=False),
        _LIGHT, (512, 512), _PAPER_TRAIN),
    "pascal3": Preset(
        "pascal3", "PASCAL-Context 3 tasks (paper): seg/parts/saliency, shared stem, MobileNetV2 (OS 16) "
        "+ R-ASPP + light DeepLabv3+ decoder per task (BMTAS), 512x512",
        "pascal", _pascal_tasks(3), _bmtas("mobilenetv2", 0, 1.0, affine_last_bn=False),
        _LIGHT, (512, 512), _PAPER_TRAIN),
    "cifar100": Preset(
        "cifar100", "CIFAR-100 as 20 five-way tasks (paper): ResNet-9 (width 32-64-128-256; counts differ "
        "from the paper's, see `inspect`) + linear heads, 32x32",
        "cifar100", tuple(TaskSpec(s, "classification", 5, 1.0, 5) for s in CIFAR100_SUPERCLASSES),
        BackboneSpec("resnet9", 0, 0.5, 32, "small"), HeadSpec("linear"), (32, 32),
        TrainDefaults(lambda_active=0.2, lambda_inactive=0.02, anchor_batch=128,
                      controller_batch=128)),
    "synth-nyu": Preset(
        "synth-nyu", "CPU preset: procedural NYU-like scenes, seg/normals/depth, the paper's "
        "recipe at CPU scale: shared stem, ResNet-18 x0.125 (OS 8) + R-ASPP 32, light decoder, 64x64",
        "synth-nyuv2", _nyu_tasks(), _synth_backbone("resnet", 18, 0.125, 32, affine_last_bn=True),
        _SYNTH_LIGHT, (64, 64), _SYNTH_TRAIN,
        # HV reference: a trivial predictor's validation loss, rounded up — uniform class
        # scores (ln 13 = 2.56), the mean normal (0.43), the mean depth (1.33 L1). Trained
        # trees sit well inside (about 0.35-1.3, 0.1-0.15, 0.45-0.55).
        hv_reference=(2.6, 0.5, 1.5)),
    "synth-pascal": Preset(
        "synth-pascal", "CPU preset: procedural PASCAL-like scenes, 5 tasks, the paper's recipe "
        "at CPU scale: shared stem, MobileNetV2 x0.35 (OS 8) + R-ASPP 32, light decoder, 64x64",
        "synth-pascal", _pascal_tasks(5), _synth_backbone("mobilenetv2", 0, 0.35, 32, affine_last_bn=False),
        _SYNTH_LIGHT, (64, 64), _SYNTH_TRAIN),
    "dag-nyuv2": Preset(
        "dag-nyuv2", "NYU-v2 (Choi & Im's DAG network): VGG-16 layers as 12 hidden states (DeepLab-v2, OS 8), "
        "DeepLab-v2 ASPP heads, seg/normals/depth, 321x321 (AdaShare's NYU-v2 crop); --method dag or dymu",
        "nyuv2", _nyu_tasks(), _VGG16, _DEEPLABV2, (321, 321), _DAG_PAPER_TRAIN),
    "dag-pascal5": Preset(
        "dag-pascal5", "PASCAL-Context 5 tasks (Choi & Im's DAG network): VGG-16 layers as 12 hidden states "
        "(DeepLab-v2, OS 8), DeepLab-v2 ASPP heads, 512x512; --method dag or dymu",
        "pascal", _pascal_tasks(5), _VGG16, _DEEPLABV2, (512, 512), _DAG_PAPER_TRAIN),
    "synth-dag-nyu": Preset(
        "synth-dag-nyu", "CPU preset: the DAG paper's network at CPU scale on procedural NYU-like scenes: "
        "VGG-16 x0.125 layers as 12 hidden states (OS 8), DeepLab-v2 heads 64 wide, 64x64",
        "synth-nyuv2", _nyu_tasks(), _SYNTH_VGG16, _SYNTH_DEEPLABV2, (64, 64), _SYNTH_TRAIN,
        hv_reference=(2.6, 0.5, 1.5)),
}


# The paper's reported sizes, to print next to ours (Raychaudhuri et al. 2022: Tables 1-3 for
# NYU-v2 and PASCAL-Context, Table 4 for CIFAR-100; "GFLOPs" are fvcore totals, see
# dymu_rt.models.cost). ``size`` is the input the paper's GFLOPs were counted at: 512x512 for
# PASCAL; NYU's is not stated (this network gives 58.85 at 416x416). ``note`` says why a
# preset's counts differ from the paper's.
PAPER_REFERENCE: dict[str, dict[str, Any]] = {
    "nyuv2": {"params": 64.47e6, "gflops_paper": 58.78, "size": [416, 416], "phn_params": 21.59e6,
              "edge_hypernet": 0.03e6, "controller": 5.72e6},
    "pascal3": {"params": 5.906e6, "gflops_paper": 9.75, "size": [512, 512], "phn_params": 2.06e6,
                "edge_hypernet": 0.03e6, "controller": 9.25e6},
    "pascal5": {"params": 9.840e6, "gflops_paper": 16.17, "size": [512, 512], "phn_params": 2.15e6,
                "edge_hypernet": 0.06e6, "controller": 15.32e6},
    "cifar100": {"params": 36.18e6, "gflops_paper": 348.79, "size": None, "phn_params": None,
                 "edge_hypernet": 0.34e6, "controller": 3.10e6,
                 "note": "counts differ from the paper's: no ResNet-9 width reproduces its 36.18 M "
                         "params, and 348.79 GFLOPs cannot be one 32x32 image; this preset uses the "
                         "nearest cifar10-fast width (32-64-128-256, 32.90 M for 20 streams). Its "
                         "controller differs too (the paper's node split of ResNet-9 is not stated)."},
}


def get_preset(name: str) -> Preset:
    """A preset by name, or a ValidationError listing the names."""
    if name not in PRESETS:
        raise ValidationError(f"unknown preset '{name}'; expected one of {', '.join(PRESETS)}")
    return PRESETS[name]


def is_preset_name(name: Optional[str]) -> bool:
    """True when ``name`` names a preset."""
    return name in PRESETS
