"""`captcha train`: the course's transfer learning, pretrained ResNet-18, frozen stages, new head.

``train(cfg)`` is the whole job. It reads the data (``dataset``), chooses the method and recipe
(``recipe``, ``_choose``), builds the network from a pretrained source and freezes it by the course's
rule, trains one :class:`~captcha.training.fit.Fit` through its epochs (``fit``, on the one loop of
``loop``), with the epochs and the refit's room that the budget plans (``budget``), and finishes
(``_finish``: the diagnosis, calibration and int8 check, then self-training and the refit).
With frozen stages, the frozen part is a fixed feature extractor: its output is computed once per
augmentation pass and the rest trains on that cache (same result in fp32, less work; with bf16
training the cache keeps the frozen stages' full-precision output).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import random
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..charset import DEFAULT_CHARSET, Charset
from ..config import (
    CONFIDENCE_MAP_MIN,
    INT8_CALIBRATION,
    INT8_TRAINED,
    KEPT_MAP_MIN,
    KEPT_MAP_SHARE,
    ONE_FIT_VALIDATION,
    REFIT_MIN_EPOCHS,
    RESUME_OVERRIDES,
    SECOND,
    SECOND_MAX_CAPTCHAS,
    SVG_APART,
    SynthConfig,
    TrainConfig,
)
from ..data.images import load_image
from ..data.layout import (
    dataset_folder,
    decoding_once,
    labelled_captchas,
    left_out,
    left_out_note,
    site_charset,
)
from ..data.preprocess import Preprocess
from ..data.segment import SegmentConfig
from ..data.synth import seed_for, synth_dataset
from ..errors import DataError, require_writable
from ..eval.metrics import reliability
from ..eval.plots import training_curve
from ..inference.backends import has_onnxruntime
from ..inference.decode import calibrated
from ..inference.export import int8_check, int8_verdict
from ..inference.load import cache_dir, load_solver
from ..inference.solver import batch_widths
from ..nn.checkpoint import half_precision, last_file, load_checkpoint, save_checkpoint
from ..nn.device import (
    barrier,
    distributed,
    from_rank0,
    leave_process_group,
    resolve_device,
)
from ..nn.networks import (
    CharNet,
    checkpoint_shape,
    reads_already,
)
from . import budget
from .budget import RefitStopped
from .calibrate import fit_confidence_map, fit_temperature, nll
from .dataset import (
    TrainingData,
    hold_out_slice,
    load_training_data,
    synthetic_captchas,
    whole_captchas_only,
)
from .diagnose import HELD_SLICE, diagnose, labels_against_reader
from .fit import EpochKeeper, Fit, noise
from .loop import predict
from .readercheck import check_reader, solving_reader
from .recipe import (
    MethodChoice,
    choose_method,
    choose_recipe,
    ctc_sizes,
    far_sizes,
    keep_warm,
    make_network,
    plan_fits,
    start_lr,
    start_reading,
    training_start,
)
from .selftrain import (
    ranked_counts,
    round_checkpoint,
    round_file,
    round_folder,
    surest_readings,
    unlabelled_images,
    write_labelled,
)

log = logging.getLogger(__name__)


def ensure_data(cfg: TrainConfig, say: Callable[[str], None]) -> None:
    """Generate the synthetic course dataset at ``cfg.data`` only when asked to and it is absent."""
    root = Path(cfg.data)
    if root.is_dir() and any(root.iterdir()):
        return
    if not cfg.synth_if_missing:
        hint = "; check the path (without --data, `captcha train` makes the synthetic course dataset in ./data)"
        dataset_folder(root, hint)  # an archive, a file, or nothing there: said as every command says it
        raise DataError(f"--data {root}: the dataset folder is empty{hint}")
    say(f"{root} not found: generating the synthetic course dataset there first (captcha data synth --out {root})")
    synth_dataset(root, SynthConfig(seed=cfg.seed))


def training_charset(cfg: TrainConfig, say: Callable[[str], None]) -> Charset:
    """The charset a run reads: ``cfg.charset``, or with none given the one the labels ask for (0-9 and the
    letters in their case, plus any other character they use); says what it reads when that is not
    0-9A-Z, and which labelled images it leaves out, and why, so none is lost unseen."""
    root = Path(cfg.data)
    if cfg.charset is None:
        charset = site_charset(root)
        if charset != DEFAULT_CHARSET:
            say(f"the labels ask for {len(charset)} characters, {charset.alphabet!r} ("
                + ("upper and lower case apart" if not charset.fold_case else
                   "lower case, as labelled" if charset.lower_case else "case folded")
                + "; --charset sets them)")
    else:
        charset = Charset(cfg.charset)
    kept, problems = left_out(root, charset)
    if problems:
        say(f"left out of {root} ({kept} labelled images kept): {left_out_note(problems, root)}")
    return charset


@decoding_once()  # the probes, the fit, its refit and a self-training round read one decoding of the folder
def train(cfg: TrainConfig, say: Callable[[str], None] = log.info, progress: bool = False,
          pseudo: list | None = None, warm: dict[str, torch.Tensor] | None = None,
          refitting: bool = False, deadline: float | None = None) -> dict[str, Any]:
    """Train a recognizer as configured; writes the best checkpoint to ``cfg.out``; returns the result.

    With ``cfg.unlabelled`` a second round follows on labelled + pseudo-labelled captchas (``selftrain``);
    ``pseudo`` is that round's pseudo-labelled captchas. ``warm``: weights to go on from instead of the
    pretrained start's (a refit goes on from where its first fit began); ``refitting``: this is a refit, which
    trains as its first fit chose; ``deadline``: the ``time.perf_counter`` reading by which a refit whose epochs the
    budget set is to end (it is held to it as it goes, as one fit the budget planned is)."""
    started = time.perf_counter()
    whole_run = not refitting and pseudo is None  # not a refit's or a self-training round's inner run
    epochs_by_budget = not cfg.epochs
    asked = cfg
    cfg = dataclasses.replace(cfg)  # the auto settings are filled in below; the caller's config stays as given
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)  # a device that is not there fails before any work
    rank, world = distributed()
    if rank != 0:
        say, progress = (lambda _msg: None), False
    if rank == 0:
        require_writable(cfg.out)
        ensure_data(cfg, say)
    barrier(world)
    # a wrong folder fails before training
    unlabelled, copies = unlabelled_images(cfg.unlabelled, cfg.data) if cfg.unlabelled else ([], 0)
    if copies and whole_run:
        say(f"--unlabelled: left out {copies} of its images, labelled captchas of {cfg.data} (self-training reads "
            "captchas with no label)")
    out = Path(cfg.out)
    last_path = last_file(out)
    done = _finished_run(out, last_path, cfg.epochs, say) if cfg.resume and rank == 0 and world == 1 else None
    if done is not None:
        return done
    resume = load_checkpoint(last_path, kind="recognizer") if cfg.resume and last_path.is_file() else None
    if cfg.resume and resume is None:
        say(f"--resume: no {last_path} yet, starting afresh")
    if resume:
        cfg = resumed_config(cfg, resume["train_config"])
    ends = started + cfg.budget  # where anything is auto, when the whole run is to end
    # what the run leaves out is said once: not again by its refit or its second round
    charset = training_charset(cfg, say if whole_run else (lambda _msg: None))
    cfg.charset = charset.alphabet  # the probes and the checkpoint read the alphabet chosen here
    segment = SegmentConfig.from_dict(resume["segment"]) if resume else None
    if segment is not None:  # its captchas are decoded below as the package decodes them now (load_images)
        segment.apart = SVG_APART
    extra, style = list(pseudo or []), None
    if cfg.synthetic:
        made, style = synthetic_captchas(cfg, charset)
        extra += made
        say(f"style-matched synthesis: {len(made)} captchas in fonts {', '.join(style['families'])}, "
            f"{style['size'][0]}x{style['size'][1]}, {'grey' if style['grey'] else 'colour'}")
    choice = None
    if cfg.method == "auto":
        if whole_captchas_only(Path(cfg.data)):
            until = budget.probes_until(cfg, started)
            choice = choose_method(cfg, charset, device, say, extra, until) if rank == 0 else None
            method, seg = from_rank0([choice.method, choice.segment.to_dict()] if choice else [None, None], world)
            cfg.method, segment = method, SegmentConfig.from_dict(seg) if method == "classify" else None
        else:  # single-character images to learn from (the course's layout): CTC cannot use them
            cfg.method = "classify"
    data = choice.data if choice else load_training_data(cfg, charset, segment, extra)
    if data.other_lengths and whole_run:
        say(f"left out {data.other_lengths} of the training captchas, labelled with another length than "
            f"{data.length}, the length of most (`captcha data check --data {cfg.data}` lists them)")
    fit_idx, held_idx, fit, held = _split(data, cfg)
    none_held = not held[0]  # (one fit may train on the slice later: it was held out to choose the recipe by)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    if resume:
        # Everything that shaped the interrupted run comes from its checkpoint: its weights replace
        # the start point, and neither the splitter nor the recipe is chosen again.
        source, recipe, cfg.freeze = resume["pretrained"], resume.get("recipe", {}), resume["freeze"]
        model = make_network(cfg, len(charset), None, source, cfg.freeze, checkpoint_shape(resume))
        warm = resume.get("warm")  # the chosen probe's weights: the refit goes on from them as it would have
    else:
        cfg, model, source, recipe, warm = _choose(cfg, charset, data, fit, held, device, started, say, rank, world,
                                                   choice, warm)
        trains_on_val = cfg.val_share != data.split.get("val_fraction", cfg.val_share)
        if trains_on_val:  # one fit, no refit: it trains on most of the validation share too (``_choose``)
            data = load_training_data(cfg, charset, data.segment, extra)
        if trains_on_val or (held[0] and not cfg.select_fraction):  # one fit: the slice is trained on
            fit_idx, held_idx, fit, held = _split(data, cfg)
    going_on = bool(resume) or refitting
    kept = _reader_kept(cfg, charset, data, fit, device, recipe, say, model, source) \
        if _checks_reader(cfg, source, none_held, fit, extra, going_on) and rank == 0 and world == 1 else None
    if kept is not None:
        source, model = kept
    kept_reader = kept is not None
    run = Fit(cfg, charset, data, fit, held, model.to(device, memory_format=torch.channels_last), source, recipe,
              world)
    if resume:
        run.restore(resume, last_path, say)
    if not kept_reader:
        say(run.announcement())
    if reads_already(source) and (held[0] or kept_reader) and rank == 0 and not resume:
        # the general reader reads before training: with few captchas a short fine-tune can read the
        # site worse than the start did, so the start competes as "epoch 0" for the checkpoint kept
        # (and where the untrained reader is kept, it is the checkpoint)
        run.start_competes(out, say, from_probe=warm is not None)
    # one fit the budget planned (no refit after it to shorten instead), and a refit whose epochs the budget set, are
    # held to the budget as they go: a refit never below REFIT_MIN_EPOCHS, the least a refit is planned for (it
    # stops instead, and the first fit stands)
    if epochs_by_budget and whole_run and not resume and world == 1 and not budget.refit_planned(cfg, world):
        deadline = ends
    # the chosen probe's weights, for the refit of a resumed run: unchanging, so kept only where a refit may follow
    for_refit = {"warm": warm} if warm is not None and budget.refit_planned(cfg, world) else {}
    run.run_epochs(out, last_path, for_refit, rank, device, deadline, refitting, say, progress)
    barrier(world)
    leave_process_group(world)
    if rank != 0:
        return {"checkpoint": str(out), "rank": rank, "train_seconds": run.train_seconds}
    return _finish(run, out, fit_idx, held_idx, ends, warm, unlabelled, pseudo or [], style, kept_reader, asked,
                   whole_run, say, progress)


def _reader_kept(cfg: TrainConfig, charset: Charset, data: TrainingData, fit: tuple[list, list], device: torch.device,
                 recipe: dict[str, Any], say: Callable[[str], None], model: CharNet,
                 source: str) -> tuple[str, CharNet] | None:
    """Where no captcha is held out, whether the general reader, untrained, reads the training captchas better than
    fine-tunes on part of them (``readercheck``): its (source, network) to keep as the model, nothing trained (and
    ``cfg`` set to train no epochs), else None. The check is recorded in ``recipe``."""
    reader = solving_reader(charset)
    check = check_reader(cfg, charset, model.state_dict(), source, fit, data.length, device, reader)
    recipe["reader_check"] = check.to_dict()
    against = "" if check.reader_only is None else (
        f" against fine-tunes of {check.epochs} epochs on all but a quarter of them reading that quarter "
        f"({check.reader_read} read right by the reader, {check.reader_only} by it only, {check.fine_tuned_only} by "
        "the fine-tunes only)")
    say(f"none of the {len(fit[0])} training captchas held out, so the general reader ({reader[0]}), untrained, "
        f"read them all{against}; {check.reason}: "
        + ("keeping the reader, nothing trained (--pretrained reader fine-tunes it anyway)" if check.kept else
           "training"))
    if not check.kept:
        return None
    cfg.size, cfg.freeze, cfg.epochs = reader[2], "none", 0
    return reader[0], reader[1]


def _finish(run: Fit, out: Path, fit_idx: list[int], held_idx: list[int], ends: float,
            warm: dict[str, torch.Tensor] | None, unlabelled: list[str], pseudo: list, style: dict[str, Any] | None,
            kept_reader: bool, asked: TrainConfig, whole_run: bool, say: Callable[[str], None],
            progress: bool) -> dict[str, Any]:
    """After the fit: the curve, the diagnosis, the calibration and the int8 check of the model kept at ``out``,
    then the second round of self-training (``asked``: the run's config as its caller gave it) and the refit where
    they follow; returns the run's result."""
    cfg, data, fit, held, history = run.cfg, run.data, run.fit, run.held, run.history
    final = load_checkpoint(out, kind="recognizer") if out.is_file() else None
    curve = out.with_name(out.stem + ".curve.png")
    training_curve(history, curve, title=f"{out.name}: pretrained={run.source}, freeze={cfg.freeze}")
    judged, where = _judged(run.keeper, bool(held[0]), final, data, cfg.method)
    problems = diagnose(len(run.charset), judged,
                        [p["score"] if p.get("char_score") is None else p["char_score"]
                         for p in run.recipe.get("probes", [])],
                        [h["loss"] for h in history], fit[0] if cfg.method == "classify" else (), data.other_lengths,
                        data.length, cfg.method, where, lambda: labels_against_reader(data.captchas))
    for line in problems:
        say(f"warning: {line}")
    if final is not None and cfg.method == "classify":  # CTC's loss has no label smoothing to undo
        char_x, cap_x, held_x = run.read_inputs()
        x, y, on = _calibration_set(held_x, held[1], char_x, data.char_targets, cap_x, run.cap_labels, run.charset)
        if len(y):
            logits = predict(run.reader_of(final), x)
            t = fit_temperature(logits, y)
            final["temperature"] = t
            final["calibration"] = {"temperature": t, "held_out": len(y), "on": on, "nll": nll(logits, y),
                                    "nll_calibrated": nll(logits, y, t)}
    added = budget.refit_adds(data, len(held[0]), cfg.method)
    validating = run.val_seconds if budget.refit_validates(data) else 0.0
    epoch_seconds = (run.train_seconds + validating) / max(len(history), 1)

    def refit_epochs(past_budget: bool = False) -> int:  # asked when the refit would start: the budget is read then
        return budget.refit_epochs(cfg, run.keeper.best_epoch, len(fit[0]), added, epoch_seconds, ends, say,
                                   past_budget)

    refitting = refit_epochs() if final is not None and budget.refit_planned(cfg, run.world) else 0
    if final is not None:
        final["warnings"] = problems
        final["self_training"] = {"pseudo_labelled": len(pseudo)} if pseudo else None
        final["synthetic"] = {"captchas": cfg.synthetic, "style": style} if style else None
        checked = _held_captchas(run.held_x, held[1], [data.train_groups[i] for i in held_idx], run.charset,
                                 data.length, cfg.method)
        checked = (torch.cat([checked[0], run.cap_x]) if len(run.cap_x) else checked[0], checked[1] + run.cap_labels)
        seen = not checked[1]
        if cfg.method == "ctc" and kept_reader:  # it trained on none of them: each labelled captcha is held out
            read = _held_captchas(*_first_captchas(fit, fit_idx, data, run.pre, cfg.method, len(fit[0])),
                                  run.charset, data.length, cfg.method)
            _kept_reader_map(final, out, (torch.cat([read[0], checked[0]]), read[1] + checked[1]), say)
        elif cfg.method == "ctc" and len(checked[1]) >= CONFIDENCE_MAP_MIN:
            final["confidence_map"] = mapped = _confidence_map(out, checked)
            say(f"confidence map: fitted on how the {mapped['captchas']} captchas held out are read ({mapped['right']} "
                f"right): calibration error on them {100 * mapped['ece']:.1f}% -> {100 * mapped['ece_fitted']:.1f}%")

        def check_int8() -> None:  # the file at ``out`` holds the kept weights already
            if not has_onnxruntime():
                return
            # training captchas: the whole check where nothing is held out (a refit on every labelled captcha),
            # else paired evidence of a damaged quantisation beside the few held out
            trained = _held_captchas(*_first_captchas(fit, fit_idx, data, run.pre, cfg.method), run.charset,
                                     data.length, cfg.method)
            held_out, also = (trained, None) if seen else (checked, trained if trained[1] else None)
            if held_out[1]:
                final["int8"] = _int8_check(out, fit[0], run.pre, held_out, cfg.seed, say, seen, also)

        if not refitting:  # a refit checks the model it makes instead
            check_int8()
        save_checkpoint(final, out)
    result = {"checkpoint": str(out), "curve": str(curve), "method": cfg.method, "history": history,
              "best": final["metrics"] if final else {}, "train_seconds": run.train_seconds, "warnings": problems,
              "held_out_acc": run.keeper.best_acc if held[0] else None, "held_out_samples": len(held[0]),
              "kept_reader": kept_reader,
              "shortened": run.recipe.get("shortened")}
    if unlabelled and final is not None and run.world == 1:
        result = self_train(cfg, data, unlabelled, result, say, progress, asked)
        # a second round not kept leaves the first fit, refit on every labelled captcha as without --unlabelled.
        # Self-training runs past --budget (its second round does), and so does this refit: the first fit planned
        # no room for one, and without it the model never learns from the captchas held out to judge the rounds
        refitting = 0 if result["self_training"]["kept"] else refit_epochs(past_budget=True)
    if refitting:
        try:
            # held to the budget as it goes where the budget set it (not --refit, nor the refit past it above)
            result = refit(cfg, data, result, refitting, say, progress, warm,
                           ends if cfg.refit is None and not unlabelled else None, pseudo)
        except RefitStopped as stop:
            say(f"refit stopped after {stop.record['after']} of its {stop.record['planned']} epochs: they take "
                f"{stop.record['epoch_seconds']:.1f}s each (a slower or busier machine) and --budget {cfg.budget:g}s "
                f"holds {stop.record['fit']}, under the {REFIT_MIN_EPOCHS} a refit needs; the model is the first "
                "fit's (a larger --budget, or --refit, refits)")
            final["recipe"]["refit_stopped"] = stop.record  # the first fit stands: checked for int8 as one fit is
            check_int8()
            save_checkpoint(final, out)
            result = {**result, "refit_stopped": stop.record}
    if whole_run and out.is_file():
        save_checkpoint({**load_checkpoint(out), "finished": {"epochs": cfg.epochs, "result": result}}, out)
    return result


def _finished_run(out: Path, last_path: Path, epochs: int | None, say: Callable[[str], None]) -> dict[str, Any] | None:
    """What ``--resume`` of a finished run returns where it asks for no more epochs than were trained: the run's
    own result, nothing trained again. Asked for more, a run whose refit replaced the first fit's checkpoint gets
    that fit's last state back there (the refit goes on from the fit, not from itself); None: train."""
    ckpt = load_checkpoint(out, kind="recognizer") if out.is_file() else None
    done = ckpt.get("finished") if ckpt else None
    if done is None:
        return None
    if epochs is None or epochs <= done["epochs"]:
        say(f"--resume: {out} is a finished run of {done['epochs']} epochs, so nothing is trained again "
            "(--epochs N above that trains on to epoch N; without --resume a run starts afresh)")
        return done["result"]
    if "refit" in ckpt and last_path.is_file():
        last = load_checkpoint(last_path, kind="recognizer")
        save_checkpoint({k: v for k, v in last.items() if k not in ("optimizer", "scheduler", "warm")}, out)
    return None


def _checks_reader(cfg: TrainConfig, source: str, none_held: bool, fit: tuple[list, list], extra: list,
                   going_on: bool) -> bool:
    """Whether a run asks if the general reader, untrained, reads the site better than a fine-tune (see
    ``readercheck``): a CTC fine-tune from the reader that `--pretrained auto` chose, nothing held out to measure
    it by, at least two captchas to fit (one fine-tune reads what the other leaves out), no captchas added to the
    labelled ones (synthetic, or pseudo-labelled by a round before), and not ``going_on`` from an earlier fit (a
    resumed run, or a refit: its first fit asked). Unlabelled captchas given for self-training do not stop it: a
    fine-tune on a handful is sure of none of them, where a reader kept is sure of many (sysu from its first 5 with
    685 unlabelled: the fine-tune pseudo-labelled 0, 58.26%; the reader, kept, reads 87.39% before any)."""
    return (cfg.method == "ctc" and cfg.pretrained == "auto" and reads_already(source) and none_held
            and not extra and not going_on and len(fit[0]) >= 2)


def _judged(keeper: EpochKeeper, held: bool, final: dict[str, Any] | None, data: TrainingData,
            method: str) -> tuple[float | None, str]:
    """The accuracy the end-of-training diagnosis judges the run by, and whose: the held-out slice's;
    with none (one fit trained on it, or a refit), the validation data's; else None."""
    if held:
        return keeper.best_acc, HELD_SLICE
    if final is not None and budget.val_reads(data, method):
        return EpochKeeper.accuracy(final["metrics"]), "the validation data"
    return None, HELD_SLICE


def _split(data: TrainingData, cfg: TrainConfig) -> tuple[list[int], list[int], tuple[list, list], tuple[list, list]]:
    """The training samples' indices to fit on and of the held-out slice (``cfg.select_fraction`` of the
    captchas), then the (images, targets) of each."""
    fit_idx, held_idx = hold_out_slice(data.train_groups, cfg.select_fraction, cfg.seed, data.extra_groups)
    return fit_idx, held_idx, ([data.train_images[i] for i in fit_idx], [data.train_targets[i] for i in fit_idx]), \
        ([data.train_images[i] for i in held_idx], [data.train_targets[i] for i in held_idx])


def refit(cfg: TrainConfig, data: TrainingData, first: dict[str, Any], epochs: int, say: Callable[[str], None],
          progress: bool, warm: dict[str, torch.Tensor] | None = None, deadline: float | None = None,
          pseudo: list | None = None) -> dict[str, Any]:
    """Train again from the same start (``warm``: the chosen probe's weights) on every labelled sample (the
    held-out slice, and a flat folder's validation share) for ``epochs`` (those the first fit kept, or as many as
    the budget holds: :func:`budget.refit_epochs`). On a few hundred captchas that is a third more to learn from. From a
    flat folder the first fit's held-out figures stay in the checkpoint as the estimate, since nothing is left out
    to measure the refit on; the course layout's validation folders stay out of it and measure it. A CTC refit on
    at most SECOND_MAX_CAPTCHAS keeps the first fit as its second network (``config.SECOND``). A resumed run is not
    probed again: its refit goes on from the probe's weights that the interrupted run's last file kept. With a
    ``deadline`` it runs fewer epochs where the rest would end past it (``train``'s), and stops with
    :class:`RefitStopped` where fewer than it is planned for at least would. ``pseudo``: a self-training round's
    pseudo-labelled captchas, learned from again."""
    out = Path(cfg.out)
    tmp = out.with_name(out.stem + ".refit.pt")
    again = dataclasses.replace(cfg, out=str(tmp), epochs=epochs, select_fraction=0.0, val_fraction=0.0,
                                split=data.segment.method, resume=False, refit=False, unlabelled=None)
    start = " (the chosen probe's weights)" if warm is not None else ""
    say(f"refit: training again from the start{start} on every labelled captcha for {epochs} epochs "
        "(--no-refit keeps the first fit)")
    try:
        refitted = train(again, say, progress, pseudo=pseudo, warm=warm, refitting=True, deadline=deadline)
    except RefitStopped:
        for leftover in (tmp, last_file(tmp)):
            leftover.unlink(missing_ok=True)
        raise
    kept, ckpt = load_checkpoint(out, kind="recognizer"), load_checkpoint(tmp, kind="recognizer")
    shortened = ckpt.get("recipe", {}).get("shortened")
    for key in ("recipe", "temperature", "calibration", "confidence_map", "warnings", "self_training", "synthetic"):
        if key in kept:
            ckpt[key] = kept[key]
    folded = data.split.get("layout") == "flat"
    labelled = data.labelled_captchas()
    if cfg.method == "ctc" and labelled <= SECOND_MAX_CAPTCHAS:  # it reads the unsure captchas beside the refit
        ckpt[SECOND] = {"model": half_precision(kept["model"]), "epoch": kept.get("epoch"), "captchas": labelled}
        say(f"kept the first fit beside the refit: from {labelled} captchas, at most {SECOND_MAX_CAPTCHAS}, the two "
            "read the unsure captchas together")
    # a flat folder's validation share is trained on now: the first fit's figures are the estimate; the
    # course layout's chars/val and captchas/val stay out, so the refit has figures of its own
    ckpt["refit"] = {"epochs": shortened["epochs"] if shortened else epochs, "shortened": shortened,
                     "train_seconds": refitted["train_seconds"], "validation_trained_on": folded,
                     "estimate" if folded else "first_fit": {"held_out_acc": first["held_out_acc"], "val": first["best"],
                                                              "val_captchas": len(data.captchas)}}
    save_checkpoint(ckpt, out)
    for leftover in (tmp, last_file(tmp), Path(refitted["curve"])):
        leftover.unlink(missing_ok=True)
    return {**first, "best": first["best"] if folded else refitted["best"], "refit": ckpt["refit"],
            "train_seconds": first["train_seconds"] + refitted["train_seconds"]}


def _first_captchas(fit: tuple[list, list], fit_idx: list[int], data: TrainingData, pre: Preprocess, method: str,
                    limit: int = INT8_TRAINED) -> tuple[torch.Tensor, list, list[int]]:
    """Network inputs, targets and captcha groups of the first ``limit`` training captchas."""
    groups = [data.train_groups[i] for i in fit_idx]
    wanted = set(sorted(set(groups) - data.extra_groups)[:limit])
    pick = [k for k, g in enumerate(groups) if g in wanted]
    if not pick:
        return torch.zeros(0), [], []
    x = torch.from_numpy(np.stack([pre(fit[0][k]) for k in pick]))
    return x, [fit[1][k] for k in pick], [groups[k] for k in pick]


def self_train(cfg: TrainConfig, data: TrainingData, paths: list[str], first: dict[str, Any],
               say: Callable[[str], None], progress: bool, asked: TrainConfig) -> dict[str, Any]:
    """Self-training on the unlabelled ``paths`` (see ``selftrain``) after the first fit at ``cfg.out``: rounds on
    the readings the last model is surest of, judged by the held-out slice of the labelled captchas
    (``judged_rounds``); from a handful, with none held out, unjudged (``ranked_rounds``). ``asked``: the run's
    config as its caller gave it, which each round's recipe is chosen from anew."""
    if first["held_out_acc"] is None:
        return ranked_rounds(cfg, paths, first, say, progress, asked)
    return judged_rounds(cfg, data, paths, first, say, progress, asked)


def judged_rounds(cfg: TrainConfig, data: TrainingData, paths: list[str], first: dict[str, Any],
                  say: Callable[[str], None], progress: bool, asked: TrainConfig) -> dict[str, Any]:
    """Ranked rounds where a slice of the labelled captchas is held out: each trains as the first fit did on the
    labelled captchas (the slice and the validation share stay labelled only) with, as pseudo-labelled captchas
    beside them, the ``ranked_counts`` readings the model kept so far is surest of, and its refit learns from
    them too; a round is kept (it becomes ``cfg.out``) unless the slice reads it worse than the best model kept by
    more than chance moves a slice that size (``fit.noise``), and the rounds stop at the first it does. A round whose
    budget holds one fit trains on the slice too, as a plain run does, and is kept unjudged."""
    out = Path(cfg.out)
    lengths = {len(label) for label in data.train_targets} if cfg.method == "ctc" else {data.length}
    counts = ranked_counts(len(paths))
    say(f"self-training: up to {len(counts)} round{'s' * (len(counts) > 1)} on the readings of the {len(paths)} "
        f"unlabelled captchas the model kept is surest of, {' then '.join(map(str, counts))} of them beside the "
        "labelled captchas, each kept unless the held-out slice reads it clearly worse")
    best, top, rounds = first, first["held_out_acc"], []
    for k, count in enumerate(counts, 1):
        started = time.perf_counter()
        readings = surest_readings(load_solver(out), paths, lengths, count)
        step = dataclasses.replace(asked, unlabelled=None, resume=False, charset=cfg.charset,
                                   out=str(round_file(out, k)))
        result = train(step, say, progress, pseudo=[(load_image(path), text) for path, text in readings])
        acc = result["held_out_acc"]
        # a round whose budget held one fit trains on the slice too (as a plain run would): nothing judges it
        kept = acc is None or acc >= top - noise((top + acc) / 2, first["held_out_samples"])
        verdict = "kept" if kept else "not kept (clearly worse than the best so far), the rounds stop"
        say(f"self-training, round {k} of {len(counts)} ({len(readings)} readings): "
            + (f"held-out slice {100 * top:.2f}% -> {100 * acc:.2f}%; {verdict}" if acc is not None
               else "one fit, trained on the held-out slice too, nothing to judge it by; kept"))
        rounds.append({"pseudo_labelled": len(readings), "held_out_acc": acc, "kept": kept,
                       "seconds": round(time.perf_counter() - started, 1)})
        step_out = Path(step.out)
        last_file(step_out).unlink(missing_ok=True)
        if not kept:
            step_out.unlink(missing_ok=True)
            break
        os.replace(step_out, out)
        best, top = {**result, "checkpoint": str(out)}, max(top, acc or 0.0)
    kept_rounds = [r for r in rounds if r["kept"]]
    return _after_rounds(out, first, best, {
        "unlabelled": len(paths), "pseudo_labelled": kept_rounds[-1]["pseudo_labelled"] if kept_rounds else 0,
        "kept": bool(kept_rounds), "judged": True, "ranked": rounds,
        "held_out_acc": [first["held_out_acc"]] + [r["held_out_acc"] for r in rounds]})


def ranked_rounds(cfg: TrainConfig, paths: list[str], first: dict[str, Any], say: Callable[[str], None],
                  progress: bool, asked: TrainConfig) -> dict[str, Any]:
    """Self-training from a handful (nothing held out to judge a round by) whose first model (the general reader
    kept, or a fine-tune) is at ``cfg.out``: rounds that each train as on a labelled folder (``<out stem>.round<k>/``:
    the handful and the unlabelled ``paths`` the last model is surest of, ``ranked_counts`` of them), each round's
    model reading for the next; the last is kept. ``asked``: the run's config as its caller gave it, which each
    round's recipe is chosen from anew."""
    out = Path(cfg.out)
    handful = [(str(s.path), s.label) for s in labelled_captchas(cfg.data, Charset(cfg.charset))]
    lengths = {len(label) for _, label in handful}
    counts = ranked_counts(len(paths))
    say(f"self-training: nothing held out to judge a round by; {len(counts)} round{'s' * (len(counts) > 1)} on the "
        f"readings of the {len(paths)} unlabelled captchas the last model is surest of, "
        f"{' then '.join(map(str, counts))} of them beside the labelled captchas")
    reader, rounds, result = out, [], first
    for k, count in enumerate(counts, 1):
        started = time.perf_counter()
        readings = surest_readings(load_solver(reader), paths, lengths, count)
        pairs = handful + readings
        folder = write_labelled(pairs, Path(os.path.commonpath([os.path.dirname(p) for p, _ in pairs])),
                                round_folder(out, k))
        by = f"round {k - 1}'s model" if k > 1 else "the general reader" if first.get("kept_reader") else \
            "the fine-tune"
        say(f"self-training, round {k} of {len(counts)}: the {len(readings)} readings {by} is surest of and the "
            f"{len(handful)} labelled captchas ({folder})")
        step = dataclasses.replace(asked, data=str(folder), synth_if_missing=False, unlabelled=None, resume=False,
                                   charset=cfg.charset, out=str(round_checkpoint(out, k, len(counts))))
        result = train(step, say, progress)
        rounds.append({"pseudo_labelled": len(readings), "folder": str(folder), "checkpoint": result["checkpoint"],
                       "seconds": round(time.perf_counter() - started, 1)})
        reader = Path(result["checkpoint"])
    return _after_rounds(out, first, result, {"unlabelled": len(paths),
                                              "pseudo_labelled": rounds[-1]["pseudo_labelled"], "kept": True,
                                              "ranked": rounds})


def _after_rounds(out: Path, first: dict[str, Any], last: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    """The run's result after self-training rounds (``info`` records them, ``last`` is the kept round's result),
    the model at ``out`` recording them too where one was kept."""
    if info["kept"]:
        save_checkpoint({**load_checkpoint(out), "self_training": info}, out)  # the model says how it was made
    return {**last, "train_seconds": first["train_seconds"] + sum(r["seconds"] for r in info["ranked"]),
            "self_training": info}


def _choose(cfg: TrainConfig, charset: Charset, data: TrainingData, fit: tuple[list, list], held: tuple[list, list],
            device: torch.device, started: float, say: Callable[[str], None], rank: int = 0, world: int = 1,
            choice: MethodChoice | None = None, warm: dict[str, torch.Tensor] | None = None
            ) -> tuple[TrainConfig, CharNet, str, dict[str, Any], dict[str, torch.Tensor] | None]:
    """Fill in the auto settings by measurement (see ``recipe``) and build the network they call for, and
    the weights it goes on from (``warm`` as given, else the chosen probe's where it read the slice better
    than the start; see ``recipe.keep_warm``); with ``--method auto`` the chosen method's probes are
    already run (``choice``).

    Under DDP only rank 0 measures, and every rank follows its choice.
    """
    num_chars = len(charset)
    source, state = choice.start if choice else training_start(cfg, cfg.method, charset, data)
    if source == "none" and cfg.pretrained == "auto":
        say("no pretrained backbone found: training from random initialisation with full fine-tuning "
            "(get one with `captcha pretrain --source glyphs`, or put ImageNet's resnet18-f37072fd.pth "
            "in $TORCH_HOME/hub/checkpoints/)")
    # --input-size given: probed as given; --method auto: probed already
    sizes = ctc_sizes(fit[0], source, fit[1]) if cfg.method == "ctc" and not cfg.size and not choice else []
    reading = choice.reading if choice else None  # how close the site is to what the start reads
    if rank == 0 and not choice and (cfg.size or sizes):
        reading = start_reading(cfg, num_chars, state, source, fit, held, device, data.length, cfg.size or sizes[0])
        sizes, reading = far_sizes(cfg, num_chars, state, source, fit, held, device, data.length, sizes, reading, say)
    if len(sizes) == 1:
        cfg.size = sizes[0]
    cfg.lr = start_lr(cfg, source, reading)
    cfg.batch_size = cfg.batch  # the checkpoint records the batch trained with
    recipe: dict[str, Any] = {}
    if rank == 0:
        chosen, probes = choice.probes[cfg.method] if choice else \
            choose_recipe(cfg, num_chars, state, source, fit, held, device, say, sizes=sizes,
                          until=budget.probes_until(cfg, started))
        cfg.freeze, cfg.size = chosen.freeze, chosen.size
        if not choice and reading is not None:
            keep_warm(chosen, reading if reading.size == chosen.size else
                      start_reading(cfg, num_chars, state, source, fit, held, device, data.length, chosen.size))
        if warm is None and chosen.state is not None:
            warm = chosen.state
            say(f"training goes on from the chosen probe's weights ({chosen.samples} training samples in): they "
                "read the held-out slice better than the start")
        evals = len(held[0]) + budget.val_reads(data, cfg.method)
        planned = budget.refit_planned(cfg, world)
        again = len(fit[0]) + budget.refit_adds(data, len(held[0]), cfg.method) if planned else 0
        again_reads = budget.val_reads(data, cfg.method) if planned and budget.refit_validates(data) else 0
        moved = budget.one_fit_validation(cfg, data)
        epochs, refit = plan_fits(cfg, chosen, len(fit[0]), time.perf_counter() - started, evals, again, again_reads,
                                  len(held[0]), moved * budget.per_captcha(data, cfg.method), keeps_last=not held[0])
        if refit is False and cfg.refit is None:
            # the slice has chosen the recipe; with no refit to add it later, the one fit learns from it
            cfg.select_fraction = 0.0
            if moved:  # and from the validation captchas it needs no more of to be measured
                cfg.val_fraction = ONE_FIT_VALIDATION / data.split["labelled"]
            say(f"no refit: the budget leaves two fits fewer than {REFIT_MIN_EPOCHS} epochs each; one fit of {epochs} "
                f"epochs instead, which also trains on the held-out slice ({len(held[0])} samples)"
                + (f" and on {moved} of the {len(data.captchas)} validation captchas ({ONE_FIT_VALIDATION} measure "
                   "it; --val-fraction keeps them all)" if moved else "")
                + " and keeps its last epoch (--refit forces a refit)")
        cfg.epochs, cfg.refit = epochs, refit
        if chosen.samples and not probes:
            say(f"--epochs auto: {cfg.epochs} epochs in --budget {cfg.budget:g}s at {1000 * chosen.seconds_per_sample:.0f} "
                "ms a training sample (timed on a few steps; --epochs overrides)")
        if probes:
            say(f"chosen: freeze={cfg.freeze}, input {cfg.size[0]}x{cfg.size[1]}, {cfg.epochs} epochs, peak "
                f"learning rate {cfg.peak_lr:.2g} (the best of {len(probes)} probes on the held-out slice; "
                "--freeze/--input-size/--epochs/--lr override)")
        recipe = {"chosen": chosen.to_dict(), "probes": [p.to_dict() for p in probes], "held_out": len(held[0]),
                  "budget": cfg.budget, "methods": choice.table() if choice else [],
                  "start_reading": reading.to_dict() if reading else None, "warm_start": warm is not None}
    cfg.freeze, cfg.size, cfg.epochs, cfg.lr, cfg.refit, cfg.select_fraction, cfg.val_fraction, recipe = from_rank0(
        [cfg.freeze, cfg.size, cfg.epochs, cfg.lr, cfg.refit, cfg.select_fraction, cfg.val_fraction, recipe], world)
    model = make_network(cfg, num_chars, state, source, cfg.freeze)
    if warm is not None:
        model.load_state_dict(warm)
    return cfg, model, source, recipe, warm


def _held_captchas(x: torch.Tensor, targets: list, groups: list[int], charset: Charset, length: int,
                   method: str) -> tuple[torch.Tensor, list[str]]:
    """The held-out slice as whole captchas: (network inputs, labels); none when it holds single
    characters (the course's layout) rather than crops of captchas."""
    if method == "ctc":
        return x, [charset.decode(t) for t in targets]
    sizes = collections.Counter(groups)
    if not len(x) or set(sizes.values()) != {length}:
        return x[:0], []
    return x, [charset.decode(targets[i:i + length]) for i in range(0, len(targets), length)]


def _confidence_map(out: Path, held: tuple[torch.Tensor, list[str]], batch: int = 64,
                    kept_reader: bool = False) -> dict[str, Any]:
    """The confidence map of the model at ``out`` (``calibrate.fit_confidence_map``), fitted on how the solver
    reads the ``held`` captchas (network inputs, labels) that it did not train on, with the calibration error on
    them before and after (after: on the captchas that fitted it). A ``kept_reader`` reads them at each width it may
    read a batch of the site at (``Solver.surest_width`` chooses one from the batch), and its map is a shift alone."""
    solver = load_solver(out, backend="torch")
    x = held[0].numpy()[:, None]
    views = [inputs for _, inputs in batch_widths(x)] if kept_reader else [x]
    sols = [sol for v in views for i in range(0, len(v), batch) for sol in solver.read(v[i:i + batch])]
    conf = np.array([sol.raw_confidence for sol in sols])
    right = np.array([sol.text == label for sol, label in zip(sols, held[1] * len(views))])
    a, b = fit_confidence_map(conf, right, slope=not kept_reader)
    return {"a": a, "b": b, "captchas": len(right), "right": int(right.sum()), "ece": reliability(conf, right)["ece"],
            "ece_fitted": reliability([calibrated(c, a, b) for c in conf], right)["ece"]}


def _kept_reader_map(final: dict[str, Any], out: Path, read: tuple[torch.Tensor, list[str]],
                     say: Callable[[str], None]) -> None:
    """A kept reader's confidence map, in ``final``: a shift fitted on how it reads the site's labelled captchas
    (``read``, none of them trained on) at each width a batch may be read at, where there are KEPT_MAP_MIN of them or
    more and KEPT_MAP_SHARE of those readings or more are right; else its confidences stand as they are."""
    if len(read[1]) < KEPT_MAP_MIN:
        return
    mapped = _confidence_map(out, read, kept_reader=True)
    if mapped["right"] < KEPT_MAP_SHARE * mapped["captchas"]:
        say(f"confidence map: none (the reader reads {mapped['right']} of {mapped['captchas']} readings of the "
            f"{len(read[1])} labelled captchas right, under {KEPT_MAP_SHARE:.0%}: too few to tell how far its "
            "confidences are off)")
        return
    final["confidence_map"] = mapped
    say(f"confidence map: a shift fitted on how the reader reads the {len(read[1])} labelled captchas at "
        f"{mapped['captchas'] // len(read[1])} widths ({mapped['right']} of {mapped['captchas']} right): calibration "
        f"error on them {100 * mapped['ece']:.1f}% -> {100 * mapped['ece_fitted']:.1f}%")


def _int8_check(out: Path, images: list, pre: Preprocess, held: tuple[torch.Tensor, list[str]], seed: int,
                say: Callable[[str], None], seen: bool = False,
                trained: tuple[torch.Tensor, list[str]] | None = None) -> dict[str, Any]:
    """int8 against fp32 on held-out captchas (``seen``: on training ones, when none is held out), and on the
    ``trained`` captchas given, calibrated on a sample of the training ``images`` (stored)."""
    pick = sorted(random.Random(seed_for(seed, "int8")).sample(range(len(images)), min(INT8_CALIBRATION, len(images))))
    calibration = torch.from_numpy(np.stack([pre.resize(images[i]) for i in pick]))
    # the files checked wait in the compile cache: compiling the model for solving takes them, not makes them again
    check = {**int8_check(out, calibration, held[0].numpy(), held[1], stash=cache_dir(),
                          training=(trained[0].numpy(), trained[1]) if trained else None),
             "on": "training" if seen else "held-out"}
    say(f"int8 check: {int8_verdict(check)}")
    return check


def _calibration_set(held_x: torch.Tensor, held_y: list[int], char_x: torch.Tensor, char_y: list[int],
                     cap_x: torch.Tensor, cap_labels: list[str], charset: Charset) -> tuple[torch.Tensor, np.ndarray, str]:
    """The character crops a classifier's temperature is fitted on, and where they come from: the held-out
    slice, or, where one fit trained on it, the validation characters and captchas' crops, which no fit
    trains on (a temperature changes no reading, so the accuracy reported on them stays unchosen)."""
    if len(held_y):
        return held_x, np.asarray(held_y), "held-out"
    crops = [t for label in cap_labels for t in charset.encode(label)]
    if len(crops) != len(cap_x):  # crops not one per character: nothing to pair them with
        cap_x, crops = cap_x[:0], []
    y = np.asarray(list(char_y) + crops, dtype=int)
    x = torch.cat([t for t in (char_x, cap_x) if len(t)]) if len(y) else torch.zeros(0)
    return x, y, "validation"


def resumed_config(given: TrainConfig, recorded: dict[str, Any]) -> TrainConfig:
    """The interrupted run's recorded config, with only :data:`RESUME_OVERRIDES` taken from ``given``."""
    cfg = TrainConfig.from_dict(recorded)
    for name in RESUME_OVERRIDES:
        if getattr(given, name) is not None:  # --epochs auto keeps the run's own number
            setattr(cfg, name, getattr(given, name))
    return cfg


