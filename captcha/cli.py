"""The `captcha` command: thin click wrappers over the library; no training loop lives here."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import NoReturn

import click

from .charset import DEFAULT_ALPHABET, Charset
from .errors import CaptchaError
from .images import DEFAULT_MAX_PIXELS
from .model import FREEZE_LEVELS


class _Group(click.Group):
    """Every user mistake ends as one line on stderr and exit code 2, never a traceback.

    Mistakes are the project's own errors, click's usage errors (bad option values, missing
    arguments) and files the system refuses (permissions, a full disk).
    """

    group_class = type  # subgroups (data, bench) behave the same

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            _usage_fail(exc)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            _usage_fail(exc)
        except CaptchaError as exc:
            fail(str(exc))
        except OSError as exc:
            if exc.filename is None:
                raise
            fail(f"{exc.filename}: {exc.strerror or exc}")


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on stderr and exit 2 (the one form every user mistake takes)."""
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _usage_fail(exc: click.UsageError) -> NoReturn:
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):
        raise exc  # a bare group name prints its help, as click does
    where = exc.ctx.command_path if exc.ctx else "captcha"
    fail(f"{exc.format_message()} (see `{where} --help`)")


def _charset(alphabet: str | None) -> Charset:
    return Charset(alphabet) if alphabet else Charset()


POSITIVE = click.IntRange(min=1)
COUNT = click.IntRange(min=0)
POSITIVE_FLOAT = click.FloatRange(min=0, min_open=True)
FRACTION = click.FloatRange(0, 1, min_open=True, max_open=True)
LENGTH = click.IntRange(1, 32)
DEFAULT_DATA = "data"
SIDE = click.IntRange(8, 1024)

charset_option = click.option("--charset", "alphabet", default=None, metavar="CHARS",
                              help=f"Alphabet of the classes (default {DEFAULT_ALPHABET}).")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log more detail.")
def main(verbose: bool) -> None:
    """Learn to read text captchas with transfer learning (ResNet-18), and read them fast on a CPU.

    Typical run: `captcha data synth`, `captcha train`, `captcha eval --val`, `captcha solve IMG`.
    """
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s")


@main.group()
def data() -> None:
    """Make, check and split datasets in the course layout."""


@data.command("synth")
@click.option("--out", type=click.Path(file_okay=False), default=DEFAULT_DATA, show_default=True, help="Dataset folder to write.")
@click.option("--seed", default=0, show_default=True, help="Same seed, byte-identical files.")
@click.option("--train-per-class", type=POSITIVE, default=50, show_default=True, help="Training images per character.")
@click.option("--val-per-class", type=COUNT, default=10, show_default=True, help="Validation images per character.")
@click.option("--captchas", type=COUNT, default=500, show_default=True, help="Validation captchas (4 val characters side by side).")
@click.option("--train-captchas", type=COUNT, default=0, show_default=True, help="Training captchas, made from training characters.")
@click.option("--length", type=LENGTH, default=4, show_default=True, help="Characters per captcha.")
@charset_option
def data_synth(out, seed, train_per_class, val_per_class, captchas, train_captchas, length, alphabet) -> None:
    """Write a synthetic course-sized dataset (fonts from matplotlib/Pillow, fully offline)."""
    from .synth import SynthConfig, synth_dataset

    counts = synth_dataset(out, SynthConfig(seed=seed, train_per_class=train_per_class, val_per_class=val_per_class,
                                            captchas=captchas, train_captchas=train_captchas, length=length,
                                            charset=_charset(alphabet)))
    click.echo(f"wrote {out}: " + ", ".join(f"{n} {k}" for k, n in counts.items()))


@data.command("check")
@click.argument("directory", type=click.Path(), default=DEFAULT_DATA)
@click.option("--length", type=LENGTH, default=None, help="Expected captcha length (default: the most common one).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@charset_option
def data_check(directory, length, as_json, alphabet) -> None:
    """Count a dataset and list every problem; exit 0 only when it is usable."""
    from .data import check_dataset

    report = check_dataset(directory, _charset(alphabet), length)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(f"{report.root} ({report.layout} layout)")
        for split, classes in report.chars.items():
            counts = " ".join(f"{c}:{n}" for c, n in classes.items())
            click.echo(f"  chars/{split}: {sum(classes.values())} images in {sum(1 for n in classes.values() if n)} classes  [{counts}]")
        for split, n in report.captchas.items():
            lengths = ", ".join(f"{n_}x length {k}" for k, n_ in sorted(report.lengths.get(split, {}).items()))
            click.echo(f"  captchas/{split}: {n} labelled captchas ({lengths or 'none'})")
        if report.problems:
            click.echo(f"{len(report.problems)} problem(s):")
            for p in report.problems:
                click.echo(f"  - {p}")
        click.echo("usable" if report.usable else "NOT usable")
    sys.exit(0 if report.usable else 1)


@data.command("split")
@click.argument("source", type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Course-layout dataset to write.")
@click.option("--val-fraction", type=FRACTION, default=0.2, show_default=True, help="Share of captchas held out for validation.")
@click.option("--seed", default=0, show_default=True, help="Seed of the random split (as `captcha train --seed`).")
@click.option("--ordered", is_flag=True, help="Hold out the last captchas in file-name order instead of a random share.")
@click.option("--link", is_flag=True, help="Symlink instead of copying the images.")
@click.option("--force", is_flag=True, help="Clear a non-empty --out first (it is refused otherwise).")
@charset_option
def data_split(source, out, val_fraction, seed, ordered, link, force, alphabet) -> None:
    """Split a flat folder of labelled captchas into captchas/train and captchas/val."""
    from .data import ordered_holdout, read_captcha_labels, split_captcha_folder
    from .trainset import flat_split

    cs = _charset(alphabet)
    names = [s.path.name for s in read_captcha_labels(source, cs, problems=[])]
    held = ordered_holdout(names, val_fraction) if ordered else flat_split(names, val_fraction, seed)
    counts = split_captcha_folder(source, out, held, cs, link=link, force=force)
    click.echo(f"wrote {out}: {counts['train']} training and {counts['val']} validation captchas")


@main.command()
@click.option("--source", type=click.Choice(["glyphs", "cifar10"]), default="glyphs", show_default=True,
              help="Task A: synthetic glyphs (similar to captchas) or CIFAR-10 (dissimilar).")
@click.option("--data", "data_path", type=click.Path(), default=None, help="CIFAR-10 folder, tar.gz or cifar-10-batches-py.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Backbone file (default checkpoints/<source>-resnet18.pt).")
@click.option("--steps", type=POSITIVE, default=1300, show_default=True, help="Optimiser steps.")
@click.option("--batch-size", type=POSITIVE, default=128, show_default=True)
@click.option("--lr", type=POSITIVE_FLOAT, default=0.1, show_default=True, help="Peak learning rate (SGD, one-cycle).")
@click.option("--seed", default=0, show_default=True)
@click.option("--workers", type=COUNT, default=1, show_default=True, help="Processes rendering glyphs.")
@click.option("--eval-every", type=POSITIVE, default=200, show_default=True, help="Steps between held-out evaluations.")
def pretrain(source, data_path, out, steps, batch_size, lr, seed, workers, eval_every) -> None:
    """Pretrain a ResNet-18 backbone offline, for `captcha train --pretrained PATH`."""
    from .pretrain import PretrainConfig, pretrain as run

    default_out = "checkpoints/glyph-resnet18.pt" if source == "glyphs" else "checkpoints/cifar10-resnet18.pt"
    cfg = PretrainConfig(source=source, data=data_path, out=out or default_out, steps=steps, batch_size=batch_size, lr=lr, seed=seed, workers=workers, eval_every=eval_every)
    info = run(cfg)
    held = ", ".join(f"{k} {100 * v:.2f}%" for k, v in info["heldout"].items())
    click.echo(f"wrote {cfg.out} in {info['seconds'] / 60:.1f} min; held-out {held}")


@main.command()
@click.option("--data", "data_dir", type=click.Path(), default=None,
              help="Course-layout dataset, or a flat folder of labelled captchas. Default: ./data, made by "
                   "`captcha data synth` when absent (a --data path that does not exist is an error).")
@click.option("--out", type=click.Path(dir_okay=False), default="checkpoints/model.pt", show_default=True,
              help="Best checkpoint; <out>.last.pt (for --resume) and <out>.curve.png are written beside it.")
@click.option("--pretrained", default="auto", show_default=True,
              help="auto, glyphs, imagenet, none, or a PATH to a ResNet-18 checkpoint/state_dict.")
@click.option("--freeze", type=click.Choice(FREEZE_LEVELS), default=None,
              help="Frozen stages: all (only the head trains), layer1..layer4 (stem through that stage), none. "
                   "Default: all when single-character images are given (a task close to the pretraining), "
                   "else none (crops cut from real captchas, whole captchas, or no backbone).")
@click.option("--epochs", type=POSITIVE, default=10, show_default=True)
@click.option("--batch-size", type=POSITIVE, default=64, show_default=True)
@click.option("--optimizer", type=click.Choice(["adamw", "sgd"]), default="adamw", show_default=True,
              help="adamw (tuned default) or the course's SGD with momentum 0.9.")
@click.option("--lr", type=POSITIVE_FLOAT, default=None, help="Peak learning rate (default 2e-3 AdamW, 0.05 SGD).")
@click.option("--schedule", type=click.Choice(["onecycle", "cosine", "constant"]), default="onecycle", show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--no-augment", is_flag=True, help="Switch augmentation off.")
@click.option("--aug-passes", type=POSITIVE, default=None, help="Distinct augmentation passes cycled over the epochs.")
@click.option("--no-cache", is_flag=True, help="With frozen stages, run them every batch instead of caching their output.")
@click.option("--length", type=LENGTH, default=None, help="Characters per captcha (default: from the labels).")
@click.option("--split", "split_method", type=click.Choice(["equal", "projection", "components", "auto"]),
              default="auto", show_default=True,
              help="How captchas are cut into characters; auto: exact cells when chars/ is given, else the "
                   "splitter a quick linear probe on the pretrained features reads best.")
@click.option("--method", type=click.Choice(["classify", "ctc"]), default="classify", show_default=True,
              help="classify: split into characters, classify each (the course). ctc: read the whole captcha "
                   "(segmentation-free, for touching or overlapping glyphs).")
@click.option("--input-size", nargs=2, type=SIDE, default=None, metavar="H W",
              help="Network input size (default: 32 32 crops; ctc: whole captchas near their native scale).")
@click.option("--val-fraction", type=FRACTION, default=0.2, show_default=True, help="Held-out share of a flat captcha folder.")
@click.option("--resume", is_flag=True, help="Continue the interrupted run from <out>.last.pt.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="auto: CUDA when available (bf16 mixed precision, channels-last), else the CPU.")
@charset_option
def train(data_dir, out, pretrained, freeze, epochs, batch_size, optimizer, lr, schedule, seed, no_augment,
          aug_passes, no_cache, length, split_method, method, input_size, val_fraction, resume, device,
          alphabet) -> None:
    """Train the per-character ResNet-18 classifier (transfer learning) and keep the best checkpoint."""
    from .train import TrainConfig, train as run
    from .transforms import AugmentConfig

    cfg = TrainConfig(data=data_dir or DEFAULT_DATA, synth_if_missing=data_dir is None, out=out, charset=_charset(alphabet).alphabet, pretrained=pretrained,
                      freeze=freeze, epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr,
                      schedule=schedule, seed=seed, augment=AugmentConfig(enabled=not no_augment),
                      aug_passes=aug_passes, cache_features=not no_cache, length=length, split=split_method,
                      val_fraction=val_fraction, resume=resume, device=device, method=method,
                      size=tuple(input_size) if input_size else None)
    result = run(cfg, say=click.echo, progress=sys.stderr.isatty())
    if result.get("rank", 0) != 0:
        return  # under torchrun, rank 0 reports
    best = result["best"]
    click.echo(f"best: val char acc {_pct(best.get('char_acc'))}, full-string acc {_pct(best.get('string_acc'))} "
               f"(epoch {best.get('epoch')}); {result['train_seconds']:.1f}s of training")
    click.echo(f"wrote {result['checkpoint']} and {result['curve']}")


def _pct(v) -> str:
    return "n/a" if v is None or v != v else f"{100 * v:.2f}%"


@main.command("eval")
@click.argument("dataset", type=click.Path(), required=False)
@click.option("--val", is_flag=True, help="Evaluate on the checkpoint's own validation data (the split it recorded).")
@click.option("--data", "data_dir", type=click.Path(), default=None,
              help="With --val: where the training dataset is now (default: the folder recorded in the checkpoint).")
@click.option("--checkpoint", type=click.Path(), default="checkpoints/model.pt", show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for confusion.png (and errors.png); default: beside the checkpoint.")
@click.option("--show-errors", type=COUNT, default=0, show_default=True, help="Write a sheet of the N most confidently misread captchas.")
@click.option("--json", "as_json", is_flag=True)
def evaluate(dataset, val, data_dir, checkpoint, out_dir, show_errors, as_json) -> None:
    """Character, full-string and per-position accuracy, confusions, confusion-matrix PNG.

    `captcha eval --val` measures the held-out part of the data the checkpoint was trained on;
    `captcha eval DATASET` measures any labelled data: every captcha of a flat folder, or the
    chars/val and captchas/val parts of a course-layout dataset.
    """
    from .evaluate import evaluate_checkpoint

    if val == bool(dataset):
        fail("give --val or a DATASET folder, not both" if val else
             "nothing to evaluate: give --val (the checkpoint's own validation data) or a DATASET folder")
    if data_dir and not val:
        fail("--data goes with --val; to evaluate another folder, pass it as DATASET")
    out_dir = out_dir or str(Path(checkpoint).with_name(Path(checkpoint).stem + "-eval"))
    rep = evaluate_checkpoint(checkpoint, data_dir, out_dir, show_errors, dataset=dataset)
    if as_json:
        click.echo(json.dumps(rep.to_dict(), indent=2))
        return
    if rep.chars:
        click.echo(f"character accuracy (chars/val): {_pct(rep.chars['char_acc'])} of {rep.chars['chars']}")
    caps = rep.captchas
    if caps.get("captchas"):
        click.echo(f"full-string accuracy: {_pct(caps['string_acc'])} of {caps['captchas']} captchas; "
                   f"characters {_pct(caps['captcha_char_acc'])}")
        click.echo("per position: " + ", ".join(f"{i + 1}: {_pct(v)}" for i, v in enumerate(caps["position_acc"])))
    if rep.confusions:
        click.echo("most frequent confusions (true->read x count): "
                   + ", ".join(f"{t}->{p} x{n}" for t, p, n in rep.confusions))
    for kind, path in rep.files.items():
        click.echo(f"wrote {path}")


@main.command()
@click.argument("images", nargs=-1, required=True)
@click.option("--checkpoint", type=click.Path(), default="checkpoints/model.pt", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line: text, confidences, time.")
@click.option("--max-pixels", type=POSITIVE, default=DEFAULT_MAX_PIXELS, show_default=True,
              help="Refuse images larger than this (checked from the header, before decoding).")
def solve(images, checkpoint, as_json, max_pixels) -> None:
    """Read captcha images (`-` reads image bytes from stdin); one line per image.

    --checkpoint may be an exported .onnx file: it then runs on ONNX Runtime, without PyTorch.
    """
    from .errors import ImageError
    from .solve import Solver

    solver = Solver.load(checkpoint, max_pixels=max_pixels)
    failed = 0
    for name in images:
        src = sys.stdin.buffer.read() if name == "-" else name
        try:
            sol = solver.solve(src)
        except ImageError as exc:
            failed += 1
            click.echo(json.dumps({"file": name, "error": str(exc)}) if as_json else f"{name}\terror: {exc}",
                       err=not as_json)
            continue
        if as_json:
            click.echo(json.dumps({"file": name, "text": sol.text, "confidence": round(sol.confidence, 4),
                                   "confidences": [round(c, 4) for c in sol.confidences],
                                   "ms": round(1000 * sol.seconds, 2)}))
        else:
            click.echo(f"{name}\t{sol.text}" if len(images) > 1 else sol.text)
    sys.exit(1 if failed else 0)


@main.command("solve-batch")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="CSV: filename,text,confidence,error.")
@click.option("--checkpoint", type=click.Path(), default="checkpoints/model.pt", show_default=True)
@click.option("--batch-size", type=POSITIVE, default=64, show_default=True)
@click.option("--workers", type=COUNT, default=0, show_default=True, help="Processes decoding images.")
@click.option("--resume", is_flag=True, help="Skip inputs already in --out and append the rest.")
@click.option("--shard", default=None, metavar="I/N", help="Take every N-th input from the I-th (0-based), for N machines.")
@click.option("--max-pixels", type=POSITIVE, default=DEFAULT_MAX_PIXELS, show_default=True,
              help="Images larger than this get an error row (checked before decoding).")
def solve_batch(inputs, out, checkpoint, batch_size, workers, resume, shard, max_pixels) -> None:
    """Solve directories, globs or lists of paths (a .txt file) into one CSV; bad files get error rows.

    --checkpoint may be an exported .onnx file (ONNX Runtime, no PyTorch). Shards' CSVs merge with
    `captcha merge-results`.
    """
    from .batch import parse_shard, run_batch

    stats = run_batch(inputs, out, checkpoint, batch_size=batch_size, workers=workers, resume=resume,
                      progress=sys.stderr.isatty(), shard=parse_shard(shard), max_pixels=max_pixels)
    click.echo(f"{stats['solved']} solved, {stats['errors']} errors, {stats['skipped']} skipped (already in {out}); "
               f"{stats['per_second']:.0f} captchas/s")
    if not stats["solved"] and not stats["skipped"]:
        fail(f"none of the {stats['errors']} inputs could be read (see the error column of {out})" if stats["errors"]
             else f"no images found in {', '.join(inputs)}")


@main.command()
@click.option("--checkpoint", type=click.Path(), default=None, help="A trained recognizer.")
@click.option("--pretrained", default="auto", show_default=True, help="Without --checkpoint: the backbone source.")
@click.option("--input-size", nargs=2, type=SIDE, default=None, metavar="H W", help="Default: the checkpoint's, else 32 32.")
@click.option("--freeze", type=click.Choice(FREEZE_LEVELS), default=None, help="Count trainable/frozen for this level.")
@click.option("--depth", type=POSITIVE, default=3, show_default=True, help="How deep the layer table goes.")
@click.option("--print-model", is_flag=True, help="Also print(model), as the course does.")
@click.option("--json", "as_json", is_flag=True)
def summary(checkpoint, pretrained, input_size, freeze, depth, print_model, as_json) -> None:
    """Layer table (output shape, parameters), trainable vs frozen counts, sizes in MB."""
    from .summary import load_for_inspection, print_layers, summarize

    model, info = load_for_inspection(checkpoint, pretrained, freeze)
    size = tuple(input_size) if input_size else tuple(info.get("preprocess", {}).get("size", (32, 32)))
    s = summarize(model, size, depth)
    if as_json:
        click.echo(json.dumps({k: v for k, v in s.items() if k != "table"}, indent=2))
        return
    if print_model:
        click.echo(print_layers(model))
    click.echo(s["table"])
    click.echo(f"freeze={s['freeze']} (frozen: {', '.join(s['frozen_stages']) or 'nothing'}): "
               f"{s['trainable_params']:,} trainable, {s['frozen_params']:,} frozen of {s['total_params']:,} parameters")


@main.command()
@click.argument("image", type=click.Path())
@click.option("--checkpoint", type=click.Path(), default="checkpoints/model.pt", show_default=True)
@click.option("--layers", default="conv1,layer1,layer2,layer3,layer4", show_default=True,
              help="Comma list of Conv2d names or stages (a stage shows its last conv), or all-conv.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="runs/visualize", show_default=True)
def visualize(image, checkpoint, layers, out_dir) -> None:
    """Feature maps of each chosen conv layer (forward hooks), one PNG grid per layer."""
    from .visualize import visualize as run

    files = run(image, checkpoint, layers, out_dir)
    n = sum(len(v) for v in files.values())
    click.echo(f"wrote {n} PNGs to {out_dir} ({len(files['maps'])} feature-map grids, "
               f"{len(files['crops'])} crops, conv1 filters)")


@main.command("merge-results")
@click.argument("parts", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), required=True)
def merge_results(parts, out) -> None:
    """Merge the CSVs of `solve-batch --shard` runs into one (one row per file)."""
    from .batch import merge_results as run

    click.echo(f"wrote {out}: {run(parts, out)} rows")


@main.command()
@click.option("--checkpoint", type=click.Path(), default="checkpoints/model.pt", show_default=True)
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False), required=True, help="ONNX file to write.")
@click.option("--int8", is_flag=True, help="Also write <name>.int8.onnx, statically quantised with ONNX Runtime.")
@click.option("--tolerance", type=POSITIVE_FLOAT, default=1e-3, show_default=True, help="Largest allowed ONNX-vs-PyTorch logit difference.")
def export(checkpoint, onnx_path, int8, tolerance) -> None:
    """Export a recognizer to ONNX (dynamic batch) and verify it against PyTorch."""
    from .export import export_onnx

    rep = export_onnx(checkpoint, onnx_path, quantize=int8, tolerance=tolerance)
    click.echo(f"wrote {rep['onnx']} (max |ONNX - PyTorch| = {rep['max_abs_diff']:.2e})")
    if int8:
        click.echo(f"wrote {rep['int8']} (top-1 agreement with PyTorch on sample crops: "
                   f"{100 * rep['int8_top1_agreement']:.1f}%)")


@main.command()
@click.option("--checkpoint", type=click.Path(), default="checkpoints/model.pt", show_default=True,
              help="A checkpoint, or an exported .onnx file.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--max-bytes", type=POSITIVE, default=2 * 1024 * 1024, show_default=True, help="Largest accepted image.")
@click.option("--max-batch", type=POSITIVE, default=64, show_default=True, help="Most images solved together.")
@click.option("--batch-window-ms", type=click.FloatRange(min=0), default=2.0, show_default=True, help="How long to gather concurrent requests.")
def serve(checkpoint, host, port, max_bytes, max_batch, batch_window_ms) -> None:
    """HTTP service: POST /solve, POST /solve/batch, GET /health, docs at /docs."""
    from .serve import serve as run

    run(checkpoint, host, port, max_bytes=max_bytes, max_batch=max_batch, window_ms=batch_window_ms)


@main.group()
def bench() -> None:
    """Benchmarks that print their figures (the course's CIFAR-10 warm-up, ...)."""


@bench.command("cifar10")
@click.option("--data", "data_path", type=click.Path(), required=True,
              help="cifar-10-batches-py, an image-folder copy, or cifar10-jpg.tar.gz.")
@click.option("--pretrained", default="auto", show_default=True,
              help="Backbone for the frozen runs: imagenet, glyphs, a PATH, or auto (imagenet if cached, else glyphs).")
@click.option("--subset", type=COUNT, default=5000, show_default=True, help="Training images (class-balanced); 0 for all 50,000.")
@click.option("--test-subset", type=COUNT, default=1000, show_default=True, help="Test images; 0 for all 10,000.")
@click.option("--epochs", type=POSITIVE, default=3, show_default=True)
@click.option("--size", type=SIDE, default=32, show_default=True, help="Input size (the course used 224 on a GPU).")
@click.option("--batch-size", type=POSITIVE, default=64, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="runs/bench-cifar10", show_default=True)
def bench_cifar10(data_path, pretrained, subset, test_subset, epochs, size, batch_size, out_dir) -> None:
    """ResNet-18 from scratch vs pretrained-and-frozen on the same CIFAR-10 batches."""
    from .cifar import bench_cifar10 as run, format_cifar_report
    from .model import imagenet_weights_path

    if pretrained == "auto":
        pretrained = "imagenet" if imagenet_weights_path().is_file() else "glyphs"
    res = run(data_path, pretrained, subset or None, test_subset or None, epochs, size, batch_size,
              out_dir=out_dir, say=click.echo)
    click.echo(format_cifar_report(res))
    click.echo("wrote " + ", ".join(res["files"]))


@bench.command("transfer")
@click.option("--data", "data_path", type=click.Path(exists=True, file_okay=False), default="data", show_default=True,
              help="A captcha dataset (course layout or a flat folder).")
@click.option("--cifar-backbone", type=click.Path(), default="checkpoints/cifar10-resnet18.pt", show_default=True,
              help="Backbone from `captcha pretrain --source cifar10` (its row is skipped when absent).")
@click.option("--epochs", type=POSITIVE, default=6, show_default=True)
@click.option("--small", type=POSITIVE, default=10, show_default=True, help="Images per character for the small-data column (course data).")
@click.option("--small-captchas", type=POSITIVE, default=100, show_default=True,
              help="Training captchas for the small-data column (data with captchas/train and labels.csv).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="runs/bench-transfer", show_default=True)
def bench_transfer(data_path, cifar_backbone, epochs, small, small_captchas, out_dir) -> None:
    """Starting point x freeze level table of full-string accuracy and training time."""
    from .transfer import bench_transfer as run, format_transfer

    res = run(data_path, cifar_backbone, epochs, small, out_dir=out_dir, say=click.echo, small_captchas=small_captchas)
    click.echo(format_transfer(res))
    click.echo(f"wrote {out_dir}/transfer.md and transfer.json")


if __name__ == "__main__":  # pragma: no cover
    main()
