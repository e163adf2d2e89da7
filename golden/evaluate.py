"""Evaluate a network image with the golden model: figures, pictures and ``report.json``.

``python -m golden.evaluate`` (what ``make golden`` runs) measures on the standard split of the
image's data set (``--data DIR`` names the IDX folder of an MNIST image):

* float reference accuracy and fixed-point accuracy in both encoder modes, after every step
  (the float reference of a seed-network image is the float seed network retrained from the
  image's recorded configuration; that of a surrogate-trained image, whose float twin is not
  part of the image, is the per-step test accuracy its manifest records);
* ``steps_to_90``: the first step after presentation at which fixed-point accuracy reaches 0.90;
* the golden model's speed (images/s over the test split; reported, not asserted);

and draws ``accuracy_vs_time.png`` (the image is presented at step 0 to a network at rest: there
is no activity before), ``raster.png`` (spikes of every neuron for one digit) and
``membrane.png`` (membrane traces of a few neurons) under the output directory.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from firmware import DIGITS_IMAGE

from . import data, image, model, reference
from .constants import MODE_BY_NAME, MODE_CURRENT, MODE_RATE, V_FRAC
from .train import TrainConfig, accuracy, float_network

#: Steps before presentation drawn in the accuracy curve (the network is at rest there).
PRE_STEPS = 8


def first_step_reaching(acc_per_step: np.ndarray, level: float) -> int | None:
    """1-based step after presentation at which accuracy first reaches ``level``."""
    hits = np.flatnonzero(acc_per_step >= level)
    return int(hits[0]) + 1 if hits.size else None


def images_per_second(images, net, timesteps, mode, repeats: int = 3) -> float:
    """Best of ``repeats`` timed runs of the golden model over ``images``."""
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.run(images, net, timesteps, mode)
        best = min(best, time.perf_counter() - t0)
    return len(images) / best


def training_config(manifest: dict) -> TrainConfig:
    """The training configuration recorded in an image's manifest (for the float reference)."""
    try:
        cfg = dict(manifest["metadata"]["training"])
    except (KeyError, TypeError):
        raise image.NetworkImageError(
            "the manifest records no training configuration (metadata.training), so the float "
            "reference cannot be rebuilt; images written by golden.train have one") from None
    cfg["encoder_mode"] = MODE_BY_NAME[cfg["encoder_mode"]]
    for key in ("max_rate_range", "intercept_range"):
        cfg[key] = tuple(cfg[key])
    return TrainConfig(**cfg)


#: ``generated_by`` of images trained by surrogate gradients (:mod:`golden.surrogate`).
SURROGATE = "python -m golden.surrogate"


def is_surrogate(manifest: dict) -> bool:
    """Whether the image was trained by :mod:`golden.surrogate` (else: the seed network)."""
    meta = manifest.get("metadata")
    return isinstance(meta, dict) and meta.get("generated_by") == SURROGATE


def float_reference(manifest: dict, split: data.Split, steps: int, classes: int) -> np.ndarray:
    """Float accuracy after every step, up to ``steps``.

    The seed network's float reference is rebuilt from its recorded configuration. A
    surrogate-trained image's float twin is not part of the image: its per-step test accuracy
    is the one its manifest records (as many steps as it was measured for).
    """
    if is_surrogate(manifest):
        try:
            recorded = manifest["metadata"]["test_accuracy"]["float_current_accuracy_by_step"]
        except (KeyError, TypeError):
            raise image.NetworkImageError(
                "the manifest records no per-step float accuracy "
                "(metadata.test_accuracy.float_current_accuracy_by_step)") from None
        return np.asarray(recorded[:steps], dtype=np.float64)
    config = training_config(manifest)
    fnet = float_network(config, split)
    feats_tr, _ = reference.simulate(split.x_train, fnet, steps)
    fdec = reference.fit_decoder(feats_tr, split.y_train, classes, config.alpha)
    feats_te, _ = reference.simulate(split.x_test, fnet, steps)
    return accuracy(reference.predict(feats_te, fdec).argmax(-1), split.y_test)


def evaluate(image_dir: str | Path, timesteps: int | None = None,
             data_dir: str | Path | None = None) -> tuple[dict, dict]:
    """Compute every figure; returns ``(report, traces)`` (traces feed the plots).

    ``data_dir`` is the IDX folder for images trained on MNIST and its kin."""
    net, manifest = image.load(image_dir)
    if is_surrogate(manifest):
        dataset = manifest["metadata"].get("dataset", "digits")
    else:
        dataset = training_config(manifest).dataset
    split = data.load_split(dataset, data_dir)
    steps = timesteps or manifest["timesteps"]
    classes = manifest["classes"]
    float_acc = float_reference(manifest, split, steps, classes)

    fixed = model.run(split.x_test, net, steps, MODE_CURRENT)
    rate = model.run(split.x_test, net, steps, MODE_RATE)
    fixed_acc = accuracy(fixed.classes, split.y_test)
    rate_acc = accuracy(rate.classes, split.y_test)
    fixed_train = accuracy(model.run(split.x_train, net, steps).classes[-1:], split.y_train)[-1]
    # Before presentation the network is at rest: the scores are the decoder bias alone.
    rest_class = int(model.argmax(net.dec_bias))
    rest_acc = float(np.mean(split.y_test == rest_class))
    repeats = 3 if len(split.x_test) <= 1000 else 1  # MNIST's 10,000 images: once is enough

    report = {
        "dataset": split.name,
        "split": {"train": len(split.x_train), "test": len(split.x_test)},
        "image": str(image_dir),
        "image_hash": manifest["hash"],
        "neurons": net.neurons,
        "timesteps": steps,
        "float_accuracy": float(float_acc[-1]),
        "fixed_accuracy": float(fixed_acc[-1]),
        "rate_mode_accuracy": float(rate_acc[-1]),
        "fixed_train_accuracy": float(fixed_train),
        "steps_to_90": first_step_reaching(fixed_acc, 0.90),
        "float_steps_to_90": first_step_reaching(float_acc, 0.90),
        "rate_steps_to_90": first_step_reaching(rate_acc, 0.90),
        "accuracy_at_rest": rest_acc,
        "accuracy_per_step": [float(a) for a in fixed_acc],
        "float_accuracy_per_step": [float(a) for a in float_acc],
        "rate_accuracy_per_step": [float(a) for a in rate_acc],
        "mean_spikes_per_image": float(fixed.spike_count.mean()),
        "images_per_s": images_per_second(split.x_test, net, steps, MODE_CURRENT, repeats),
        "rate_mode_images_per_s": images_per_second(split.x_test, net, steps, MODE_RATE,
                                                    repeats),
    }
    digit = 0
    one = model.run(split.x_test[digit:digit + 1], net, steps, MODE_CURRENT, record=True)
    traces = {"digit_image": split.x_test[digit], "digit_label": int(split.y_test[digit]),
              "spikes": one.spikes[:, 0], "v": one.v[:, 0], "v_th": net.v_th,
              "class": int(one.classes[-1, 0]), "pixel_max": split.pixel_max}
    return report, traces


def plot(report: dict, traces: dict, out: Path) -> list[Path]:
    """Write the three PNGs; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    steps = np.arange(1, report["timesteps"] + 1)
    pre = np.arange(-PRE_STEPS, 1)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    ax.axvspan(-PRE_STEPS, 0, color="0.92", label="at rest (no image, no activity)")
    ax.axvline(0, color="0.4", lw=1)
    for key, label, style in (
        ("float_accuracy_per_step", "float reference", "C0--"),
        ("accuracy_per_step", "fixed point, constant current", "C1-"),
        ("rate_accuracy_per_step", "fixed point, rate encoder", "C2-"),
    ):
        acc = np.asarray(report[key])
        ax.plot(np.r_[pre, steps[:len(acc)]],
                np.r_[np.full(len(pre), report["accuracy_at_rest"]), acc],
                style, label=f"{label} ({acc[-1]:.1%} at {len(acc)})", lw=1.5)
    ax.axhline(0.9, color="0.5", ls=":", lw=1)
    if report["steps_to_90"]:
        n = report["steps_to_90"]
        ax.annotate(f"90 % after {n} step{'s' if n != 1 else ''}",
                    (report["steps_to_90"], 0.9), (12, 0.55),
                    arrowprops={"arrowstyle": "->", "color": "0.3"})
    ax.set(xlabel="time after presentation (steps of 1 ms)", ylabel="test accuracy",
           ylim=(0, 1.01), xlim=(-PRE_STEPS, report["timesteps"]),
           title=f"{report['dataset']}: accuracy vs time ({report['neurons']} LIF neurons)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    paths.append(out / "accuracy_vs_time.png")
    fig.savefig(paths[-1])
    plt.close(fig)

    spikes = traces["spikes"]
    fig, (ax_img, ax) = plt.subplots(1, 2, figsize=(9, 4), dpi=120,
                                     gridspec_kw={"width_ratios": [1, 4]})
    side = int(round(np.sqrt(traces["digit_image"].size)))
    ax_img.imshow(traces["digit_image"].reshape(side, side), cmap="gray_r",
                  vmin=0, vmax=traces["pixel_max"])
    ax_img.set(title=f"label {traces['digit_label']}, class {traces['class']}",
               xticks=[], yticks=[])
    t, n = np.nonzero(spikes)
    ax.scatter(t + 1, n, s=2, marker="|", color="k")
    ax.set(xlabel="step", ylabel="neuron", xlim=(0, len(spikes) + 1), ylim=(-1, spikes.shape[1]),
           title=f"spike raster, {int(spikes.sum())} spikes")
    fig.tight_layout()
    paths.append(out / "raster.png")
    fig.savefig(paths[-1])
    plt.close(fig)

    counts = spikes.sum(axis=0)
    active = np.flatnonzero(counts)
    order = active[np.argsort(counts[active], kind="stable")]
    quantiles = (0.05, 0.35, 0.65, 0.9)
    pick = [order[int(q * (len(order) - 1))] for q in quantiles] if len(order) else []
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    t_axis = np.arange(1, len(spikes) + 1)
    for i, n in enumerate(pick):
        offset = 1.5 * i
        v = traces["v"][:, n] / (1 << V_FRAC)
        th = traces["v_th"][n] / (1 << V_FRAC)
        line, = ax.plot(t_axis, v + offset, lw=1, label=f"neuron {n} ({counts[n]} spikes)")
        ax.vlines(t_axis[spikes[:, n]], offset + th, offset + th + 0.3, color=line.get_color())
        ax.axhline(th + offset, color="0.6", ls=":", lw=0.8)
    ax.set(xlabel="step", ylabel="membrane (threshold = 1, offset per neuron)",
           title="membrane after each step (dotted: threshold, ticks: spikes)")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    paths.append(out / "membrane.png")
    fig.savefig(paths[-1])
    plt.close(fig)
    return paths


def docs_figure(docs: str | Path, image_dir: str | Path) -> Path:
    """Where ``--docs`` copies an image's accuracy curve: ``accuracy_vs_time_<name>.png``, the
    name of the image's folder (``digits``, ``digits-seed``, ``mnist``)."""
    return Path(docs) / f"accuracy_vs_time_{Path(image_dir).resolve().name}.png"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m golden.evaluate",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default=str(DIGITS_IMAGE), help="network image directory")
    parser.add_argument("--out", default="build/golden", help="output directory")
    parser.add_argument("--timesteps", type=int, help="override the image's step count")
    parser.add_argument("--docs", help="also copy accuracy_vs_time.png into this directory, as "
                                       "accuracy_vs_time_<image folder name>.png")
    parser.add_argument("--data", help="folder of the IDX files, for images trained on MNIST")
    args = parser.parse_args(argv)
    try:
        report, traces = evaluate(args.image, args.timesteps, args.data)
    except (image.NetworkImageError, data.IdxError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = plot(report, traces, out)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    if args.docs:
        Path(args.docs).mkdir(parents=True, exist_ok=True)
        shutil.copy(paths[0], docs_figure(args.docs, args.image))
    acc = report["accuracy_per_step"]
    print(f"{report['dataset']}: {report['split']['test']} test images, "
          f"{report['timesteps']} steps, image {report['image_hash'][:19]}...")
    print(f"  float reference      {report['float_accuracy']:.2%}")
    print(f"  fixed, current mode  {report['fixed_accuracy']:.2%}")
    print(f"  fixed, rate mode     {report['rate_mode_accuracy']:.2%}")
    print(f"  steps to 90 %        {report['steps_to_90']}")
    print("  accuracy by step     " + "  ".join(
        f"{t}:{acc[t - 1]:.1%}" for t in (1, 2, 4, 8, 16, 32, 64) if t <= len(acc)))
    print(f"  golden model speed   {report['images_per_s']:.0f} images/s (current), "
          f"{report['rate_mode_images_per_s']:.0f} images/s (rate)")
    print(f"wrote {out / 'report.json'} and {', '.join(p.name for p in paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
