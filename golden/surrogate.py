"""Surrogate-gradient training (BPTT) of the integer LIF network of :mod:`golden.model`.

``python -m golden.surrogate --out DIR`` trains a network on the digits and writes a network
image. It needs PyTorch, the ``train`` extra (``make test`` installs it); nothing else in the
project does.

The network is :mod:`golden.model`'s, with every parameter trained instead of drawn: input
weights, biases, per-neuron thresholds, decoder weights and biases. It has two forms of one
set of parameters:

float (trained)
    Real units, the nominal threshold 1.0 and pixels scaled to ``x / pixel_max``::

        I   = W (x_t / pixel_max) + b
        act = (ref == 0)
        v   = act ? max(v + (I - v) / 2**leak_shift, 0) : v
        s   = act * H(v - v_th)          H: Heaviside forward, fast sigmoid backward
        v   = v * (1 - s);  ref = s ? ref_steps : max(ref - 1, 0)
        psc = psc + (s - psc) / 2**psc_shift
        score_t = dec psc + dec_b

quantised (what the hardware computes)
    The same equations in :mod:`golden.model`'s integer units and order of operations, with
    floor shifts and saturation, rounding by straight-through estimators. In constant-current
    mode its forward equals ``golden.model.run`` bit for bit (``tests/test_surrogate.py``).

The loss is the cross entropy of ``score_t`` averaged over **every** step ``t``, so the network
answers early as well as late. Rate-mode batches (a fraction ``rate_fraction``) draw Bernoulli
spikes with the rate encoder's statistics (a spike worth ``2**rate_bits`` with probability
``x / 2**rate_bits``; the hardware draws them from its LFSR). Adam, fixed epochs.

Quantisation (:meth:`Twin.int_params`): per neuron the smallest left shift ``w_shift`` that puts
its weights in int8 (``W_int = round(W * 2**V_FRAC / pixel_max / 2**w_shift)``), the bias in the
same units, ``v_th = round(v_th * 2**V_FRAC)``, and one decoder scale that maps the largest decoder
weight to 127 (argmax does not change under a positive scale).

Hyperparameters are chosen on a validation set carved from the training images
(:func:`golden.data.carve_validation`), never on the test set. Training is deterministic for a
given seed on one machine (one thread count, fixed generators).
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import NamedTuple

import numpy as np
import torch

from golden import data, image, model
from golden.constants import (
    B_BITS,
    D_BITS,
    I_MAX,
    I_MIN,
    LFSR_SEED_DEFAULT,
    MODE_CURRENT,
    MODE_NAMES,
    MODE_RATE,
    PSC_ONE,
    V_FRAC,
    V_TH_BITS,
    W_BITS,
    W_SHIFT_BITS,
)

__all__ = ["SurrogateConfig", "SpikeFn", "Twin", "train", "main"]

ONE = 1 << V_FRAC


class SurrogateConfig(NamedTuple):
    """Training settings (all stored in the image's manifest)."""

    seed: int = 0
    neurons: int = 256
    #: Steps per training image (the loss covers every one).
    steps: int = 32
    epochs: int = 60
    lr: float = 3e-2
    batch: int = 64
    #: Fraction of batches presented in rate mode.
    rate_fraction: float = 0.5
    #: Validation share carved from the training images.
    val_fraction: float = 0.25
    #: Fast-sigmoid surrogate slope, per threshold unit.
    slope: float = 10.0
    leak_shift: int = 4
    psc_shift: int = 5
    ref_steps: int = 2
    #: Default steps and encoder mode written into the image.
    timesteps: int = 32
    threads: int = 2


class SpikeFn(torch.autograd.Function):
    """``H(x) = (x >= 0)`` forward; fast-sigmoid derivative ``1 / (1 + slope |x|)**2`` back."""

    @staticmethod
    def forward(ctx, x, slope):
        ctx.save_for_backward(x)
        ctx.slope = slope
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad / (1 + ctx.slope * x.abs()) ** 2, None


def _ste(fn, x):
    """``fn(x)`` forward, identity backward (straight-through estimator)."""
    return x + (fn(x) - x).detach()


class Twin(torch.nn.Module):
    """The trainable network; ``quantised`` selects the integer form of the forward pass."""

    def __init__(self, inputs: int, classes: int, pixel_max: int, config: SurrogateConfig,
                 rate_bits: int):
        super().__init__()
        g = torch.Generator().manual_seed(config.seed)
        n = config.neurons
        self.pixel_max, self.rate_bits, self.config = pixel_max, rate_bits, config
        self.w = torch.nn.Parameter(torch.randn(n, inputs, generator=g) * 2 / math.sqrt(inputs))
        self.b = torch.nn.Parameter(torch.zeros(n))
        self.v_th = torch.nn.Parameter(torch.ones(n))
        self.dec = torch.nn.Parameter(torch.randn(classes, n, generator=g) / math.sqrt(n))
        self.dec_b = torch.nn.Parameter(torch.zeros(classes))
        self.quantised = False

    def int_params(self) -> tuple[torch.Tensor, ...]:
        """``(w_in, w_shift, bias, v_th, dec, dec_bias)`` in golden.model's integer units."""
        w_lsb = self.w * (ONE / self.pixel_max)
        lim = (1 << (W_BITS - 1)) - 1
        w_max = w_lsb.detach().abs().amax(dim=1).clamp_min(1e-12)
        shift = torch.ceil(torch.log2(w_max / lim)).clamp(0, (1 << W_SHIFT_BITS) - 1)
        scale = 2.0 ** shift
        w_int = _ste(torch.round, w_lsb / scale[:, None]).clamp(-lim - 1, lim)
        b_lim = (1 << (B_BITS - 1)) - 1
        b_int = _ste(torch.round, self.b * ONE / scale).clamp(-b_lim - 1, b_lim)
        v_th = _ste(torch.round, self.v_th * ONE).clamp(1, (1 << V_TH_BITS) - 1)
        d_scale = ((1 << (D_BITS - 1)) - 1) / self.dec.detach().abs().max().clamp_min(1e-12)
        dec = _ste(torch.round, self.dec * d_scale)
        dec_b = _ste(torch.round, self.dec_b * d_scale * PSC_ONE)
        return w_int, shift, b_int, v_th, dec, dec_b

    def to_network(self, lfsr_seed: int = LFSR_SEED_DEFAULT) -> model.Network:
        """The integer network the hardware runs."""
        with torch.no_grad():
            w, shift, b, v_th, dec, dec_b = (t.numpy().astype(np.int64)
                                             for t in self.int_params())
        c = self.config
        return model.Network(w, shift, b, v_th, dec, dec_b, c.leak_shift, c.psc_shift,
                             c.ref_steps, self.rate_bits, lfsr_seed)

    def _encode(self, x: torch.Tensor, rate: bool, gen: torch.Generator | None) -> torch.Tensor:
        if not rate:
            return x
        top = float(1 << self.rate_bits)
        return (torch.rand(x.shape, generator=gen) * top < x).to(x.dtype) * top

    def forward(self, x: torch.Tensor, steps: int, rate: bool = False,
                gen: torch.Generator | None = None) -> torch.Tensor:
        """Scores after every step, (T, B, C), for raw integer pixels ``x`` (B, M)."""
        c = self.config
        if self.quantised:
            w, shift, b, v_th, dec, dec_b = self.int_params()
            scale, one, slope = 2.0 ** shift, float(PSC_ONE), c.slope / ONE
        else:
            w, b, v_th, dec, dec_b = self.w / self.pixel_max, self.b, self.v_th, self.dec, \
                self.dec_b
            one, slope = 1.0, c.slope
        v = torch.zeros(x.shape[0], self.w.shape[0])
        ref, psc, scores, current = torch.zeros_like(v), torch.zeros_like(v), [], None
        floor = (lambda t: _ste(torch.floor, t)) if self.quantised else (lambda t: t)
        for _ in range(steps):
            if current is None or rate:
                current = self._encode(x, rate, gen) @ w.t() + b
                if self.quantised:
                    current = (current * scale).clamp(I_MIN, I_MAX)
            act = (ref == 0).to(v.dtype)
            v = act * (v + floor((current - v) / (1 << c.leak_shift))).clamp_min(0) \
                + (1 - act) * v
            s = act * SpikeFn.apply(v - v_th, slope)
            v = v * (1 - s)
            ref = torch.where(s > 0, torch.full_like(ref, c.ref_steps), (ref - 1).clamp_min(0))
            psc = psc + floor((s * one - psc) / (1 << c.psc_shift))
            scores.append(psc @ dec.t() + dec_b)
        return torch.stack(scores)


def step_accuracy(net: Twin, x: np.ndarray, y: np.ndarray, steps: int, rate: bool,
                  seed: int = 0, batch: int = 512) -> np.ndarray:
    """Accuracy after every step, (T,), of the twin in its current form."""
    gen = torch.Generator().manual_seed(seed)
    correct = torch.zeros(steps)
    with torch.no_grad():
        for k in range(0, len(x), batch):
            xb = torch.tensor(x[k:k + batch], dtype=torch.float32)
            correct += (net(xb, steps, rate, gen).argmax(-1) == torch.tensor(y[k:k + batch])).sum(1)
    return (correct / len(x)).numpy()


def _epoch(net: Twin, opt, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> float:
    c = net.config
    order = torch.randperm(len(x), generator=gen)
    total = 0.0
    for k in range(0, len(x), c.batch):
        idx = order[k:k + c.batch]
        rate = bool(torch.rand(1, generator=gen) < c.rate_fraction)
        scores = net(x[idx], c.steps, rate, gen)
        steps = scores.shape[0]
        loss = torch.nn.functional.cross_entropy(scores.reshape(steps * len(idx), -1),
                                                 y[idx].repeat(steps))
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += float(loss.detach()) * len(idx)
    return total / len(x)


def train(config: SurrogateConfig, split: data.Split, progress: bool = True):
    """Train on the fit part of the training images; returns ``(twin, history)``, the history
    holding the loss and validation accuracies of every epoch."""
    from tqdm import tqdm

    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    x_fit, y_fit, x_val, y_val = data.carve_validation(split.x_train, split.y_train,
                                                       config.val_fraction, config.seed)
    classes = int(split.y_train.max()) + 1
    from golden.train import rate_bits_for

    net = Twin(x_fit.shape[1], classes, split.pixel_max, config, rate_bits_for(split.pixel_max))
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    gen = torch.Generator().manual_seed(config.seed + 1)
    x, y = torch.tensor(x_fit, dtype=torch.float32), torch.tensor(y_fit)
    history = []
    bar = tqdm(range(config.epochs), desc="surrogate BPTT", disable=not progress, file=sys.stderr)
    for epoch in bar:
        net.train()
        loss = _epoch(net, opt, x, y, gen)
        net.eval()
        val = step_accuracy(net, x_val, y_val, config.steps, False)
        history.append({"epoch": epoch, "loss": loss, "val_accuracy": float(val[-1])})
        bar.set_postfix(loss=f"{loss:.4f}", val=f"{val[-1]:.4f}")
    return net, history


def _accuracies(net: Twin, split: data.Split, steps: int) -> dict:
    """Float-twin and integer-model (golden.model.run) test accuracies after ``steps``."""
    intnet = net.to_network()
    out = {"float_accuracy": float(step_accuracy(net, split.x_test, split.y_test, steps,
                                                 False)[-1])}
    for mode in (MODE_CURRENT, MODE_RATE):
        result = model.run(split.x_test, intnet, steps, mode)
        per_step = (result.classes == split.y_test).mean(axis=1)
        out[f"integer_{MODE_NAMES[mode]}_accuracy"] = float(per_step[-1])
        out[f"integer_{MODE_NAMES[mode]}_accuracy_by_step"] = [round(float(a), 4)
                                                               for a in per_step]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m golden.surrogate",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="network image directory to write")
    defaults = SurrogateConfig()
    for name in ("seed", "neurons", "steps", "epochs", "batch", "timesteps"):
        parser.add_argument(f"--{name}", type=int, default=getattr(defaults, name))
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    config = defaults._replace(**{k: getattr(args, k) for k in (
        "seed", "neurons", "steps", "epochs", "batch", "timesteps", "lr")})
    if min(config.neurons, config.steps, config.epochs, config.batch, config.timesteps) < 1:
        parser.error("--neurons, --steps, --epochs, --batch and --timesteps must be positive")
    split = data.load_split()
    net, history = train(config, split, progress=not args.quiet)
    metrics = _accuracies(net, split, config.timesteps)
    metadata = {
        "dataset": split.name,
        "split": {"fit": round(len(split.x_train) * (1 - config.val_fraction)),
                  "validation": round(len(split.x_train) * config.val_fraction),
                  "test": len(split.x_test),
                  "rule": "train_test_split(test_size=1/3, stratify=y, random_state=0); "
                          "validation carved from the training images"},
        "training_method": "surrogate-gradient BPTT (fast sigmoid), loss over every step",
        "seed": config.seed,
        "epochs": config.epochs,
        "training": config._asdict(),
        "history": history,
        "test_accuracy": metrics,
        "generated_by": "python -m golden.surrogate",
    }
    manifest = image.save(args.out, net.to_network(), config.timesteps, MODE_CURRENT,
                          split.pixel_max, metadata)
    for key in ("float_accuracy", "integer_current_accuracy", "integer_rate_accuracy"):
        print(f"  {key:26s} {metrics[key]:.4f}")
    print(f"  hash {manifest['hash']}\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
