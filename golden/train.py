"""Train the seed network, quantise it and write a network image.

``python -m golden.train --out firmware/digits-seed`` (what ``make train-seed`` runs) rebuilds
the shipped seed image (the shipped ``firmware/digits`` is trained by surrogate gradients,
:mod:`golden.surrogate`); ``--check`` retrains and compares the content hash with the image on
disk instead of writing it. Training is deterministic: the same configuration and seed give the
same hash.

Steps
-----
1. Draw the float seed network (:func:`golden.reference.make_network`).
2. Fit the float decoder on float PSC features and measure the float reference.
3. Quantise the input stage (:func:`golden.quantize.quantize_input_stage`).
4. Run the *integer* model on the training images in both encoder modes (rate mode with one
   LFSR seed per training image, drawn from the seed) and fit the decoder on the pooled
   integer PSC values, so one decoder serves both modes; quantise it.
5. Measure both modes on the test split and write the image with its manifest.

Hyperparameters (intercepts in (-1, 0.5), ridge alpha 10, leak shift 4, PSC shift 5) were
chosen on a validation split carved from the training images (a quarter, stratified), never on
the test split.
"""

from __future__ import annotations

import argparse
import sys
from typing import NamedTuple

import numpy as np

from firmware import DIGITS_SEED_IMAGE

from . import data, image, model, quantize, reference
from .constants import MODE_CURRENT, MODE_NAMES, MODE_RATE, PSC_ONE


class TrainConfig(NamedTuple):
    """Everything that determines a trained image (recorded in its manifest).

    Attributes
    ----------
    dataset : name in :data:`golden.data.DATASETS`.
    seed : seeds the encoders, rates, intercepts and the training LFSR seeds.
    neurons : LIF neurons.
    timesteps : steps per image (1 ms each).
    max_rate_range, intercept_range : uniform ranges of the neurons' tuning (Hz, unitless).
    tau_rc, tau_ref, tau_syn : float reference time constants, seconds.
    leak_shift, psc_shift : integer model: ``dt/tau = 2**-shift`` (16 and 32 ms at dt = 1 ms).
    alpha : ridge regularisation, in units of squared PSC (PSC_ONE = 1).
    encoder_mode : the image's default encoder mode.
    """

    dataset: str = "digits"
    seed: int = 0
    neurons: int = 256
    timesteps: int = 64
    max_rate_range: tuple[float, float] = (200.0, 400.0)
    intercept_range: tuple[float, float] = (-1.0, 0.5)
    tau_rc: float = 0.020
    tau_ref: float = 0.002
    tau_syn: float = 0.032
    leak_shift: int = 4
    psc_shift: int = 5
    alpha: float = 10.0
    encoder_mode: int = MODE_CURRENT


def rate_bits_for(pixel_max: int) -> int:
    """Smallest ``k`` with ``2**k >= pixel_max``: spikes then carry the full pixel range."""
    return max(1, (int(pixel_max) - 1).bit_length())


def float_network(config: TrainConfig, split: data.Split) -> reference.FloatNetwork:
    """The float seed network of a configuration (deterministic in ``config.seed``)."""
    return reference.make_network(
        config.seed, config.neurons, split.x_train.shape[1], split.pixel_max,
        max_rate_range=config.max_rate_range, intercept_range=config.intercept_range,
        tau_rc=config.tau_rc, tau_ref=config.tau_ref, tau_syn=config.tau_syn,
    )


def training_seeds(config: TrainConfig, count: int) -> np.ndarray:
    """Nonzero LFSR seeds, one per training image, for the rate-mode features."""
    rng = np.random.default_rng([config.seed, 0x5EED])
    return rng.integers(1, 1 << 32, size=count, dtype=np.int64)


def accuracy(classes: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Accuracy per step from classes (T, B) and labels (B,)."""
    return (classes == labels).mean(axis=-1)


class Trained(NamedTuple):
    net: model.Network
    float_net: reference.FloatNetwork
    float_decoder: reference.Decoder
    metrics: dict


def train(config: TrainConfig | None = None, split: data.Split | None = None,
          log=print) -> Trained:
    """Run the whole training flow and return the integer network with its test metrics."""
    config = config or TrainConfig()
    split = split or data.load_split(config.dataset)
    classes = int(max(split.y_train.max(), split.y_test.max())) + 1
    fnet = float_network(config, split)

    log(f"float reference: {config.neurons} LIF neurons, {config.timesteps} steps")
    feats_tr, _ = reference.simulate(split.x_train, fnet, config.timesteps)
    fdec = reference.fit_decoder(feats_tr, split.y_train, classes, config.alpha)
    feats_te, _ = reference.simulate(split.x_test, fnet, config.timesteps)
    float_acc = accuracy(reference.predict(feats_te, fdec).argmax(-1), split.y_test)

    log("quantising and fitting the integer decoder on integer PSC values (both modes)")
    net = quantize.integer_network(fnet, config.leak_shift, config.psc_shift,
                                   rate_bits_for(split.pixel_max))
    psc_cur = model.run(split.x_train, net, config.timesteps, MODE_CURRENT, record=True).psc
    psc_rate = model.run(split.x_train, net, config.timesteps, MODE_RATE, record=True,
                         seeds=training_seeds(config, len(split.x_train))).psc
    pooled = np.concatenate([psc_cur, psc_rate], axis=1).astype(np.float32) / PSC_ONE
    labels = np.concatenate([split.y_train, split.y_train])
    dec = reference.fit_decoder(pooled, labels, classes, config.alpha)
    dec_int, dec_bias = quantize.quantize_decoder(
        reference.Decoder(dec.weights / PSC_ONE, dec.intercept))
    net = net._replace(dec=dec_int, dec_bias=dec_bias)

    fixed = model.run(split.x_test, net, config.timesteps, MODE_CURRENT)
    rate = model.run(split.x_test, net, config.timesteps, MODE_RATE)
    metrics = {
        "float_accuracy": float(float_acc[-1]),
        "fixed_accuracy": float(accuracy(fixed.classes, split.y_test)[-1]),
        "rate_mode_accuracy": float(accuracy(rate.classes, split.y_test)[-1]),
    }
    return Trained(net, fnet, fdec, metrics)


def manifest_metadata(config: TrainConfig, split: data.Split, metrics: dict) -> dict:
    """Provenance stored in the manifest (not hashed)."""
    cfg = config._asdict()
    cfg["encoder_mode"] = MODE_NAMES[config.encoder_mode]
    return {
        "dataset": split.name,
        "split": {"train": len(split.x_train), "test": len(split.x_test),
                  "rule": "train_test_split(test_size=1/3, stratify=y, random_state=0)"},
        "seed": config.seed,
        "training": cfg,
        "test_accuracy": {k: round(v, 6) for k, v in metrics.items()},
        "generated_by": "python -m golden.train",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m golden.train", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(DIGITS_SEED_IMAGE), help="image directory to write")
    # The seed network is defined on the digits; the IDX data sets are for trained networks.
    parser.add_argument("--dataset", default="digits", choices=["digits"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--neurons", type=int, default=256)
    parser.add_argument("--timesteps", type=int, default=64)
    parser.add_argument("--check", action="store_true",
                        help="retrain and compare the hash with the image at --out; write nothing")
    args = parser.parse_args(argv)

    config = TrainConfig(dataset=args.dataset, seed=args.seed, neurons=args.neurons,
                         timesteps=args.timesteps)
    split = data.load_split(config.dataset)
    trained = train(config, split)
    digest = image.content_hash(trained.net)
    for key, value in trained.metrics.items():
        print(f"  {key:20s} {value:.4f}")
    print(f"  hash                 {digest}")
    if args.check:
        try:
            _, manifest = image.load(args.out)
        except image.NetworkImageError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        if manifest["hash"] != digest:
            print(f"error: retrained hash {digest} differs from {args.out}: {manifest['hash']}",
                  file=sys.stderr)
            return 1
        print(f"ok: retraining reproduces {args.out}")
        return 0
    image.save(args.out, trained.net, config.timesteps, config.encoder_mode, split.pixel_max,
               manifest_metadata(config, split, trained.metrics))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
