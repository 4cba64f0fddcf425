"""The epoch a fit keeps."""

from captcha.training.fit import EpochKeeper


def test_the_keeper_keeps_the_annealed_last_epoch_and_trains_every_epoch():
    def run(scores, epochs, replay_until=0, start=None):
        keeper, kept = EpochKeeper(held=200, epochs=epochs), []
        if start is not None and keeper.update({"char_acc": start}, 0):
            kept.append(0)
        for e, acc in enumerate(scores, 1):
            if e <= replay_until:  # what a resumed run does with its history
                keeper.update({"char_acc": acc}, e)
                continue
            if keeper.update({"char_acc": acc}, e):
                kept.append(e)
        return kept

    # the last epoch is within the slice's noise of the best (0.97 on 200 samples): it is kept
    assert run([0.50, 0.90, 0.97, 0.96, 0.96], 5) == [1, 2, 3, 5]
    # a dip while the rate is high does not stop training: the annealed epochs that follow are kept
    dip = [0.50, 0.90, 0.97, 0.97, 0.80, 0.75, 0.70, 0.70, 0.98, 0.97]
    assert run(dip, 10) == [1, 2, 3, 9, 10]
    assert run(dip, 10, replay_until=5) == [9, 10]  # resumed after epoch 5: the same choice from there
    # on a slice of 3 captchas, all 3 read early against 1 read at the end is within chance: the annealed
    # last epoch is kept (at the best's own accuracy, 100%, the spread would be nil and it was not)
    small = EpochKeeper(held=3, epochs=4)
    assert [small.update({"string_acc": acc}, e) for e, acc in enumerate([1 / 3, 1.0, 2 / 3, 1 / 3], 1)] == \
        [True, True, False, True]
    assert small.best_epoch == 4
    # a start that reads already (the general reader, epoch 0) must be matched, not only come within noise;
    # a tie goes to the fine-tune
    assert run([0.90, 0.96], 2, start=0.97) == [0]
    assert run([0.90, 0.98], 2, start=0.97) == [0, 2]
    assert run([0.97, 0.96], 2, start=0.97) == [0, 1, 2]  # then the last epoch, within noise of it
