import torch

from captcha.charset import Charset
from captcha.config import READER_CHECK_FOLDS, READER_PRIOR_SHARE, TrainConfig
from captcha.inference.load import general_reader_path
from captcha.nn.networks import reader_size
from captcha.training import readercheck
from captcha.training.dataset import load_training_data
from captcha.training.readercheck import (
    ReaderCheck,
    check_reader,
    keeps_reader,
    reads_right,
    settled,
    solving_reader,
)
from captcha.training.recipe import training_start


def test_a_reader_that_reads_little_of_the_site_is_kept_only_where_it_reads_clearly_more():
    def check(read: int, reader: int, fine_tuned: int) -> ReaderCheck:
        return ReaderCheck(captchas=20, reader_read=read, reader_only=reader, fine_tuned_only=fine_tuned, epochs=20)

    assert READER_PRIOR_SHARE * 20 == 6
    assert not check(5, 3, 0).kept  # 3 < 2 * sqrt(3)
    assert check(5, 4, 0).to_dict() == {"captchas": 20, "reader_read": 5, "reader_only": 4, "fine_tuned_only": 0,
                                        "epochs": 20, "kept": True}
    assert "under 30%" in check(5, 4, 0).reason and "did not" in check(5, 3, 0).reason


def test_a_reader_that_reads_much_of_the_site_is_kept_unless_the_fine_tunes_read_clearly_more():
    def check(read: int, reader: int, fine_tuned: int) -> ReaderCheck:
        return ReaderCheck(captchas=20, reader_read=read, reader_only=reader, fine_tuned_only=fine_tuned, epochs=20)

    assert check(6, 0, 0).kept and check(6, 1, 2).kept and check(15, 0, 3).kept  # 3 < 2 * sqrt(3): a tie
    assert not check(6, 0, 4).kept and not check(15, 1, 7).kept  # 4 >= 2 * sqrt(4); 6 >= 2 * sqrt(8)
    assert "30% of them or more" in check(6, 0, 4).reason and "read clearly more" in check(6, 0, 4).reason


def test_the_readers_own_reading_settles_the_choice_where_no_fine_tune_could_change_it():
    # ten captchas: reading 2 (under 30%) it could at most read 2 only, never clearly more; reading 7, the fine-tunes
    # could at most read the 3 it misses, never clearly more; in between they decide
    assert [settled(10, read) for read in range(11)] == [False] * 3 + [None] * 4 + [True] * 4
    assert all(settled(5, read) is not None for read in range(6))  # from a handful: always settled
    for read in range(11):
        choices = {keeps_reader(10, read, only, tuned) for only in range(read + 1) for tuned in range(11 - read)}
        assert (settled(10, read) is None) == (len(choices) == 2)
    check = ReaderCheck(captchas=10, reader_read=7, reader_only=None, fine_tuned_only=None, epochs=20)
    assert check.kept and "no fine-tune was trained" in check.reason
    assert not ReaderCheck(captchas=10, reader_read=1, reader_only=None, fine_tuned_only=None, epochs=20).kept


def test_solving_reader_is_the_whole_reader_with_its_head_on_the_sites_characters():
    source, model, size = solving_reader(Charset("ABC123"))
    assert source == f"reader:{general_reader_path().name}"
    assert model.fc.out_features == 6 + 1  # and the blank
    assert (model.width, model.layer3_inner) == (512, 256)  # not narrowed: nothing is trained from it
    assert size == reader_size(str(general_reader_path()))


def _check_inputs(folder):
    """A one-epoch CTC recipe on ``folder``'s captchas over ABC123: (cfg, charset, data, fit, source, state)."""
    charset = Charset("ABC123")
    cfg = TrainConfig(data=str(folder), charset=charset.alphabet, method="ctc", epochs=1, size=(48, 96),
                      batch_size=4)
    data = load_training_data(cfg, charset)
    source, state = training_start(cfg, "ctc", charset, data)
    return cfg, charset, data, (data.train_images, data.train_targets), source, state


def test_check_reader_reads_every_training_captcha_untrained_and_each_fold_with_a_fine_tune_on_the_rest(
        six_captchas, monkeypatch):
    cfg, charset, data, fit, source, state = _check_inputs(six_captchas)
    trained_on = []
    real = readercheck.train_briefly

    def recorded(probe, cfg, num, state, source, fit, *args):
        trained_on.append(len(fit[0]))
        return real(probe, cfg, num, state, source, fit, *args)

    monkeypatch.setattr(readercheck, "train_briefly", recorded)
    monkeypatch.setattr(readercheck, "settled", lambda captchas, read: None)  # five captchas always settle it
    reader = solving_reader(charset)
    check = check_reader(cfg, charset, state, source, fit, data.length, torch.device("cpu"), reader)
    n = len(fit[0])
    folds = min(READER_CHECK_FOLDS, n)
    assert check.captchas == n and len(trained_on) == folds and sum(trained_on) == n * (folds - 1)
    labels = [charset.decode(t) for t in fit[1]]
    read = reads_right(reader[1], reader[2], fit[0], labels, charset, data.length)
    assert len(read) == n and 0 <= check.fine_tuned_only <= n - sum(read) and check.reader_only <= sum(read)
    assert check.reader_read == sum(read)


def test_check_reader_trains_no_fine_tune_where_the_readers_reading_settles_the_choice(six_captchas, monkeypatch):
    cfg, charset, data, fit, source, state = _check_inputs(six_captchas)
    trained = []
    monkeypatch.setattr(readercheck, "train_briefly", lambda *args: trained.append(args))
    check = check_reader(cfg, charset, state, source, fit, data.length, torch.device("cpu"), solving_reader(charset))
    assert trained == [] and check.reader_only is None and check.fine_tuned_only is None
    assert check.kept == settled(len(fit[0]), check.reader_read) and check.to_dict()["kept"] == check.kept
