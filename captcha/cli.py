"""The `captcha` command: thin click wrappers over the library, with one contract for every command.

- Defaults and choices come from ``config`` (shown in every --help); nothing is restated here.
- ``--out`` always names a file, ``--out-dir`` a folder; ``--data`` always names a dataset folder.
- ``--batch-size``, ``--device``, ``--backend``, ``--max-pixels`` and ``--json`` mean the same
  wherever they appear.
- Every user mistake is one ``error:`` line on stderr and exit code 2.

Each command imports its library module when it runs: `captcha --help` stays instant, and
`captcha solve model.onnx` never loads PyTorch (an optional heavy dependency on that path).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, NoReturn

import click

from . import __version__
from .charset import DEFAULT_ALPHABET, Charset, spell_out
from .config import (
    BACKENDS,
    DEFAULT_CHECKPOINT,
    DEFAULT_DATA,
    DEFAULT_MAX_PIXELS,
    DEVICES,
    FREEZE_CHOICES,
    FREEZE_LEVELS,
    GENERALIZE_SETS,
    INT8_MOST_LOST,
    METHOD_CHOICES,
    ONE_FIT_VALIDATION,
    ONNX_RUNTIME_ENV,
    OPTIMIZERS,
    PRECISIONS,
    PRETRAIN_SOURCES,
    PRETRAINED_HELP,
    RECHECK_BELOW,
    RECHECK_SHIFT,
    RECHECKS,
    SCHEDULES,
    SECOND,
    SOLVE_BATCH_SIZE,
    SOLVE_WORKERS,
    SPLIT_CHOICES,
    TRAIN_BATCH,
    VAL_FRACTION,
    PretrainConfig,
    ServeConfig,
    SynthConfig,
    TrainConfig,
)
from .errors import CaptchaError, ConfigError


class _Command(click.Command):
    """A command whose --help shows every default, and which names --data for a folder given without it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["context_settings"] = {"show_default": True, **(kwargs.get("context_settings") or {})}
        super().__init__(*args, **kwargs)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # `captcha train site` is the first thing many users type: name --data rather than only refuse `site`
        allowed, ctx.allow_extra_args = ctx.allow_extra_args, True
        rest = super().parse_args(ctx, args)
        ctx.allow_extra_args = allowed
        if rest and not allowed and not ctx.resilient_parsing:
            data = next((p.name for p in self.params if "--data" in p.opts), None)
            if data and len(rest) == 1 and ctx.get_parameter_source(data) is not click.core.ParameterSource.COMMANDLINE:
                ctx.fail(f"unexpected argument {rest[0]}: name the dataset folder with --data "
                         f"(`{ctx.command_path} --data {rest[0]}`)")
            ctx.fail(f"unexpected argument{'s' if len(rest) > 1 else ''} {' '.join(rest)}")
        return rest


class _Group(click.Group):
    """Every user mistake ends as one line on stderr and exit code 2, never a traceback.

    Mistakes are the project's own errors, click's usage errors (bad option values, missing
    arguments) and files the system refuses (permissions, a full disk).
    """

    group_class = type  # subgroups (data, bench, cache) behave the same
    command_class = _Command

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


@contextmanager
def resumable(out: str | Path, resume: bool, *more: str | Path) -> Iterator[None]:
    """Ctrl-C in a long run ends as one line saying whether ``--resume`` can go on from ``<out>.last.pt`` (or
    the first of ``more`` models' that this run wrote: a run of several rounds), and exit code 130."""
    from .nn.checkpoint import last_file

    files = [last_file(path) for path in (out, *more)]
    # the files as they stood, not the clock: a file's time stamp can trail time.time() by a few milliseconds
    before = [_stamp(path) for path in files]
    try:
        yield
    except KeyboardInterrupt:
        written = [path for path, was in zip(files, before) if path.is_file() and (resume or _stamp(path) != was)]
        last = written[0] if written else files[0]
        if written:
            click.echo(f"interrupted: {last} holds the run as it was last saved; the same command with --resume "
                       "goes on from there", err=True)
        else:
            click.echo("interrupted before the run saved anything to resume from: run the command again", err=True)
        sys.exit(130)


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """A file's (inode, size, modification time in ns), or None where there is none."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on stderr and exit 2 (the one form every user mistake takes)."""
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _usage_fail(exc: click.UsageError) -> NoReturn:
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):
        raise exc  # a bare group name prints its help, as click does
    where = exc.ctx.command_path if exc.ctx else "captcha"
    fail(f"{exc.format_message()} (see `{where} --help`)")


def _charset(alphabet: str | None, labelled: str | Path | None = None) -> Charset:
    """``--charset`` as given; else the one the labels in the folder ``labelled`` ask for (as training
    reads them); else 0-9A-Z."""
    if alphabet:
        return Charset(spell_out(alphabet))
    if labelled is not None:
        from .data.layout import site_charset

        return site_charset(labelled)
    return Charset()


def _pct(v: Any) -> str:
    return "n/a" if v is None or v != v else f"{100 * v:.2f}%"


def _emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


POSITIVE = click.IntRange(min=1)
COUNT = click.IntRange(min=0)
POSITIVE_FLOAT = click.FloatRange(min=0, min_open=True)
FRACTION = click.FloatRange(0, 1, min_open=True, max_open=True)
LENGTH = click.IntRange(1, 32)
SIDE = click.IntRange(8, 1024)


class _Workers(click.ParamType):
    """A count of processes, or auto."""

    name = "N|auto"

    def convert(self, value: Any, param: Any, ctx: Any) -> int | str:
        if value == "auto" or isinstance(value, int):
            return value
        if str(value).isdigit():
            return int(value)
        self.fail(f"{value!r}: expected a count of processes (0: one background thread) or auto", param, ctx)


WORKERS = _Workers()

# Options shared by several commands: one definition each, so they cannot drift apart.
charset_option = click.option("--charset", "alphabet", default=None, metavar="CHARS",
                              help="Alphabet of the classes, ranges spelled out (0-9A-F) [default: what the labels "
                                   f"use, 0-9 and their letters in their case; {DEFAULT_ALPHABET} for synthesis; an "
                                   "alphabet without lower case folds labels and answers to upper case].")
checkpoint_option = click.option("--checkpoint", type=click.Path(), default=DEFAULT_CHECKPOINT, show_default=True,
                                 help="A trained recognizer, or an exported .onnx file.")
solving_checkpoint_option = click.option(
    "--checkpoint", type=click.Path(), default=None,
    help=f"A trained recognizer, or an exported .onnx file [default: {DEFAULT_CHECKPOINT} when it exists, else the "
         "general reader shipped in the package, which reads 4-6 character captchas over 0-9A-Z with no training].")
json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
max_pixels_option = click.option("--max-pixels", type=POSITIVE, default=DEFAULT_MAX_PIXELS, show_default=True,
                                 help="Refuse images larger than this (checked from the header, before decoding).")
backend_option = click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
                              help="What runs the network: onnx (the checkpoint compiled to ONNX once and cached, run "
                                   "by OpenVINO, else ONNX Runtime), torch, or auto (onnx on the CPU when installed).")
precision_option = click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
                                help="Arithmetic of a checkpoint compiled to ONNX: auto is int8 when, at training, "
                                     "it read the same captchas as fp32 not clearly worse and the held-out ones at "
                                     f"most {100 * INT8_MOST_LOST:.0f} points below (the check is stored in the "
                                     "checkpoint), else fp32.")
reject_option = click.option("--reject-below", type=click.FloatRange(0, 1), default=0.0, show_default=True,
                             help="Give no answer when the reading's confidence (calibrated on held-out training "
                                  "data) is below this; 0 answers everything.")
allow_option = click.option("--allow", default="", metavar="CHARS", show_default=False,
                            help="Read only these characters, ranges spelled out (e.g. 0-9 for a digits-only site "
                                 "read by a model that knows letters too) [default: every character the model knows].")
length_option = click.option("--length", type=click.IntRange(min=0), default=0, show_default=True,
                             help="Read exactly this many characters (a CTC model, such as the general reader, "
                                  "on a site whose captchas all have this many; read wider where its input is too "
                                  "narrow for them, as the reader's is for 6); 0: the length the model learned.")
recheck_option = click.option("--recheck", type=click.Choice(RECHECKS), default="auto", show_default=True,
                              help=f"Read again moved {RECHECK_SHIFT} pixels left and, where that reads otherwise, "
                                   f"right (a CTC reading held to a length: also up and down, the five views' "
                                   f"probabilities averaged; else the three views vote), by both networks where the "
                                   f"model has a second (a refit's first fit): auto, readings less confident than "
                                   f"{RECHECK_BELOW}; all; off (fastest).")
batch_size_option = click.option("--batch-size", type=POSITIVE, default=SOLVE_BATCH_SIZE, show_default=True,
                                 help="Images per network call.")


def device_option(what: str):
    return click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
                        help=f"Where {what} runs: auto (CUDA when available), cpu or cuda.")


def reading_options(command):
    """The options of every command that reads captchas for a caller (solve, solve-batch, serve): what runs
    the network and how, and what a reading may be."""
    for option in reversed((backend_option, precision_option, device_option("the network"), reject_option,
                            allow_option, length_option, recheck_option)):
        command = option(command)
    return command


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="captcha")
@click.option("-v", "--verbose", is_flag=True, help="Log more detail (the library's own messages only).")
def main(verbose: bool) -> None:
    """Learn to read text captchas with transfer learning (ResNet-18), and read them fast on a CPU.

    Typical run: `captcha data synth`, `captcha train`, `captcha eval --val`, `captcha solve IMG`.
    """
    logger = logging.getLogger("captcha")  # ours only: other libraries' debug lines stay quiet
    handler = next((h for h in logger.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    handler.warned.clear()  # each command says each warning once, even in a process that runs several
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (a test runner may swap it between commands); a
    progress record (``extra={"progress": True}``) only where that is a terminal, as the progress bars:
    a script reading stderr sees its errors alone. A warning already written is not written again: training
    decodes a site's images once per method it probes, and an unreadable one is said once."""

    def __init__(self) -> None:
        super().__init__()
        self.warned: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "progress", False) and not sys.stderr.isatty():
            return
        if record.levelno >= logging.WARNING:
            text = record.getMessage()
            if text in self.warned:
                return
            self.warned.add(text)
        super().emit(record)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


@main.group()
def data() -> None:
    """Make, check and split datasets."""


@data.command("synth")
@click.option("--out-dir", type=click.Path(file_okay=False), default=DEFAULT_DATA, help="Dataset folder to write.")
@click.option("--seed", default=SynthConfig.seed, help="Same seed, byte-identical files.")
@click.option("--train-per-class", type=POSITIVE, default=SynthConfig.train_per_class, help="Training images per character.")
@click.option("--val-per-class", type=COUNT, default=SynthConfig.val_per_class, help="Validation images per character.")
@click.option("--captchas", type=COUNT, default=SynthConfig.captchas, help="Validation captchas (val characters side by side).")
@click.option("--train-captchas", type=COUNT, default=SynthConfig.train_captchas, help="Training captchas, made from training characters.")
@click.option("--length", type=LENGTH, default=SynthConfig.length, help="Characters per captcha.")
@charset_option
def data_synth(out_dir, seed, train_per_class, val_per_class, captchas, train_captchas, length, alphabet) -> None:
    """Write a synthetic course-sized dataset (fonts from matplotlib/Pillow, fully offline)."""
    from .data.synth import synth_dataset

    counts = synth_dataset(out_dir, SynthConfig(seed=seed, train_per_class=train_per_class, val_per_class=val_per_class,
                                                captchas=captchas, train_captchas=train_captchas, length=length,
                                                charset=_charset(alphabet)))
    click.echo(f"wrote {out_dir}: " + ", ".join(f"{n} {k}" for k, n in counts.items()))


@data.command("check")
@click.option("--data", "data_dir", type=click.Path(), default=DEFAULT_DATA, help="Dataset folder.")
@click.option("--length", type=LENGTH, default=None, help="Expected captcha length [default: the most common one].")
@json_option
@charset_option
def data_check(data_dir, length, as_json, alphabet) -> None:
    """Count a dataset and list every problem; exit 0 only when it is usable (1 when it is not)."""
    from .data.layout import Problem, check_dataset
    from .training.diagnose import dataset_against_reader

    report = check_dataset(data_dir, _charset(alphabet) if alphabet else None, length)
    mismatch = dataset_against_reader(data_dir, Charset(report.alphabet)) if report.captchas else None
    if mismatch:
        report.problems.append(Problem(report.root, mismatch))
    if as_json:
        _emit_json(report.to_dict())
    else:
        click.echo(f"{report.root} ({report.layout} layout, {len(report.alphabet)} characters: {report.alphabet})")
        for split, classes in report.chars.items():
            counts = " ".join(f"{c}:{n}" for c, n in classes.items())
            click.echo(f"  chars/{split}: {sum(classes.values())} images in {sum(1 for n in classes.values() if n)} classes  [{counts}]")
        for split, n in report.captchas.items():
            lengths = ", ".join(f"{n_}x length {k}" for k, n_ in sorted(report.lengths.get(split, {}).items()))
            source = f"; labels from {report.labels_from[split]}" if split in report.labels_from else ""
            click.echo(f"  captchas/{split}: {n} labelled captchas ({lengths or 'none'}{source})")
        for blocking, what in ((True, "problem(s)"), (False, "note(s), which leave it usable")):
            said = [p for p in report.problems if p.blocking == blocking]
            if said:
                click.echo(f"{len(said)} {what}:")
                for p in said:
                    click.echo(f"  - {p}")
        click.echo("usable" if report.usable else "NOT usable")
    sys.exit(0 if report.usable else 1)


@data.command("split")
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False), required=True,
              help="A flat folder of labelled captchas.")
@click.option("--out-dir", type=click.Path(file_okay=False), required=True, help="Dataset to write (captchas/train, captchas/val).")
@click.option("--val-fraction", type=FRACTION, default=VAL_FRACTION, help="Share of captchas held out for validation.")
@click.option("--seed", default=TrainConfig.seed, help="Seed of the random split (as `captcha train --seed`).")
@click.option("--ordered", is_flag=True, help="Hold out the last captchas in file-name order instead of a random share.")
@click.option("--link", is_flag=True, help="Symlink instead of copying the images.")
@click.option("--force", is_flag=True, help="Clear a non-empty --out-dir first (it is refused otherwise).")
@charset_option
def data_split(data_dir, out_dir, val_fraction, seed, ordered, link, force, alphabet) -> None:
    """Split a flat folder of labelled captchas into captchas/train and captchas/val."""
    from .data.layout import (
        left_out_note,
        ordered_holdout,
        read_captcha_labels,
        split_captcha_folder,
    )
    from .data.splits import flat_split

    cs = _charset(alphabet, data_dir)
    problems: list = []
    names = [s.path.name for s in read_captcha_labels(data_dir, cs, problems=problems)]
    held = ordered_holdout(names, val_fraction) if ordered else flat_split(names, val_fraction, seed)
    counts = split_captcha_folder(data_dir, out_dir, held, cs, link=link, force=force)
    click.echo(f"wrote {out_dir}: {counts['train']} training and {counts['val']} validation captchas"
               + (f"; left out: {left_out_note(problems, data_dir)}" if problems else ""))


def _sizes(text: str | None) -> tuple[int, ...] | None:
    """``--sizes 32,48,64`` -> (32, 48, 64); each from 16 to 256 pixels."""
    if text is None:
        return None
    try:
        sizes = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        sizes = ()
    if not sizes or not all(16 <= s <= 256 for s in sizes):
        raise ConfigError(f"--sizes {text!r}: give a comma list of whole pixel sizes from 16 to 256, e.g. 32,48,64")
    return sizes


@main.command()
@click.option("--source", type=click.Choice(PRETRAIN_SOURCES), default=PretrainConfig.source,
              help="Task A: synthetic glyphs (similar to captchas) or CIFAR-10 (dissimilar) for a backbone; "
                   "synthetic whole captchas (captchas) for the general CTC reader.")
@click.option("--data", "data_path", type=click.Path(), default=None, help="CIFAR-10 folder, tar.gz or cifar-10-batches-py.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Output file [default: checkpoints/<source>-resnet18.pt; captchas: checkpoints/reader-ctc.pt].")
@click.option("--steps", type=POSITIVE, default=None, help="Optimiser steps [default: 1300; captchas: 3000].")
@click.option("--batch-size", type=POSITIVE, default=None, help="Images per step [default: 128; captchas: 64].")
@click.option("--lr", type=POSITIVE_FLOAT, default=None,
              help="Peak learning rate [default: 0.1 SGD; captchas: 1e-3 AdamW], one-cycle.")
@click.option("--seed", default=PretrainConfig.seed)
@click.option("--workers", type=COUNT, default=PretrainConfig.workers, help="Processes rendering glyphs or captchas.")
@click.option("--eval-every", type=POSITIVE, default=None,
              help="Steps between held-out evaluations (each also writes <out>.last.pt for --resume) "
                   "[default: 200; captchas: 250].")
@click.option("--sizes", default=None, help="Comma list of square input sizes, one drawn per step "
              "[default: 32,48,64 for glyphs, 32 for cifar10].")
@click.option("--pretrained", "start", default=None,
              help="captchas only: where the reader starts [default: glyphs, the shipped backbone; reader: the shipped "
                   "reader, head and all, for a further cycle on today's synthesis; a PATH to a reader this command wrote: "
                   "that one, head and all; another PATH: a ResNet-18 trunk].")
@click.option("--minutes", type=POSITIVE_FLOAT, default=None,
              help="captchas only: train for this long instead of --steps (the rate's schedule runs on the clock).")
@click.option("--device", type=click.Choice(DEVICES), default=None, help="captchas only: where to train [default: auto].")
@click.option("--reuse", type=POSITIVE, default=None,
              help="captchas only: steps per rendered batch, the extra ones drawn from a pool of recent batches on "
                   "the device; keeps a GPU busy while the workers render [default: 1].")
@click.option("--watch", multiple=True, type=click.Path(file_okay=False),
              help="captchas only: a folder of labelled real captchas read with no training at each evaluation (its "
                   "last quarter by file name; repeatable), beside the held-out synthesis; a step chosen by them makes "
                   "them tuned-on.")
@click.option("--input-size", "size", nargs=2, type=SIDE, default=None, metavar="H W",
              help="captchas only: the reader's input, HEIGHT WIDTH [default: 48 160].")
@click.option("--resume", is_flag=True, help="Continue a killed run from <out>.last.pt.")
@click.option("--trust-pickle", is_flag=True,
              help="Read CIFAR-10's pickled batches (cifar-10-batches-py); unpickling runs code, so only files you trust.")
@json_option
def pretrain(source, data_path, out, steps, batch_size, lr, seed, workers, eval_every, sizes, start, minutes, device,
             reuse, watch, size, resume, trust_pickle, as_json) -> None:
    """Pretrain offline: a ResNet-18 backbone (for `captcha train --pretrained PATH`) or the general reader."""
    given = {k: v for k, v in {"steps": steps, "batch_size": batch_size, "lr": lr, "eval_every": eval_every}.items()
             if v is not None}
    command = " ".join(["captcha"] + sys.argv[1:])
    progress = sys.stderr.isatty() and not as_json
    reader_only = {"--pretrained": ("pretrained", start), "--minutes": ("minutes", minutes), "--device": ("device", device),
                   "--reuse": ("reuse", reuse), "--watch": ("watch", tuple(watch) or None), "--input-size": ("size", size)}
    if source != "captchas" and any(v is not None for _, v in reader_only.values()):
        given_flags = ", ".join(flag for flag, (_, v) in reader_only.items() if v is not None)
        raise click.UsageError(f"{given_flags}: only for --source captchas (the general reader)")
    if source == "captchas":
        from .training.reader import ReaderConfig, pretrain_reader

        rcfg = ReaderConfig(**given, seed=seed, workers=workers, resume=resume, command=command,
                            **({"out": out} if out else {}), **{field: v for field, v in reader_only.values() if v is not None})
        with resumable(rcfg.out, resume):
            rinfo = pretrain_reader(rcfg, progress=progress)
        if as_json:
            _emit_json({"reader": rcfg.out, **rinfo})
            return
        last = rinfo["history"][-1]
        click.echo(f"wrote {rcfg.out} in {rinfo['seconds'] / 60:.1f} min; held-out synthetic captchas: "
                   f"{100 * last['string_acc']:.2f}% full-string, {100 * last['captcha_char_acc']:.2f}% characters")
        return
    from .training.pretrain import pretrain as run

    cfg = PretrainConfig(source=source, data=data_path, out=out, **given, seed=seed, workers=workers, resume=resume,
                         sizes=_sizes(sizes), command=command, trust_pickle=trust_pickle)
    with resumable(cfg.out_path, resume):
        info = run(cfg, progress=progress)
    if as_json:
        _emit_json({"backbone": cfg.out_path, **info})
        return
    held = ", ".join(f"{k} {100 * v:.2f}%" for k, v in info["heldout"].items())
    click.echo(f"wrote {cfg.out_path} in {info['seconds'] / 60:.1f} min; held-out {held}")


@main.command()
@click.option("--data", "data_dir", type=click.Path(), default=None,
              help=f"Course-layout dataset, or a flat folder of labelled captchas [default: ./{DEFAULT_DATA}, made by "
                   "`captcha data synth` when absent; a --data path that does not exist is an error].")
@click.option("--out", type=click.Path(dir_okay=False), default=TrainConfig.out,
              help="Best checkpoint; <out>.last.pt (for --resume) and <out>.curve.png are written beside it.")
@click.option("--pretrained", default=TrainConfig.pretrained, help=PRETRAINED_HELP + ".")
@click.option("--freeze", type=click.Choice(FREEZE_CHOICES), default=TrainConfig.freeze,
              help="Frozen stages: all (only the head trains), layer1..layer4 (stem through that stage), none, or "
                   "auto: short probes on a held-out slice of the training data choose (all, layer2 or none).")
@click.option("--epochs", type=POSITIVE, default=None,
              help="[default: as many as --budget allows, at the chosen recipe's measured speed, "
                   "3 to 40 (more on a small set, up to 150 steps); every epoch trains, and the one the held-out "
                   "slice reads best is kept].")
@click.option("--budget", type=POSITIVE_FLOAT, default=TrainConfig.budget,
              help="Seconds for the whole run (probes and training) when --epochs is auto.")
@click.option("--batch-size", type=POSITIVE, default=TrainConfig.batch_size,
              help=f"Images per step [default: {TRAIN_BATCH['ctc']} whole captchas (ctc), {TRAIN_BATCH['classify']} "
                   "character crops (classify)].")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=TrainConfig.optimizer,
              help="adamw (tuned default) or the course's SGD with momentum 0.9.")
@click.option("--lr", type=POSITIVE_FLOAT, default=None,
              help="Peak learning rate [default: 2e-3 AdamW, 0.05 SGD; from the general reader 5e-4 to 4e-3, "
                   "higher the less of the site it reads before training].")
@click.option("--schedule", type=click.Choice(SCHEDULES), default=TrainConfig.schedule)
@click.option("--seed", default=TrainConfig.seed)
@click.option("--no-augment", is_flag=True, help="Switch augmentation off.")
@click.option("--aug-passes", type=POSITIVE, default=None, help="Distinct augmentation passes cycled over the epochs [default: one per epoch].")
@click.option("--no-cache", is_flag=True, help="With frozen stages, run them every batch instead of caching their output.")
@click.option("--bf16/--no-bf16", default=None,
              help="bfloat16 mixed precision while training on the CPU, and for the frozen stages' cached output "
                   "[default: where the CPU has native bf16, AVX-512 BF16 or AMX; a GPU always trains in bf16].")
@click.option("--length", type=LENGTH, default=None, help="Characters per captcha [default: from the labels].")
@click.option("--split", "split_method", type=click.Choice(SPLIT_CHOICES), default=TrainConfig.split,
              help="How captchas are cut into characters; auto: exact cells when chars/ is given, else the "
                   "splitter a quick linear probe on the pretrained features reads best.")
@click.option("--method", type=click.Choice(METHOD_CHOICES), default=TrainConfig.method,
              help="classify: split into characters, classify each (the course). ctc: read the whole captcha "
                   "(segmentation-free, for touching or overlapping glyphs), starting from the general reader. "
                   "auto: with only captchas to learn from, short probes of both on a held-out slice of them decide.")
@click.option("--input-size", nargs=2, type=SIDE, default=None, metavar="H W",
              help="Network input size [default: auto: 32x32 or 64x64 crops, whichever the probes read best; "
                   "ctc: whole captchas near their native scale].")
@click.option("--val-fraction", type=FRACTION, default=None,
              help=f"Held-out share of a flat captcha folder [default: {VAL_FRACTION:g}; a run that fits once (no "
                   f"refit) trains on all but {ONE_FIT_VALIDATION} of them].")
@click.option("--unlabelled", type=click.Path(), default=None,
              help="A folder of the site's captchas with no labels: self-training reads them with the trained model "
                   "and trains again in rounds (each gets --budget) on the labelled captchas plus the readings the last "
                   "model is surest of, 50, then three times as many, up to all (the held-out slice of the labelled "
                   "ones stops the rounds where it reads one clearly worse). Without --data, the site is learned from "
                   "these alone: the general reader's sure readings train a first model, which reads them again for "
                   "a second (each round gets --budget); each round's readings are written as a labelled folder "
                   "beside --out.")
@click.option("--synthetic", type=COUNT, default=TrainConfig.synthetic, show_default=False,
              help="Add this many synthetic captchas drawn in a style fitted to the training ones (size, colours, "
                   "glyph height, characters, the nearest pretraining fonts) [default: none].")
@click.option("--refit/--no-refit", default=None,
              help="After choosing the epochs on the held-out slice, train again on every labelled captcha (the "
                   "slice, and a flat folder's validation share) for that many; from a flat folder the first "
                   "fit's figures stay as the estimate [default: yes; with automatic epochs the budget keeps room "
                   "for it, and it runs when the time left holds it].")
@click.option("--resume", is_flag=True,
              help="Continue the interrupted run from <out>.last.pt (a finished run trains nothing again unless "
                   "--epochs asks for more).")
@device_option("training")
@json_option
@charset_option
def train(data_dir, out, pretrained, freeze, epochs, budget, batch_size, optimizer, lr, schedule, seed, no_augment,
          aug_passes, no_cache, bf16, length, split_method, method, input_size, val_fraction, unlabelled, synthetic, refit,
          resume, device, as_json, alphabet) -> None:
    """Learn to read a site's captchas (or the course dataset) with a pretrained ResNet-18 (transfer learning).

    The method (split-and-classify, as the course does, or whole-captcha CTC from the shipped general
    reader), the freeze level, the input size and the epochs are chosen by short probes on a held-out
    slice of the training captchas unless given; the table and the choice are printed and stored in the
    checkpoint.
    """
    from .config import AugmentConfig
    from .inference.load import compile_for_solving
    from .training.train import train as run

    cfg = TrainConfig(data=data_dir or DEFAULT_DATA, synth_if_missing=data_dir is None, out=out,
                      charset=_charset(alphabet).alphabet if alphabet else None, pretrained=pretrained, freeze=freeze,
                      epochs=epochs, budget=budget,
                      batch_size=batch_size, optimizer=optimizer, lr=lr, schedule=schedule, seed=seed,
                      augment=AugmentConfig(enabled=not no_augment), aug_passes=aug_passes,
                      cache_features=not no_cache, bf16=bf16, length=length, split=split_method, val_fraction=val_fraction,
                      resume=resume, device=device, method=method, size=tuple(input_size) if input_size else None,
                      unlabelled=unlabelled, synthetic=synthetic, refit=refit)
    say = (lambda m: click.echo(m, err=True)) if as_json else click.echo
    rounds: list[Path] = []
    if unlabelled and data_dir is None:  # no labels at all: learned from the site's captchas alone
        from .training.nolabels import UNLABELLED_ROUNDS, round_checkpoint
        from .training.nolabels import train_unlabelled as run
        # the last one is --out
        rounds = [round_checkpoint(out, k, UNLABELLED_ROUNDS) for k in range(UNLABELLED_ROUNDS - 1, 0, -1)]
    with resumable(out, resume, *rounds):
        result = run(cfg, say=say, progress=sys.stderr.isatty() and not as_json)
    if result.get("rank", 0) != 0:
        return  # under torchrun, rank 0 reports
    # compiled now, where the user is waiting anyway, rather than by the first `captcha solve` (~10 s)
    started = time.perf_counter()
    compiled = compile_for_solving(result["checkpoint"])
    result["compiled"] = None if compiled is None else {
        "onnx": str(compiled.path), "precision": compiled.metadata().get("precision"),
        "seconds": round(time.perf_counter() - started, 1)}
    if as_json:
        _emit_json(result)
        return
    best = result["best"]
    why = "the best on the held-out slice of the training data" if result.get("held_out_acc") is not None else \
        "the last: nothing was held out to choose by"
    kept = "the general reader, untrained (by the reader check of the training captchas)" \
        if result.get("kept_reader") else f"epoch {best.get('epoch')} ({why})"
    cut = result.get("shortened")
    click.echo(f"kept {kept}: val char acc "
               f"{_pct(best.get('char_acc', best.get('captcha_char_acc')))}, full-string acc {_pct(best.get('string_acc'))}; "
               f"{result['train_seconds']:.1f}s of training"
               + (f" ({cut['epochs']} of the {cut['planned']} epochs planned: the rest did not fit in --budget)"
                  if cut else ""))
    refit = result.get("refit")
    if refit:
        cut = refit.get("shortened")
        click.echo(f"then trained again on every labelled captcha for {refit['epochs']} epochs"
                   + (f" (of the {cut['planned']} planned: the rest did not fit in --budget)" if cut else "") + ": " +
                   ("the figures above are the estimate (nothing is left out to measure the refit on)"
                    if refit["validation_trained_on"] else "the figures above are the refit's, on validation data "
                    "it never saw"))
    from .training.selftrain import readings_caveat
    caveat = readings_caveat(result)
    if caveat:
        click.echo(caveat)
    click.echo(f"wrote {result['checkpoint']} and {result['curve']}")
    if result["compiled"]:
        click.echo(f"compiled it to ONNX ({result['compiled']['precision']}) in "
                   f"{result['compiled']['seconds']:.1f}s, cached: solving with it starts at once")


@main.command("eval")
@click.option("--val", is_flag=True, help="Evaluate on the checkpoint's own validation data (the split it recorded).")
@click.option("--data", "data_dir", type=click.Path(), default=None,
              help="Without --val: evaluate every labelled captcha of this folder (chars/val and captchas/val of a "
                   "course-layout dataset). With --val: where the dataset the checkpoint was trained on is now.")
@click.option("--checkpoint", type=click.Path(), default=None,
              help=f"A trained recognizer [default: {DEFAULT_CHECKPOINT}; with --data and no model trained yet, the "
                   "general reader shipped in the package, as `captcha solve` reads with].")
@click.option("--out-dir", type=click.Path(file_okay=False), default=None,
              help="Folder for confusion.png (and errors.png) [default: <checkpoint>-eval beside the checkpoint; "
                   "for a model shipped in the package, in the current folder].")
@click.option("--show-errors", type=COUNT, default=0, help="Write a sheet of the N most confidently misread captchas.")
@allow_option
@length_option
@backend_option
@device_option("the network")
@json_option
def evaluate(val, data_dir, checkpoint, out_dir, show_errors, allow, length, backend, device, as_json) -> None:
    """Character, full-string and per-position accuracy, confusions, confusion-matrix PNG."""
    from .eval.evaluate import evaluate_checkpoint
    from .inference.load import general_reader_path, solving_checkpoint

    if not val and not data_dir:
        fail("nothing to evaluate: give --val (the checkpoint's own validation data) or --data DIR")
    checkpoint = checkpoint or (DEFAULT_CHECKPOINT if val else solving_checkpoint(None))
    if str(checkpoint).endswith(".onnx"):
        fail(f"{checkpoint}: evaluation needs the checkpoint (it records its data); pass the .pt file")
    shipped = Path(checkpoint).resolve().parent == general_reader_path().resolve().parent
    # the package's own folder is no place for a user's plots (and may not be writable)
    out_dir = out_dir or str((Path.cwd() if shipped else Path(checkpoint).parent) / (Path(checkpoint).stem + "-eval"))
    rep = evaluate_checkpoint(checkpoint, data_dir if val else None, out_dir, show_errors,
                              dataset=None if val else data_dir, backend=backend, device=device, allow=allow,
                              length=length)
    if as_json:
        _emit_json(rep.to_dict())
        return
    click.echo(f"backend: {rep.backend}")
    if rep.chars:
        click.echo(f"character accuracy (chars/val): {_pct(rep.chars['char_acc'])} of {rep.chars['chars']}")
    caps = rep.captchas
    if caps.get("captchas"):
        click.echo(f"full-string accuracy: {_pct(caps['string_acc'])} of {caps['captchas']} captchas; "
                   f"characters {_pct(caps['captcha_char_acc'])}")
        click.echo("per position: " + ", ".join(f"{i + 1}: {_pct(v)}" for i, v in enumerate(caps["position_acc"])))
        if caps.get("left_out"):
            click.echo(f"warning: left out of {data_dir} ({caps['left_out']} not measured): {caps['left_out_note']}",
                       err=True)
        if caps.get("trained_on"):
            click.echo(f"warning: {caps['trained_on']} of the images in {data_dir} are files of the model's training "
                       "data (all of it but what it held out): the figures overstate what it reads of new captchas "
                       "(`captcha eval --val` reads what it held out, where it held some)", err=True)
        rej = caps.get("rejection_at_95") or {}
        if rej:
            click.echo(f"confidence: ECE {_pct(caps['reliability']['ece'])}; refusing the least confident 5% "
                       f"(--reject-below {rej['threshold']:.3f}) refuses {_pct(rej['wrong_rejected'])} of the wrong "
                       f"readings and leaves {_pct(rej['kept_accuracy'])} right"
                       + (" (its confidences were calibrated on these captchas)" if caps.get("calibrated_on_these") else ""))
    if rep.confusions:
        click.echo("most frequent confusions (true->read x count): "
                   + ", ".join(f"{t}->{p} x{n}" for t, p, n in rep.confusions))
    for path in rep.files.values():
        click.echo(f"wrote {path}")


@main.command()
@click.argument("images", nargs=-1, required=True)
@solving_checkpoint_option
@json_option
@max_pixels_option
@reading_options
def solve(images, checkpoint, as_json, max_pixels, backend, precision, device, reject_below, allow, length,
          recheck) -> None:
    """Read captcha images, folders of them or globs (`-` reads image bytes from stdin); one line per image.

    Many images are read in batches, as `solve-batch` reads them (a model told no length learns the
    site's from them); a folder gives its images, sorted, as `solve-batch` takes them. An image that
    cannot be read gets one error line and the others are still read; exit 2 when not one could be read
    (as `solve-batch`), 1 when some could not. A reading that may be wrong (an image far from the training
    captchas' size, a CTC reading of another length) carries a warning: on stderr, and in the JSON's
    "warnings". With --reject-below, a reading less confident than that is no answer: an empty line (JSON:
    "text": null, "rejected").
    """
    from .inference.batch import expand_inputs
    from .inference.load import load_solver, solving_checkpoint

    solver = load_solver(solving_checkpoint(checkpoint), backend=backend, device=device, max_pixels=max_pixels,
                         reject_below=reject_below, precision=precision).allow(allow).expect_length(length)
    solver.rechecking(recheck)
    failed = 0

    def error(name: str, message: str) -> None:
        nonlocal failed
        failed += 1
        click.echo(json.dumps({"file": name, "error": message}) if as_json else f"{name}\terror: {message}",
                   err=not as_json)

    names: list[str] = []
    for arg in images:
        found = [arg] if arg == "-" else list(expand_inputs([arg], lists=False))
        if not found:  # a folder with no images in it, or a glob that matched nothing
            error(arg, f"{arg}: no images there" if Path(arg).is_dir() else f"{arg}: matches no file")
        names += found
    sources = [("<stdin>", sys.stdin.buffer.read()) if name == "-" else (name, name) for name in names]
    read = 0
    for name, res in zip(names, solver.solve_batch(sources)):
        if not res.ok:
            error(name, res.error)
            continue
        read += 1
        sol = res.solution
        for w in sol.warnings:
            click.echo(f"warning: {name}: {w}", err=True)
        if sol.rejected:
            click.echo(f"rejected: {name}: confidence {sol.confidence:.3f} is below --reject-below {reject_below}",
                       err=True)
        if as_json:
            click.echo(json.dumps({"file": name, "text": sol.answer, "confidence": round(sol.confidence, 4),
                                   "confidences": [round(c, 4) for c in sol.confidences], "rejected": sol.rejected,
                                   "ms": round(1000 * sol.seconds, 2), "warnings": sol.warnings}))
        else:
            click.echo(f"{name}\t{sol.answer or ''}" if len(images) > 1 or names != list(images) else sol.answer or "")
    sys.exit(2 if not read else 1 if failed else 0)


@main.command("solve-batch")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="CSV: filename,text,confidence,error.")
@solving_checkpoint_option
@batch_size_option
@click.option("--workers", type=WORKERS, default=SOLVE_WORKERS, show_default=True,
              help="Processes decoding images: 0 for one background thread; auto starts processes once the batch "
                   "proves bound by decoding (SVG captchas are drawn in Python) with enough left to repay their start.")
@click.option("--resume", is_flag=True, help="Skip inputs already read into --out and append the rest (files whose "
                                              "rows there are errors are read again, their old rows dropped).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out (without it, or --resume, it is refused).")
@click.option("--shard", default=None, metavar="I/N", help="Take every N-th input from the I-th (0-based), for N machines.")
@max_pixels_option
@reading_options
@json_option
def solve_batch(inputs, out, checkpoint, batch_size, workers, resume, overwrite, shard, max_pixels, backend,
                precision, device, reject_below, allow, length, recheck, as_json) -> None:
    """Solve directories, globs or lists of paths (a .txt file) into one CSV; bad files get error rows.

    Shards' CSVs merge with `captcha merge-results`. Exit 2 when not one input could be read.
    """
    from .inference.batch import parse_shard, run_batch
    from .inference.load import load_solver, solving_checkpoint

    spec = parse_shard(shard)
    solver = load_solver(solving_checkpoint(checkpoint), backend=backend, device=device, max_pixels=max_pixels,
                         reject_below=reject_below, precision=precision).allow(allow).expect_length(length)
    solver.rechecking(recheck)
    stats = run_batch(inputs, out, solver, batch_size=batch_size, workers=workers, resume=resume,
                      progress=sys.stderr.isatty() and not as_json, shard=spec, overwrite=overwrite)
    if as_json:
        _emit_json({"out": out, "backend": solver.backend_name, "runtime": solver.runtime, **stats})
    else:
        rejected = f" ({stats['rejected']} of them rejected: below --reject-below)" if stats["rejected"] else ""
        retried = f", {stats['retried']} read again after earlier errors" if stats["retried"] else ""
        click.echo(f"{stats['solved']} solved{rejected}, {stats['errors']} errors, {stats['skipped']} skipped (already "
                   f"in {out}){retried}; {stats['per_second']:.0f} captchas/s")
    if not stats["solved"] and not stats["skipped"]:
        fail(f"none of the {stats['errors']} inputs could be read (see the error column of {out})" if stats["errors"]
             else f"no images found in {', '.join(inputs)}")


@main.command()
@click.option("--checkpoint", type=click.Path(), default=None, help="A trained recognizer.")
@click.option("--pretrained", default=TrainConfig.pretrained, help="Without --checkpoint: the backbone source.")
@click.option("--input-size", nargs=2, type=SIDE, default=None, metavar="H W", help="[default: the checkpoint's, else 32 32].")
@click.option("--freeze", type=click.Choice(FREEZE_LEVELS), default=None, help="Count trainable/frozen for this level.")
@click.option("--depth", type=POSITIVE, default=3, help="How deep the layer table goes.")
@click.option("--print-model", is_flag=True, help="Also print(model), as the course does.")
@json_option
def summary(checkpoint, pretrained, input_size, freeze, depth, print_model, as_json) -> None:
    """Layer table (output shape, parameters), trainable vs frozen counts, sizes in MB."""
    from .eval.summary import load_for_inspection, print_layers, summarize

    model, info = load_for_inspection(checkpoint, pretrained, freeze)
    size = tuple(input_size) if input_size else tuple(info.get("preprocess", {}).get("size", (32, 32)))
    s = summarize(model, size, depth)
    if as_json:
        _emit_json({k: v for k, v in s.items() if k != "table"})
        return
    if print_model:
        click.echo(print_layers(model))
    click.echo(s["table"])
    click.echo(f"freeze={s['freeze']} (frozen: {', '.join(s['frozen_stages']) or 'nothing'}): "
               f"{s['trainable_params']:,} trainable, {s['frozen_params']:,} frozen of {s['total_params']:,} parameters")


@main.command()
@click.argument("image", type=click.Path())
@click.option("--checkpoint", type=click.Path(), default=DEFAULT_CHECKPOINT, help="A trained recognizer (.pt).")
@click.option("--layers", default="conv1,layer1,layer2,layer3,layer4",
              help="Comma list of Conv2d names or stages (a stage shows its last conv), or all-conv.")
@click.option("--out-dir", type=click.Path(file_okay=False), default="runs/visualize", help="Folder for the PNGs.")
def visualize(image, checkpoint, layers, out_dir) -> None:
    """Feature maps of each chosen conv layer (forward hooks), one PNG grid per layer."""
    from .eval.visualize import visualize as run

    files = run(image, checkpoint, layers, out_dir)
    n = sum(len(v) for v in files.values())
    click.echo(f"wrote {n} PNGs to {out_dir} ({len(files['maps'])} feature-map grids, "
               f"{len(files['crops'])} crops, conv1 filters)")


@main.command("merge-results")
@click.argument("parts", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="The merged CSV.")
def merge_results(parts, out) -> None:
    """Merge the CSVs of `solve-batch --shard` runs into one (one row per file)."""
    from .inference.batch import merge_results as run

    click.echo(f"wrote {out}: {run(parts, out)} rows")


@main.command()
@click.option("--checkpoint", type=click.Path(), default=DEFAULT_CHECKPOINT, help="A trained recognizer (.pt).")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="ONNX file to write.")
@click.option("--int8", is_flag=True, help="Also write <name>.int8.onnx, statically quantised with ONNX Runtime.")
@click.option("--tolerance", type=POSITIVE_FLOAT, default=1e-3, help="Largest allowed ONNX-vs-PyTorch logit difference.")
@json_option
def export(checkpoint, out, int8, tolerance, as_json) -> None:
    """Export a recognizer to ONNX (dynamic batch; a CTC model's width free too) and verify it against PyTorch."""
    from .inference.export import export_onnx

    rep = export_onnx(checkpoint, out, quantize=int8, tolerance=tolerance, with_second=True)
    if as_json:
        _emit_json(rep)
        return
    wide = f"; at twice its width {rep['max_abs_diff_wide']:.2e}" if "max_abs_diff_wide" in rep else ""
    click.echo(f"wrote {rep['onnx']} (max |ONNX - PyTorch| = {rep['max_abs_diff']:.2e}{wide})")
    if rep.get(SECOND):
        click.echo(f"wrote {rep[SECOND]['onnx']}: the first fit, which reads the unsure captchas beside it "
                   f"(max |ONNX - PyTorch| = {rep[SECOND]['max_abs_diff']:.2e}); keep the two files together")
    if int8:
        click.echo(f"wrote {rep['int8']} (top-1 agreement with PyTorch on sample inputs: "
                   f"{100 * rep['int8_top1_agreement']:.1f}%)")
        from .inference.export import int8_verdict

        check = rep["int8_check"]
        click.echo(f"int8 check at training (stored beside it): {int8_verdict(check)}" if check else
                   "no int8 check in this checkpoint (trained before it existed): compare on your own captchas")


@main.command()
@solving_checkpoint_option
@click.option("--host", default=ServeConfig.host, help="Address to bind (loopback by default; no TLS: put a proxy in front).")
@click.option("--port", type=click.IntRange(1, 65535), default=ServeConfig.port)
@click.option("--max-bytes", type=POSITIVE, default=ServeConfig.max_bytes, help="Largest accepted image.")
@click.option("--max-images", type=POSITIVE, default=ServeConfig.max_images, help="Most images in one /solve/batch request.")
@click.option("--batch-size", type=POSITIVE, default=ServeConfig.batch_size, help="Most images solved together.")
@click.option("--batch-window-ms", type=click.FloatRange(min=0), default=ServeConfig.batch_window_ms,
              help="How long to gather concurrent requests.")
@click.option("--max-pixels", type=POSITIVE, default=ServeConfig.max_pixels, show_default=True,
              help="Refuse images larger than this (checked from the header, before decoding).")
@click.option("--api-key", envvar="CAPTCHA_API_KEY", default=None, show_envvar=True,
              help="Require this key (X-API-Key header or Authorization: Bearer) on every request but /health and /ready.")
@click.option("--queue-size", type=POSITIVE, default=ServeConfig.queue_size,
              help="Images waiting to be solved; beyond it requests get 503 with Retry-After.")
@click.option("--request-timeout", type=POSITIVE_FLOAT, default=ServeConfig.request_timeout,
              help="Seconds a request may take before a 503.")
@click.option("--max-connections", type=POSITIVE, default=ServeConfig.max_connections,
              help="Open connections at most; beyond it uvicorn answers 503.")
@reading_options
def serve(checkpoint, host, port, max_bytes, max_images, batch_size, batch_window_ms, max_pixels, api_key, queue_size,
          request_timeout, max_connections, backend, precision, device, reject_below, allow, length, recheck) -> None:
    """HTTP service: POST /solve, POST /solve/batch, GET /health, /ready, /metrics, docs at /docs."""
    from .inference.load import solving_checkpoint
    from .inference.serve import serve as run

    run(solving_checkpoint(checkpoint),
        ServeConfig(host=host, port=port, max_bytes=max_bytes, max_images=max_images, batch_size=batch_size,
                    batch_window_ms=batch_window_ms, max_pixels=max_pixels, reject_below=reject_below, allow=allow,
                    length=length, recheck=recheck, api_key=api_key, queue_size=queue_size,
                    request_timeout=request_timeout,
                    max_connections=max_connections),
        backend=backend, device=device, precision=precision)


@main.command()
@click.argument("folder", type=click.Path())
@click.option("--checkpoint", type=click.Path(), default=None,
              help=f"The model that guesses [default: {DEFAULT_CHECKPOINT} when it exists, else the shipped general reader].")
@click.option("--port", type=click.IntRange(1, 65535), default=8001, show_default=True)
@click.option("--retrain-every", type=COUNT, default=0, show_default=True,
              help="Fine-tune on the labels so far every K answers, in the background (0: never).")
@click.option("--length", type=LENGTH, default=None, help="Characters per captcha [default: from the labels so far].")
@charset_option
def label(folder, checkpoint, port, retrain_every, length, alphabet) -> None:
    """Label a folder of captchas on a local page: the model proposes, you confirm or correct.

    Answers go to FOLDER/labels.csv at once (unreadable ones to FOLDER/unreadable.txt); a restart
    goes on where it stopped. Open http://127.0.0.1:PORT/ in a browser.
    """
    from .data.layout import labels_file
    from .inference.load import solving_checkpoint
    from .label.app import open_session, serve_label

    # labels given already keep their case and characters; an unlabelled folder's file names are no labels
    labelled = folder if labels_file(Path(folder)) else None
    session = open_session(folder, solving_checkpoint(checkpoint), _charset(alphabet, labelled), length, retrain_every)
    todo = len(session.store.todo())
    click.echo(f"{todo} of {len(session.store.images)} captchas to label in {folder}; open http://127.0.0.1:{port}/")
    serve_label(session, port=port)


@main.group()
def cache() -> None:
    """The compiled-model cache (checkpoints exported to ONNX for solving)."""


@cache.command("info")
@json_option
def cache_info(as_json) -> None:
    """Where the cache is, what it holds and how large it is."""
    from .inference.backends import onnx_runtime
    from .inference.load import OnnxCache

    c = OnnxCache()
    entries, blobs, runtime = c.entries(), c.blob_files(), onnx_runtime()
    if as_json:
        _emit_json({"dir": str(c.root), "keep": c.keep, "bytes": c.size(), "entries": [str(p) for p in entries],
                    "openvino_networks": [str(p) for p in blobs], "runtime": runtime})
        return
    click.echo(f"{c.root}: {len(entries)} compiled model(s) and {len(blobs)} network(s) OpenVINO compiled "
               f"for this CPU, {c.size() / 1e6:.1f} MB (the {c.keep} most recently used of each are kept; $CAPTCHA_CACHE "
               f"moves it); run by {runtime} (${ONNX_RUNTIME_ENV} names one)")


@cache.command("clear")
def cache_clear() -> None:
    """Delete every compiled model (they are rebuilt on demand)."""
    from .inference.load import OnnxCache

    c = OnnxCache()
    click.echo(f"removed {len(c.clear())} file(s) from {c.root}")


@main.group()
def bench() -> None:
    """Benchmarks that print their figures (the course's CIFAR-10 warm-up, the transfer table)."""


@bench.command("cifar10")
@click.option("--data", "data_path", type=click.Path(), required=True,
              help="cifar-10-batches-py, an image-folder copy, or cifar10-jpg.tar.gz.")
@click.option("--pretrained", default="auto",
              help="Backbone for the frozen runs: imagenet, glyphs, a PATH, or auto (imagenet if cached, else glyphs).")
@click.option("--subset", type=COUNT, default=5000, help="Training images (class-balanced); 0 for all 50,000.")
@click.option("--test-subset", type=COUNT, default=1000, help="Test images; 0 for all 10,000.")
@click.option("--epochs", type=POSITIVE, default=3)
@click.option("--size", type=SIDE, default=32, help="Input size (the course used 224 on a GPU).")
@click.option("--batch-size", type=POSITIVE, default=64, help="Images per step.")
@click.option("--out-dir", type=click.Path(file_okay=False), default="runs/bench-cifar10", help="Folder for the report.")
@click.option("--trust-pickle", is_flag=True,
              help="Read CIFAR-10's pickled batches (cifar-10-batches-py); unpickling runs code, so only files you trust.")
def bench_cifar10(data_path, pretrained, subset, test_subset, epochs, size, batch_size, out_dir, trust_pickle) -> None:
    """ResNet-18 from scratch vs pretrained-and-frozen on the same CIFAR-10 batches."""
    from .bench.cifar import bench_cifar10 as run
    from .bench.cifar import format_cifar_report
    from .nn.networks import imagenet_weights_path

    if pretrained == "auto":
        pretrained = "imagenet" if imagenet_weights_path().is_file() else "glyphs"
    res = run(data_path, pretrained, subset or None, test_subset or None, epochs, size, batch_size,
              out_dir=out_dir, say=click.echo, trust_pickle=trust_pickle)
    click.echo(format_cifar_report(res))
    click.echo("wrote " + ", ".join(res["files"]))


@bench.command("transfer")
@click.option("--data", "data_path", type=click.Path(exists=True, file_okay=False), default=DEFAULT_DATA,
              help="A captcha dataset (course layout or a flat folder).")
@click.option("--cifar-backbone", type=click.Path(), default="checkpoints/cifar10-resnet18.pt",
              help="Backbone from `captcha pretrain --source cifar10` (its row is skipped when absent).")
@click.option("--epochs", type=POSITIVE, default=6)
@click.option("--small", type=POSITIVE, default=10, help="Images per character for the small-data column (course data).")
@click.option("--small-captchas", type=POSITIVE, default=100,
              help="Training captchas for the small-data column (data with captchas/train and labels.csv).")
@click.option("--out-dir", type=click.Path(file_okay=False), default="runs/bench-transfer", help="Folder for the report.")
def bench_transfer(data_path, cifar_backbone, epochs, small, small_captchas, out_dir) -> None:
    """Starting point x freeze level table of full-string accuracy and training time."""
    from .bench.transfer import bench_transfer as run
    from .bench.transfer import format_transfer

    res = run(data_path, cifar_backbone, epochs, small, out_dir=out_dir, say=click.echo, small_captchas=small_captchas)
    click.echo(format_transfer(res))
    click.echo(f"wrote {out_dir}/transfer.md and transfer.json")


@bench.command("generalize")
@click.option("--sets", default=",".join(GENERALIZE_SETS),
              help=f"Comma list of held-out styles and real cuts ({', '.join(GENERALIZE_SETS)}).")
@click.option("--shared", type=click.Path(file_okay=False), default="../shared/datasets",
              help="Where the real sets are (for sysu-cut).")
@click.option("--scale", type=click.FloatRange(0, 1, min_open=True), default=1.0,
              help="Shrink every count of the built sets (1: the course's 36 x 50 / 36 x 10 / 500).")
@click.option("--out-dir", type=click.Path(file_okay=False), default="runs/bench-generalize", help="Folder for the sets and the report.")
@click.option("--grid-epochs", type=COUNT, default=0,
              help="Also train every start (none, glyphs-v1, glyphs-v2) x freeze x input size (32, 64) for this "
                   "many epochs, with explicit flags, and print that table (0: skip; it takes long).")
@click.option("--pretrained", default=TrainConfig.pretrained,
              help="The start every plain run trains from (" + PRETRAINED_HELP + "); the default is the product's.")
def bench_generalize(sets, shared, scale, out_dir, grid_epochs, pretrained) -> None:
    """Leave-style-out: plain `captcha train` on glyph styles nobody here drew, and on a real cut."""
    from .bench.generalize import HEADER, format_generalize
    from .bench.generalize import bench_generalize as run

    click.echo(HEADER)
    res = run(tuple(s.strip() for s in sets.split(",") if s.strip()), out_dir, shared, scale, say=click.echo,
              grid_epochs=grid_epochs, pretrained=pretrained)
    (Path(out_dir) / "generalize.md").write_text(format_generalize(res) + "\n")
    click.echo(f"wrote {out_dir}/generalize.md and generalize.json")


if __name__ == "__main__":  # pragma: no cover
    main()
