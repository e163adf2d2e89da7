"""``make sim``: classify the test digits on the simulated hardware and compare with golden.

``python -m sim.run --image firmware/digits`` runs end to end, as a user of a real board
would: it builds the virtual board (:mod:`sim.board`: :class:`hw.system.LifpgaSystem`, the
UART receiver, frame engine, core and UART transmitter, Verilated once and cached), starts it
on a TCP port, and sends the whole test split through the host driver
(:class:`firmware.driver.Lifpga`, pipelined ``classify_many``) in each encoder mode: driver ->
socket -> UART rx pin -> frame engine -> core -> UART tx pin -> driver. Every answer is
compared with :func:`golden.layers.run`: the label, every class score and the spike count.

For a network trained on an IDX data set (MNIST, Fashion-MNIST, EMNIST digits), ``--data DIR``
names the folder of its IDX files (``make sim DATASET=mnist DATA=DIR``). For every data set
it prints, per mode, the per-class precision, recall and F1 and the confusion matrix of the
hardware's answers and draws the matrix into ``build/sim/confusion-<mode>.png``. ``--jobs N``
runs N virtual boards side by side, each on a contiguous share of the images (each board is a
process: one per core helps; the answers are the same, every board starting from RESET).

``--via core`` instead streams the images straight into the core's ports (:mod:`sim.verilator`,
cocotb), the tier that also checks each image's cycle count against the timing model.

It prints a table per mode (accuracy on the true labels, golden accuracy, agreement, cycles per
image, wall time) and the link figures (bytes per image each way, the images/s a 3 Mbaud link
allows one at a time and pipelined), and writes ``build/sim/report.json``. An image *agrees*
when its label and every score equal golden's; the command fails (exit 1) unless every image
of every mode agrees (:func:`golden.device.agreement`: label, every score and the spike count),
and each answer's cycle count equals the core's timing model
(:meth:`hw.geometry.EngineGeometry.expected_cycles`), and prints the first image that does not.
The link figures are :func:`golden.protocol.link_rate`'s (dense CLASSIFY), and
:func:`golden.protocol.link_figures`' for what the driver sends by default (``"auto"``), mean
and worst over the test images.

``--wave`` also runs the first two images (in current mode, unless ``--modes`` leaves it out)
on a core model built with FST tracing and writes ``build/sim/wave-<mode>.fst`` (every signal
of the harness and the core; GTKWave and Surfer open it). Verilator's FST writer needs LZ4:
the system's if it has one, otherwise the first ``--wave`` builds it into ``build/sim/lz4/``
from the C sources in the PyPI sdist of python-lz4 (:func:`sim.fst.fst_build_args`). If
that fails (no network, say), it says why and writes ``build/sim/wave-<mode>.vcd`` instead: a
current-mode image makes about 20 MB of VCD, a rate-mode image some 0.5 GB. For the waveform
alone: ``--wave --limit 2 --modes current``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from firmware import DIGITS_IMAGE
from firmware.driver import Lifpga, LifpgaError
from golden import data, device, idx, image, layers, metrics, protocol
from golden.constants import MODE_BY_NAME, MODE_NAMES, STEPS_BITS
from hw.geometry import EngineGeometry
from hw.options import positive_int

from . import board, fst, verilator

#: Seconds the driver waits for one answer from the virtual board.
BOARD_TIMEOUT_S = 60.0

#: Images of a ``--wave`` run unless ``--limit`` asks for fewer.
WAVE_IMAGES = 2


def _progress(label: str, total: int):
    """A callback showing progress: a tqdm bar on a terminal, a line per tenth otherwise."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=total, desc=f"{label:>8}", unit="img", leave=True)

        def update(done: int) -> None:
            bar.update(done - bar.n)

        return update, bar.close
    marks = {int(total * k / 10) for k in range(1, 11)}
    shown = [0]

    def report(done: int) -> None:
        for mark in sorted(m for m in marks if shown[0] < m <= done):
            print(f"  {label}: {mark}/{total} images", file=sys.stderr, flush=True)
        shown[0] = max(shown[0], done)

    return report, lambda: None


def sim_agreement(sim: verilator.SimResult, golden: layers.LayeredResult) -> np.ndarray:
    """Per image of a simulation run: label, every score and the spike count equal golden's
    (:func:`golden.device.agreement` of ``sim``'s fields), a (B,) bool array."""
    return device.agreement(sim.label, sim.scores, sim.spike_count, golden)


def _describe_mismatch(k: int, sim: verilator.SimResult, golden: layers.LayeredResult,
                       truth: np.ndarray) -> str:
    return (f"image {k} (true class {truth[k]}): simulated label {sim.label[k]}, golden "
            f"{golden.classes[-1][k]}; spike count {sim.spike_count[k]} vs "
            f"{golden.spike_count[k]}\n  simulated scores {sim.scores[k].tolist()}\n"
            f"  golden scores    {golden.scores[-1][k].tolist()}")


def run_mode(sim_model: verilator.SimModel, net: layers.LayeredNetwork, x: np.ndarray,
             y: np.ndarray,
             steps: int, mode: int, **options: Any) -> tuple[dict, str | None]:
    """Run one mode over ``x``; returns its report entry and the first mismatch, if any."""
    name = MODE_NAMES[mode]
    update, close = _progress(name, len(x))
    try:
        sim = sim_model.run(x, steps, mode, progress=update, **options)
    finally:
        close()
    return _entry(sim, net, x, y, steps, mode)


def _board_answers(board_model: board.BoardModel, x: np.ndarray, steps: int, mode: int,
                   update, stop: threading.Event) -> list[protocol.Classification]:
    """The answers for ``x`` from a virtual board of its own, started for this call; stops
    early (with the answers so far) once ``stop`` is set."""
    answers = []
    with board_model.start() as running, Lifpga(running.url, timeout=BOARD_TIMEOUT_S) as lifpga:
        for answer in lifpga.classify_many(x, steps=steps, mode=mode):
            answers.append(answer)
            update()
            if stop.is_set():
                break  # another board failed: leaving stops this one as well
    return answers


def board_answers(board_model: board.BoardModel, x: np.ndarray, steps: int, mode: int,
                  jobs: int = 1, progress=None) -> list[protocol.Classification]:
    """The answers for ``x`` in order, from ``jobs`` virtual boards run side by side, each
    given a contiguous share of the images (one process each; the answers do not depend on
    how the images are shared out, every board starting from RESET).

    ``progress(done)`` is called after each answer, with the count so far. The first board
    to fail stops the others (at their next answer) and its error is raised."""
    if not len(x):
        return []
    lock, stop = threading.Lock(), threading.Event()
    done = [0]

    def update() -> None:
        with lock:
            done[0] += 1
            if progress is not None:
                progress(done[0])

    shares = np.array_split(x, min(jobs, len(x)))
    with concurrent.futures.ThreadPoolExecutor(len(shares)) as pool:
        futures = [pool.submit(_board_answers, board_model, share, steps, mode, update, stop)
                   for share in shares]
        concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_EXCEPTION)
        stop.set()
        for future in futures:
            if future.exception() is not None:
                raise future.exception()
        return [a for future in futures for a in future.result()]


def run_board_mode(board_model: board.BoardModel, net: layers.LayeredNetwork, x: np.ndarray,
                   y: np.ndarray, steps: int, mode: int, cycles_model=None,
                   jobs: int = 1) -> tuple[dict, str | None]:
    """Run one mode over ``x`` through ``jobs`` virtual boards, like :func:`run_mode`.

    ``cycles_model(pixels, steps, mode)`` (``EngineGeometry.expected_cycles``) is what each answer's
    ``cycles`` field must equal; the entry's ``cycles_agreement`` says how many did. The wall
    time (and images/s) includes starting the boards, a fraction of a second each.
    """
    name = MODE_NAMES[mode]
    update, close = _progress(name, len(x))
    start = time.perf_counter()
    try:
        answers = board_answers(board_model, x, steps, mode, jobs, update)
    finally:
        close()
    wall = time.perf_counter() - start
    cycles_arr = np.array([a.cycles for a in answers], dtype=np.int64)
    # The device reports no latency of its own: its cycle count stands in for it.
    sim = verilator.SimResult(np.array([a.label for a in answers], dtype=np.int64),
                              np.array([a.scores for a in answers], dtype=np.int64),
                              np.array([a.spike_count for a in answers], dtype=np.int64),
                              cycles_arr, cycles_arr, wall)
    entry, mismatch = _entry(sim, net, x, y, steps, mode)
    entry["jobs"] = min(jobs, len(x))
    if cycles_model is not None:
        expected = np.array([cycles_model(image, steps, mode) for image in x])
        entry["cycles_agreement"] = float(np.mean(expected == cycles_arr))
        if mismatch is None and entry["cycles_agreement"] < 1:
            k = int(np.flatnonzero(expected != cycles_arr)[0])
            mismatch = (f"image {k}: the device took {cycles_arr[k]} cycles, the engine's timing "
                        f"model says {expected[k]}")
    return entry, mismatch


def _entry(sim: verilator.SimResult, net: layers.LayeredNetwork, x: np.ndarray, y: np.ndarray,
           steps: int, mode: int) -> tuple[dict, str | None]:
    golden = layers.run(x, net, steps, mode)
    agree = sim_agreement(sim, golden)
    spikes_agree = np.asarray(sim.spike_count) == golden.spike_count
    entry = {
        "mode": MODE_NAMES[mode],
        "images": len(x),
        "timesteps": steps,
        "accuracy": float(np.mean(sim.label == y)),
        "golden_accuracy": float(np.mean(golden.classes[-1] == y)),
        "agreement": float(np.mean(agree)),
        "spike_count_agreement": float(np.mean(spikes_agree)),
        "cycles_per_image": float(np.mean(sim.cycles)),
        "cycles_min": int(sim.cycles.min()),
        "cycles_max": int(sim.cycles.max()),
        "wall_s": round(sim.wall_s, 3),
        "images_per_s": round(len(x) / sim.wall_s, 2),
    }
    if ((sim.label >= 0) & (sim.label < net.classes)).all():  # else a mismatch says why
        entry.update(metrics.class_report(y, sim.label, net.classes).as_json())
    bad = np.flatnonzero(~agree)
    mismatch = _describe_mismatch(int(bad[0]), sim, golden, y) if bad.size else None
    entry["first_mismatch"] = int(bad[0]) if bad.size else None
    return entry, mismatch


def link_figures(net: layers.LayeredNetwork, baud: int = board.BAUD, images=None) -> dict:
    """Bytes per image each way and the images/s a ``baud`` link allows (8N1), from
    :func:`golden.protocol.link_rate` (dense CLASSIFY); given ``images``, also ``"auto"``:
    the same for the frames the driver sends by default (:func:`golden.protocol.link_figures`
    with encoding ``"auto"``, the shorter of CLASSIFY and CLASSIFY_SPARSE per image), mean
    and worst over ``images``."""
    rate = protocol.link_rate(net.inputs, net.classes, baud)
    figures = {"baud": baud, "request_bytes": rate.request_bytes,
               "response_bytes": rate.answer_bytes,
               "images_per_s_one_at_a_time": round(rate.images_per_s_serial, 1),
               "images_per_s_pipelined": round(rate.images_per_s_pipelined, 1)}
    if images is not None:
        auto = protocol.link_figures(images, net.classes, baud, "auto")
        figures["auto"] = {
            "images": auto.images, "request_bytes_mean": round(auto.request_bytes_mean, 1),
            "request_bytes_max": auto.request_bytes_max,
            "images_per_s_one_at_a_time_mean": round(auto.images_per_s_serial_mean, 1),
            "images_per_s_one_at_a_time_worst": round(auto.images_per_s_serial_worst, 1),
            "images_per_s_pipelined_mean": round(auto.images_per_s_pipelined_mean, 1),
            "images_per_s_pipelined_worst": round(auto.images_per_s_pipelined_worst, 1)}
    return figures


def link_line(link: dict) -> str:
    """The printed link line of :func:`link_figures`' result."""
    line = (f"link at {link['baud']:,} baud: {link['request_bytes']} bytes per request, "
            f"{link['response_bytes']} per answer; it allows "
            f"{link['images_per_s_one_at_a_time']:,.0f} images/s one at a time, "
            f"{link['images_per_s_pipelined']:,.0f} pipelined")
    if auto := link.get("auto"):
        line += (f"\n  as the driver sends them (auto: CLASSIFY_SPARSE where shorter), over "
                 f"{auto['images']} test images: {auto['request_bytes_mean']:g} bytes per "
                 f"request on average, {auto['request_bytes_max']} at most; "
                 f"{auto['images_per_s_pipelined_mean']:,.0f} images/s pipelined "
                 f"({auto['images_per_s_pipelined_worst']:,.0f} for the worst image), "
                 f"{auto['images_per_s_one_at_a_time_mean']:,.0f} one at a time "
                 f"({auto['images_per_s_one_at_a_time_worst']:,.0f})")
    return line


def _table(entries: list[dict]) -> str:
    rows = [("mode", "accuracy", "golden", "agreement", "cycles/image", "wall s", "images/s")]
    for e in entries:
        rows.append((e["mode"], f"{e['accuracy']:.2%}", f"{e['golden_accuracy']:.2%}",
                     f"{e['agreement']:.2%}", f"{e['cycles_per_image']:.0f}",
                     f"{e['wall_s']:.1f}", f"{e['images_per_s']:.1f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) if i else c.ljust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True)))
                     for r in rows)


def _class_figures(entries: list[dict], dataset: str, out: Path) -> None:
    """Print each mode's per-class figures and confusion matrix (of the hardware's answers)
    and draw the matrix into ``out/confusion-<mode>.png``."""
    for e in (e for e in entries if "confusion" in e):
        report = metrics.ClassReport.from_json(e)
        print(f"\n{e['mode']} mode, the hardware's answers on {e['images']} test images of "
              f"{dataset}:")
        print(metrics.format_class_report(report))
        png = out / f"confusion-{e['mode']}.png"
        try:
            metrics.write_confusion_png(report.confusion, png, f"{dataset}, {e['mode']} mode, "
                                        f"{e['timesteps']} steps: {e['accuracy']:.2%}")
        except OSError as exc:
            print(f"warning: cannot write {png}: {exc}", file=sys.stderr)
            continue
        print(f"wrote {png}")


def _build(net: layers.LayeredNetwork, manifest: dict, lanes: int,
           waves: str | None = None) -> verilator.SimModel | str:
    """Build (or reuse) the Verilator model; returns it, or an error message."""
    try:
        sim_model = verilator.build(net, manifest["pixel_max"], lanes, waves=waves)
    except (verilator.ToolNotFoundError, verilator.SimulationError, ValueError) as e:
        return str(e)
    built = "cached" if sim_model.cached else "exported and built"
    kind = f"model with {waves.upper()} tracing" if waves else "model"
    print(f"Verilator {kind} {built} in {sim_model.build_s:.1f} s: {sim_model.build_dir}")
    return sim_model


def _dump_wave(net: layers.LayeredNetwork, manifest: dict, lanes: int, x: np.ndarray, steps: int,
               mode_name: str, out: Path) -> str | None:
    """The ``--wave`` run: a few images on a model with tracing. Returns an error or None."""
    try:
        fst.fst_build_args(announce=print)
        fmt = "fst"
    except fst.FstUnavailableError as e:
        print(f"warning: writing a VCD waveform instead of FST, because Verilator's FST writer "
              f"cannot be built here: {e}", file=sys.stderr)
        fmt = "vcd"
    sim_model = _build(net, manifest, lanes, waves=fmt)
    if isinstance(sim_model, str):
        return sim_model
    mode = MODE_BY_NAME[mode_name]
    wave_file = (out / f"wave-{mode_name}.{fmt}").resolve()
    try:
        sim = sim_model.run(x, steps, mode, wave_file=wave_file)
    except (verilator.SimulationError, ValueError) as e:
        return f"waveform run: {e}"
    if not sim_agreement(sim, layers.run(x, net, steps, mode)).all():
        return "waveform run: the traced model differs from golden"
    print(f"{fmt.upper()} waveform of {len(x)} image(s), {mode_name} mode, {steps} steps: "
          f"{wave_file} ({wave_file.stat().st_size / 1e6:.1f} MB)")
    return None


def _steps(text: str) -> int:
    """``--steps``: 1 .. 2**STEPS_BITS - 1 (0 would silently mean 1 on the device)."""
    steps = positive_int(text)
    if steps >= 1 << STEPS_BITS:
        raise argparse.ArgumentTypeError(f"must be at most {(1 << STEPS_BITS) - 1}, not {steps}")
    return steps


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sim.run",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default=str(DIGITS_IMAGE), help="network image directory")
    parser.add_argument("--lanes", type=positive_int, default=16,
                        help="neurons updated in parallel")
    parser.add_argument("--steps", type=_steps, help="timesteps per image (default: the image's)")
    parser.add_argument("--modes", default="current,rate",
                        help="comma-separated encoder modes (default: current,rate)")
    parser.add_argument("--limit", type=positive_int, help="only the first K test images")
    parser.add_argument("--wave", action="store_true",
                        help=f"also dump a waveform of the first {WAVE_IMAGES} images "
                             "(current mode if listed, else the first mode)")
    parser.add_argument("--jobs", type=positive_int, default=1,
                        help="with --via board: virtual boards run side by side, each on a "
                             "share of the images (one per core helps; default 1)")
    parser.add_argument("--data", metavar="DIR",
                        help="folder of the IDX files, for an image trained on an IDX data set "
                             "(MNIST, Fashion-MNIST, EMNIST digits); the digits need none")
    parser.add_argument("--out", default="build/sim", help="output directory")
    parser.add_argument("--via", choices=("board", "core"), default="board",
                        help="board: through the driver, a socket and the UART of the virtual "
                             "board (default); core: straight into the core's streams")
    return parser


def _prepare(args, net: layers.LayeredNetwork, manifest: dict) -> tuple[Any, dict]:
    """Build (or reuse) what ``--via`` runs on: ``(runner, build figures)``, where
    ``runner(x, y, steps, mode)`` returns a mode's entry and first mismatch. Raises
    :class:`RuntimeError` with the message on a failed build."""
    if args.via == "core":
        sim_model = _build(net, manifest, args.lanes)
        if isinstance(sim_model, str):
            raise RuntimeError(sim_model)
        return (functools.partial(run_mode, sim_model, net),
                {"build_s": round(sim_model.build_s, 3), "build_cached": sim_model.cached,
                 "design_key": sim_model.key})
    try:
        board_model = board.build_board(args.image, lanes=args.lanes, announce=print)
        cycles_model = EngineGeometry.of(net, pixel_max=manifest["pixel_max"],
                                         lanes=args.lanes).expected_cycles
    except (board.ToolNotFoundError, board.SimulationError, ValueError) as e:
        raise RuntimeError(str(e)) from None
    built = "cached" if board_model.cached else "exported and built"
    print(f"virtual board {built} in {board_model.build_s:.1f} s: {board_model.executable}")

    def runner(x, y, steps, mode):
        return run_board_mode(board_model, net, x, y, steps, mode, cycles_model, args.jobs)

    return runner, {"build_s": round(board_model.build_s, 3),
                    "build_cached": board_model.cached, "design_key": board_model.key,
                    "clk_hz": board_model.clk_hz, "baud": board_model.baud}


def _run_modes(runner, modes: list[str], x, y, steps: int) -> tuple[list, list] | None:
    """Every mode's entry and mismatch line; None (after printing why) if a run failed."""
    entries, mismatches = [], []
    for name in modes:
        try:
            entry, mismatch = runner(x, y, steps, MODE_BY_NAME[name])
        except (verilator.SimulationError, ValueError) as e:
            print(f"error ({name} mode): {e}", file=sys.stderr)
            return None
        except (LifpgaError, board.BoardError) as e:
            print(f"error ({name} mode, virtual board): {e}", file=sys.stderr)
            return None
        entries.append(entry)
        if mismatch:
            mismatches.append(f"{name} mode, first mismatching {mismatch}")
    return entries, mismatches


def _report(args, net, manifest, split, x, steps, entries, build, link) -> dict:
    """The contents of ``report.json``: the current mode's figures first, then every mode."""
    main_entry = next((e for e in entries if e["mode"] == "current"), entries[0])
    return {
        "dataset": split.name,
        "images": len(x),
        "timesteps": steps,
        **{k: main_entry[k] for k in ("mode", "accuracy", "golden_accuracy", "agreement",
                                      "cycles_per_image")},
        "lanes": args.lanes,
        "neurons": net.neurons,
        "wall_s": main_entry["wall_s"],
        "via": args.via,
        **build,
        "image": str(args.image),
        "image_hash": manifest["hash"],
        "link": link,
        "modes": {e["mode"]: e for e in entries},
    }


def _verdict(entries: list[dict], mismatches: list[str], images: int) -> int:
    """Print the mismatches and the verdict; returns the exit status."""
    for text in mismatches:
        print(text, file=sys.stderr)
    if any(e["agreement"] < 1.0 or e["spike_count_agreement"] < 1.0
           or e.get("cycles_agreement", 1.0) < 1.0 for e in entries):
        print("FAIL: the simulated hardware differs from the golden model", file=sys.stderr)
        return 1
    print(f"all {images} images agree with the golden model in "
          f"{' and '.join(e['mode'] for e in entries)} mode")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in MODE_BY_NAME for m in modes):
        parser.error(f"--modes takes a comma-separated list of {', '.join(MODE_BY_NAME)}")
    if args.jobs > 1 and args.via != "board":
        parser.error("--jobs runs several virtual boards: it needs --via board")
    try:
        net, manifest = image.load_layers(args.image)
    except image.NetworkImageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    steps = args.steps if args.steps is not None else manifest["timesteps"]
    try:
        split = data.load_split(manifest["metadata"].get("dataset", "digits"), args.data)
    except (idx.IdxError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    x, y = split.x_test[:args.limit], split.y_test[:args.limit]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"{args.image}: {net.neurons} neurons, {args.lanes} lanes, {steps} steps, "
          f"{len(x)} test images of {split.name}, image {manifest['hash'][:19]}...")
    try:
        runner, build = _prepare(args, net, manifest)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if (ran := _run_modes(runner, modes, x, y, steps)) is None:
        return 2
    entries, mismatches = ran
    print(_table(entries))
    _class_figures(entries, split.name, out)
    link = link_figures(net, images=split.x_test)
    print(link_line(link))
    report = _report(args, net, manifest, split, x, steps, entries, build, link)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out / 'report.json'}")
    if args.wave:
        wave_mode = "current" if "current" in modes else modes[0]
        if error := _dump_wave(net, manifest, args.lanes, x[:WAVE_IMAGES], steps, wave_mode,
                               out):
            print(f"error: {error}", file=sys.stderr)
            return 2
    return _verdict(entries, mismatches, len(x))


if __name__ == "__main__":
    sys.exit(main())
