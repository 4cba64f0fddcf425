import torch

from captcha.charset import Charset
from captcha.config import READER_CHECK_FOLDS, TrainConfig
from captcha.inference.load import general_reader_path
from captcha.nn.networks import reader_size
from captcha.training import readercheck
from captcha.training.dataset import load_training_data
from captcha.training.readercheck import (
    ReaderCheck,
    check_reader,
    reads_right,
    solving_reader,
)
from captcha.training.recipe import training_start


def test_the_reader_is_kept_only_where_it_reads_clearly_more_of_the_same_captchas():
    assert not ReaderCheck(captchas=10, reader_only=3, fine_tuned_only=0, epochs=20).kept  # 3 < 2 * sqrt(3)
    assert ReaderCheck(captchas=10, reader_only=4, fine_tuned_only=0, epochs=20).to_dict() == \
        {"captchas": 10, "reader_only": 4, "fine_tuned_only": 0, "epochs": 20, "kept": True}


def test_solving_reader_is_the_whole_reader_with_its_head_on_the_sites_characters():
    source, model, size = solving_reader(Charset("ABC123"))
    assert source == f"reader:{general_reader_path().name}"
    assert model.fc.out_features == 6 + 1  # and the blank
    assert (model.width, model.layer3_inner) == (512, 256)  # not narrowed: nothing is trained from it
    assert size == reader_size(str(general_reader_path()))


def test_check_reader_reads_every_training_captcha_untrained_and_each_fold_with_a_fine_tune_on_the_rest(
        six_captchas, monkeypatch):
    charset = Charset("ABC123")
    cfg = TrainConfig(data=str(six_captchas), charset=charset.alphabet, method="ctc", epochs=1, size=(48, 96),
                      batch_size=4)
    data = load_training_data(cfg, charset)
    fit = (data.train_images, data.train_targets)
    source, state = training_start(cfg, "ctc", charset, data)
    trained_on = []
    real = readercheck.train_briefly

    def recorded(probe, cfg, num, state, source, fit, *args):
        trained_on.append(len(fit[0]))
        return real(probe, cfg, num, state, source, fit, *args)

    monkeypatch.setattr(readercheck, "train_briefly", recorded)
    reader = solving_reader(charset)
    check = check_reader(cfg, charset, state, source, fit, data.length, torch.device("cpu"), reader)
    n = len(fit[0])
    folds = min(READER_CHECK_FOLDS, n)
    assert check.captchas == n and len(trained_on) == folds and sum(trained_on) == n * (folds - 1)
    labels = [charset.decode(t) for t in fit[1]]
    read = reads_right(reader[1], reader[2], fit[0], labels, charset, data.length)
    assert len(read) == n and 0 <= check.fine_tuned_only <= n - sum(read) and check.reader_only <= sum(read)
